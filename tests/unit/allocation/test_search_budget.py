"""The heuristic's search keeps to its time budget: a pass of re-insertions over a large plan
takes most of a second, so it stops mid-pass when the deadline comes."""

from __future__ import annotations

import types

from backend.allocation import BuiltinIntensity, heuristic
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
