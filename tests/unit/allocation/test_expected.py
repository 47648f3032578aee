"""Cores kept for the tasks expected to come: their price by hand, and what a plan does
with it (accounting and explanations stay in grams)."""

from dataclasses import replace

import numpy as np
import pytest

from backend.allocation import BuiltinIntensity, plan_tasks
from backend.allocation.carbon import footprint
from backend.allocation.horizon import HOLD_SHARE, Horizon
from backend.allocation.model import Expected

from .builders import T0, H, M, problem, server, task

# 4-core servers of 100 W idle / 400 W peak at PUE 1.5: a core adds 75 W, so one core over a
# 5-minute slot emits 75 / 1000 x 1.5 / 12 x g = 0.009375 g per g/kWh.
PER_G = 0.075 * 1.5 / 12
FLEET = [server("clean", g=100.0, cores=4), server("mid", g=300.0, cores=4), server("dirty", g=500.0, cores=4)]


def horizon_expecting(*expected: Expected, servers=FLEET) -> Horizon:
    return Horizon(replace(problem([], servers, horizon_h=1.0), expected=expected), BuiltinIntensity())


def test_expected_cores_raise_the_price_of_the_cores_cleaner_than_the_one_they_reach():
    horizon = horizon_expecting(
        Expected(T0, T0 + 5 * M, 5.0),  # slot 0: 5 cores reach "mid" (the 4 of "clean" are not enough)
        Expected(T0 + 10 * M, T0 + 15 * M, 20.0),  # slot 2: more than the fleet: they reach "dirty"
    )
    grams = np.array([100.0, 300.0, 500.0]) * PER_G
    assert horizon.holds
    assert horizon.price_g[:, 0] == pytest.approx(grams + HOLD_SHARE * np.maximum(0, grams[1] - grams))
    assert horizon.price_g[:, 1] == pytest.approx(grams)  # nothing expected
    assert horizon.price_g[:, 2] == pytest.approx(grams + HOLD_SHARE * (grams[2] - grams))
    assert horizon.price_g[0, 0] == pytest.approx(1.875)  # 0.9375 + 0.5 x (2.8125 - 0.9375)
    # the accounting is untouched: an hour of 4 cores on "clean" is still 0.3 kW x 1.5 x 100 g/kWh
    assert horizon.core_slot_g[:, 0] == pytest.approx(grams)
    assert footprint(horizon, 0, 4, [(T0, T0 + H)])[1] == pytest.approx(45.0)


def test_fractions_that_add_up_to_a_whole_server_hold_it():
    # 0.1 of a core in the first two slots, 4 cores from the second: in slot 2 the expected tasks
    # want the 4 cores of "clean" (floating point sums 0.1 + 4 - 0.1 to 3.9999999999999996)
    horizon = horizon_expecting(Expected(T0, T0 + 10 * M, 0.1), Expected(T0 + 5 * M, T0 + 15 * M, 4.0))
    grams = np.array([100.0, 300.0, 500.0]) * PER_G
    # all 4 cores of "clean" are wanted: the marginal core is on "mid", and "clean" is held
    assert horizon.price_g[:, 2] == pytest.approx(grams + HOLD_SHARE * np.maximum(0, grams[1] - grams))


def test_cores_the_fleet_can_spare_and_tasks_declared_ahead_hold_nothing():
    within_clean = horizon_expecting(Expected(T0, T0 + 5 * M, 3.0))  # "clean" serves them, one core to spare
    assert within_clean.price_g[:, 0] == pytest.approx(within_clean.core_slot_g[:, 0])
    declared = horizon_expecting(Expected(T0, T0 + H, 6.0), Expected(T0, T0 + H, -6.0))
    assert not declared.expected_cores.any()
    assert np.array_equal(declared.price_g, declared.core_slot_g)
    assert not horizon_expecting().holds


def test_a_task_with_room_leaves_the_expected_clean_cores_and_says_so():
    # Tasks are expected to need 4 cores from 02:00 to 03:00. A task that may run
    # 02:00-06:00 would take the clean server at 02:00 (ties go to the earlier finish); expecting
    # them, it runs there at 03:00 for the same grams.
    servers = [server("clean", g=100.0, cores=4), server("dirty", g=500.0, cores=4)]
    flexible = task("flexible", cores=4, hours=1.0, start_h=2.0, deadline_h=6.0)
    plain = plan_tasks(problem([flexible], servers), BuiltinIntensity())
    assert plain.placements["flexible"].pieces == ((T0 + 2 * H, T0 + 3 * H),)

    expecting = replace(problem([flexible], servers), expected=(Expected(T0 + 2 * H, T0 + 3 * H, 4.0),))
    plan = plan_tasks(expecting, BuiltinIntensity())
    placement = plan.placements["flexible"]
    assert (placement.server_id, placement.pieces) == ("clean", ((T0 + 3 * H, T0 + 4 * H),))
    assert placement.co2_g == pytest.approx(45.0)  # grams, not the price
    explanation = plan.explanations["flexible"]
    assert explanation.run_now_co2_g == pytest.approx(45.0)  # at 02:00 on "clean": grams too
    assert "clean cores before then are kept for the tasks expected to come" in explanation.reason

    # A task without slack at that hour still gets the clean server: it has no other time.
    rigid = task("rigid", cores=4, hours=1.0, start_h=2.0, deadline_h=3.0)
    rigid_problem = replace(expecting, tasks=[rigid])
    assert plan_tasks(rigid_problem, BuiltinIntensity()).placements["rigid"].server_id == "clean"
