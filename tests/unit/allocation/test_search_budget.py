"""The heuristic's search keeps to its time budget: a pass of re-insertions over a large plan
takes most of a second, so it stops mid-pass when the deadline comes."""

from __future__ import annotations

import types

from backend.allocation import BuiltinIntensity, heuristic, plan_tasks, repack
from backend.allocation.choices import Board
from backend.allocation.horizon import Horizon
from backend.allocation.windows import task_windows

from .builders import problem, server, task


def test_an_improvement_pass_stops_when_the_deadline_passes_mid_pass(monkeypatch):
    fleet = [server("coal", source="coal", g=820.0, cores=64), server("wind", source="wind", g=11.0, cores=64)]
    prob = problem([task(f"t{i}", cores=2, hours=1.0) for i in range(20)], fleet)
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    board = Board(horizon)
    choices = heuristic.plan_first_fit(windows, board)  # all on coal: every task could move
    before = dict(choices)

    # the pass starts before the deadline (t=0), then the clock reads past it (t=10)
    readings = iter([0.0])
    monkeypatch.setattr(heuristic, "time", types.SimpleNamespace(perf_counter=lambda: next(readings, 10.0)))
    tried = []
    real_cheapest = heuristic.cheapest
    monkeypatch.setattr(heuristic, "cheapest", lambda *a, **k: tried.append(1) or real_cheapest(*a, **k))

    heuristic.improve(windows, board, choices, deadline=5.0)

    assert not tried
    assert choices == before


def test_an_improvement_pass_within_its_budget_moves_tasks_to_the_cleaner_server():
    fleet = [server("coal", source="coal", g=820.0, cores=64), server("wind", source="wind", g=11.0, cores=64)]
    prob = problem([task(f"t{i}", cores=2, hours=1.0) for i in range(20)], fleet)
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    board = Board(horizon)
    choices = heuristic.plan_first_fit(windows, board)

    heuristic.improve(windows, board, choices, deadline=float("inf"))

    assert {horizon.servers[c.row].id for c in choices.values()} == {"wind"}


def test_auto_gives_the_heuristic_most_of_a_round_the_oracle_gives_highs_most(monkeypatch):
    # A round ("auto") on a fleet small enough for the MILP lets the heuristic search first and
    # exact re-plans of neighbourhoods finish; the oracle ("exact") makes that plan in a quarter
    # of its budget and gives HiGHS the rest.
    fleet = [server("coal", source="coal", g=820.0, cores=8), server("wind", source="wind", g=11.0, cores=8)]
    prob = problem([task(f"t{i}", cores=2, hours=1.0) for i in range(4)], fleet)
    shares = []
    real_greedy = repack.plan_greedy

    def timed_greedy(windows, board, *, deadline):
        shares.append(deadline - repack.time.perf_counter())
        return real_greedy(windows, board, deadline=deadline)

    monkeypatch.setattr(repack, "plan_greedy", timed_greedy)
    for solver in ("auto", "exact"):
        plan = plan_tasks(prob, BuiltinIntensity(), solver=solver, time_budget_s=10.0)
        assert plan.solver == "exact" and plan.optimal and len(plan.placements) == 4
    auto_s, oracle_s = shares
    assert 5.5 < auto_s <= 6.0 and 1.0 < oracle_s <= 1.5
