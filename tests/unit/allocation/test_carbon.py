"""Energy and CO2 of placements, against figures worked out by hand."""

import numpy as np
import pytest

from backend.allocation import BuiltinIntensity, TraceIntensity, TraceRow, plan_tasks
from backend.allocation.carbon import footprint
from backend.allocation.horizon import Horizon

from .builders import T0, H, M, problem, server, task


def test_four_cores_of_a_32_core_server_for_an_hour():
    # (400 - 100) W x 4/32 = 37.5 W -> 0.0375 kWh x 1.5 x 500 g/kWh = 28.125 g
    horizon = Horizon(problem([], [server("a")]), BuiltinIntensity())
    kwh, grams = footprint(horizon, 0, 4, [(T0, T0 + H)])
    assert kwh == pytest.approx(0.0375)
    assert grams == pytest.approx(28.125)


def test_a_piece_ending_mid_slot_pays_for_the_time_run():
    # 37.5 W for 7 minutes (one whole 5-minute slot and 2 minutes of the next)
    horizon = Horizon(problem([], [server("a")]), BuiltinIntensity())
    kwh, grams = footprint(horizon, 0, 4, [(T0, T0 + 7 * M)])
    assert kwh == pytest.approx(37.5 * 7 / 60 / 1000)
    assert grams == pytest.approx(kwh * 1.5 * 500)


def test_a_grid_mix_server_across_two_slots_of_different_intensity():
    grid = server("a", source="grid-mix", region="eu-west", g=300.0)
    trace = TraceIntensity([TraceRow("eu-west", T0, 200.0), TraceRow("eu-west", T0 + 5 * M, 600.0)])
    horizon = Horizon(problem([], [grid]), trace)
    # 4 minutes at 200 g/kWh then 3 minutes at 600 g/kWh, 37.5 W, PUE 1.5
    _, grams = footprint(horizon, 0, 4, [(T0 + M, T0 + 8 * M)])
    assert grams == pytest.approx(37.5 / 1000 * 1.5 * (4 / 60 * 200 + 3 / 60 * 600))


def test_a_plan_states_the_grams_of_each_placement_with_the_same_accounting():
    plan = plan_tasks(problem([task("t", hours=1.0, deadline_h=1.0)], [server("a")]), BuiltinIntensity())
    placement = plan.placements["t"]
    assert placement.pieces == ((T0, T0 + H),)
    assert placement.co2_g == pytest.approx(28.125)
    assert placement.energy_kwh == pytest.approx(0.0375)


def test_the_cheapest_slot_of_any_window_is_the_least_of_its_slots():
    servers = [server(f"s{i}", source="grid-mix", region=r) for i, r in enumerate(("eu-west", "us-west", "ap-south"))]
    horizon = Horizon(problem([], servers), BuiltinIntensity())
    rows = np.arange(len(servers))
    for lo in range(0, horizon.n_slots, 7):
        for hi in range(lo + 1, horizon.n_slots + 1, 5):
            assert np.array_equal(horizon.cheapest_price(rows, lo, hi), horizon.price_g[:, lo:hi].min(axis=1))
