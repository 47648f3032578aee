"""`tasker bench allocate` end to end on a tiny fleet: every plan it compares is made, the
online replay runs the role's rounds, and the tables print."""

from __future__ import annotations

from typing import Any

import pytest

from tasker_bench.allocate import render, run_allocate, run_small


@pytest.fixture(scope="module")
def tiny() -> dict[str, Any]:
    return run_allocate(seed=3, n_servers=12, n_tasks=30, exact_seeds=0)


def test_the_benchmark_compares_every_plan_on_a_tiny_fleet(tiny):
    result = tiny
    plans = {row["solver"]: row for row in result["plans"]}
    assert list(plans) == ["carbon-aware, online", "carbon-aware, day known", "first-fit", "round-robin"]
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
    assert {"gap_pct", "auto_gap_pct", "optimal"} <= set(run)
    text = render({**tiny, "exact": small})
    assert "auto gap %" in text and "auto (a round) median" in text
