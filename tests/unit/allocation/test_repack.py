"""Exact re-plans of neighbourhoods (`repack`) and the heuristic's give-way step: what each finds
that moves of a task at a time do not, and that a small fleet's round ends at the optimum."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings

from backend.allocation import BuiltinIntensity, exact, heuristic, plan_tasks, repack
from backend.allocation.baselines import plan_first_fit
from backend.allocation.choices import Board, priced
from backend.allocation.horizon import Horizon
from backend.allocation.windows import task_windows

from .builders import problem, server, task
from .test_exact import brute_force, tiny


def long_and_wide():
    """A clean and a dirty 8-core server; "long" (4 cores, 4 h, no slack) and "wide" (8 cores,
    3 h, 4 h window). Long on the clean server leaves no room there for wide, which then emits
    24 dirty core-hours; long on the dirty one emits 16. Neither moves alone: long cannot join
    wide on the dirty server, nor wide join long on the clean one."""
    prob = problem(
        [task("long", cores=4, hours=4.0, deadline_h=4.0), task("wide", cores=8, hours=3.0, deadline_h=4.0)],
        [server("wind", source="wind", g=11.0, cores=8), server("coal", source="coal", g=820.0, cores=8)],
        slot_s=3600,
        horizon_h=6.0,
    )
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    board = Board(horizon)
    by_id = {w.task.id: w for w in windows}
    # the greedy plan: fewest choices first, so long takes the wind server
    choices = {
        "long": priced(by_id["long"], horizon, 0, [0, 1, 2, 3]),
        "wide": priced(by_id["wide"], horizon, 1, [0, 1, 2]),
    }
    for w in windows:
        board.take(choices[w.task.id], w.task.cores)
    return prob, windows, board, choices


def windows_of(prob):
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    return horizon, windows, {w.task.id: w for w in windows}


def servers_of(choices, board):
    return {t: board.horizon.servers[c.row].id for t, c in choices.items()}


def test_moves_of_one_task_leave_the_long_task_on_the_clean_server():
    _, windows, board, choices = long_and_wide()
    heuristic.improve(windows, board, choices, deadline=float("inf"))
    assert servers_of(choices, board) == {"long": "wind", "wide": "coal"}


def test_a_neighbourhood_of_both_servers_sends_the_long_task_to_the_dirty_one():
    prob, windows, board, choices = long_and_wide()
    before = sum(c.cost_g for c in choices.values())

    improved, finished = repack.repack(windows, board, choices, frozenset({0, 1}), time_limit_s=10.0, whole=True)

    assert improved and finished
    assert servers_of(choices, board) == {"long": "coal", "wide": "wind"}
    after = sum(c.cost_g for c in choices.values())
    assert after < before
    assert after == pytest.approx(brute_force(prob)[1], rel=1e-6)
    # the board holds what the choices hold: nothing freed twice or left taken
    expected = Board(board.horizon)
    for w in windows:
        expected.take(choices[w.task.id], w.task.cores)
    assert (board.free == expected.free).all()


def test_the_search_proves_a_plan_it_cannot_improve_optimal():
    _, windows, board, choices = long_and_wide()
    proven = repack.search(windows, board, choices, deadline=float("inf"), rng=random.Random(1))
    assert proven
    assert servers_of(choices, board) == {"long": "coal", "wide": "wind"}


def test_a_neighbourhood_places_a_task_left_out_when_it_can():
    prob, windows, board, choices = long_and_wide()
    left_out = choices.pop("wide")
    board.give_back(left_out, 8)

    improved, _ = repack.repack(windows, board, choices, frozenset({0, 1}), time_limit_s=10.0, whole=True)

    assert improved and set(choices) == {"long", "wide"}


def test_a_neighbourhood_that_cannot_gain_changes_nothing():
    _, windows, board, choices = long_and_wide()
    repack.search(windows, board, choices, deadline=float("inf"), rng=random.Random(1))
    kept, free = dict(choices), board.free.copy()

    improved, finished = repack.repack(windows, board, choices, frozenset({0, 1}), time_limit_s=10.0, whole=True)

    assert not improved and finished
    assert choices == kept and (board.free == free).all()


def test_a_give_way_step_sends_the_long_task_to_the_dirty_server(monkeypatch):
    _, windows, board, choices = long_and_wide()
    monkeypatch.setattr(heuristic, "GIVE_SHARE", 1.0)  # every step gives way

    heuristic.ruin_and_recreate(windows, board, choices, deadline=float("inf"), rng=random.Random(1))

    assert servers_of(choices, board) == {"long": "coal", "wide": "wind"}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny())
def test_a_round_on_a_tiny_fleet_ends_at_the_brute_force_optimum_and_says_so(prob):
    placed, grams = brute_force(prob)
    plan = plan_tasks(prob, BuiltinIntensity(), solver="auto", time_budget_s=10.0)
    assert plan.optimal and plan.solver == "exact"
    assert len(plan.placements) == placed
    assert plan.total_co2_g == pytest.approx(grams, rel=1e-6, abs=1e-6)


def test_a_task_leaves_the_plan_when_that_lets_more_tasks_in():
    # One 8-core server, three hours: "long" needs two of them, each "short" one. Fewest choices
    # first puts long in, and one short with it; three shorts are more tasks placed.
    tasks = [task("long", cores=8, hours=2.0, deadline_h=3.0)]
    tasks += [task(f"short{i}", cores=8, hours=1.0, deadline_h=3.0) for i in range(3)]
    prob = problem(tasks, [server("wind", source="wind", g=11.0, cores=8)], slot_s=3600, horizon_h=6.0)
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    greedy = heuristic.plan_greedy(windows, Board(horizon), deadline=float("inf"))
    assert len(greedy) == 2

    plan = plan_tasks(prob, BuiltinIntensity(), solver="auto", time_budget_s=10.0)

    assert plan.optimal and set(plan.placements) == {"short0", "short1", "short2"}
    assert "long" in plan.unschedulable
    assert plan.total_co2_g == pytest.approx(brute_force(prob)[1], rel=1e-6)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny())
def test_a_step_priced_near_keeps_a_plan_only_when_its_exact_grams_are_fewer(prob):
    # A neighbourhood's model prices split tasks near their grams (no partial columns): the
    # plan it keeps carries exact grams, is never worse than before, and the board matches it.
    horizon, windows, by_id = windows_of(prob)
    board = Board(horizon)
    choices = plan_first_fit(windows, board)
    before = (len(choices), sum(c.cost_g for c in choices.values()))

    repack.repack(windows, board, choices, frozenset(range(len(prob.servers))), time_limit_s=10.0)

    after = (len(choices), sum(c.cost_g for c in choices.values()))
    assert after[0] > before[0] or (after[0] == before[0] and after[1] <= before[1] + 1e-9)
    for task_id, choice in choices.items():
        assert choice == priced(by_id[task_id], horizon, choice.row, list(choice.slots))
    expected = Board(horizon)
    for task_id, choice in choices.items():
        expected.take(choice, by_id[task_id].task.cores)
    assert (board.free == expected.free).all()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tiny())
def test_a_model_priced_near_prices_a_plan_as_its_columns_do(prob):
    # The cutoff of a step is the plan's price in the model's own terms (`price_of`): were it
    # the exact grams, a step could cut off the plans it should find.
    horizon, windows, by_id = windows_of(prob)
    model = exact.Model(windows, Board(horizon), partial_slots=False)
    values, finished = exact.solve(model, time_limit_s=10.0)
    assert values is not None and finished
    plan = model.choices(values)
    priced_g = sum(model.price_of(by_id[t], c) for t, c in plan.items())
    priced_g += sum(model.penalty[w.task.id] for w in windows if w.task.id not in plan)
    assert model.objective(values) == pytest.approx(priced_g, rel=1e-9, abs=1e-6)
    for task_id, choice in plan.items():
        near, grams = model.price_of(by_id[task_id], choice), choice.cost_g
        assert near >= grams - 1e-6  # the share of a slot on average, against the dearest one's
