"""`tasker bench allocate` end to end on a tiny fleet: every plan it compares is made, the
online replay runs the role's rounds, and the tables print."""

from __future__ import annotations

from typing import Any

import pytest

from backend.allocation import BuiltinIntensity
from tasker_bench.allocate import make_workload, render, run_allocate, run_online, run_small


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return run_allocate(seed=3, n_servers=12, n_tasks=30, exact_seeds=0, ahead_h=6.0)


def test_the_benchmark_compares_every_plan_on_a_tiny_fleet(tiny):
    result = tiny
    plans = {row["solver"]: row for row in result["plans"]}
    assert list(plans) == [
        "carbon-aware, online",
        "online, first day (no history)",
        "online, no-slack tasks 6 h ahead",
        "carbon-aware, day known",
        "first-fit",
        "round-robin",
    ]
    # the day-known plan never leaves out more than running now does (the heuristic's guarantee)
    assert plans["carbon-aware, day known"]["unschedulable"] <= plans["first-fit"]["unschedulable"]
    assert plans["first-fit"]["saving_pct"] == 0.0
    assert result["online_rounds"] >= 1
    text = render(result)
    assert "30 tasks on 12 servers, seed 3" in text and "planning rounds" in text


def test_the_small_instances_compare_the_heuristic_and_a_round_with_the_milp(tiny):
    small = run_small(1, exact_budget_s=2.0)
    (run,) = small["runs"]
    assert run["seed"] == 0 and run["exact_placed"] >= 55
    assert {"gap_pct", "auto_gap_pct", "auto_2s_gap_pct", "rounds_gap_pct", "optimal"} <= set(run)
    text = render({**tiny, "exact": small})
    assert "auto gap %" in text and "auto (a round, 1 s) median" in text and "auto in 2 s median" in text
    assert "after 5 rounds of 1 s median" in text


def test_tasks_declared_ahead_run_in_their_windows_only():
    workload = make_workload(5, 12, 40)
    plan, rounds = run_online(workload, BuiltinIntensity(), ahead_ms=6 * 3_600_000)
    no_slack = [t for t in workload.tasks if t.deadline_ms - t.earliest_start_ms == t.duration_s * 1000]
    ran = [t for t in no_slack if t.id in plan.placements and t.id not in plan.unschedulable]
    assert len(ran) >= len(no_slack) // 2 and len(rounds) >= 1
    for task in ran:  # a task without slack runs its whole window: never earlier, never cut
        assert plan.placements[task.id].pieces == ((task.earliest_start_ms, task.deadline_ms),)
