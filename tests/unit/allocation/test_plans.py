"""Every solver's plan respects capacity, windows, constraints and pins; the carbon-aware plan
never emits more than running now on the first server that fits."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.allocation import BuiltinIntensity, plan_tasks
from backend.allocation.carbon import footprint
from backend.allocation.horizon import Horizon
from backend.allocation.model import Expected, Placement

from .builders import SLOT_S, T0, H, problem, problems, server, task

SOLVERS = ("heuristic", "exact", "first-fit", "round-robin")


def check_plan(prob, plan):
    servers = {s.id: s for s in prob.servers}
    tasks = {t.id: t for t in prob.tasks}
    assert set(plan.placements) | set(plan.unschedulable) == set(tasks)
    assert not set(plan.placements) & set(plan.unschedulable)
    used: dict[tuple[str, int], int] = {}
    for placement in [*plan.placements.values(), *prob.fixed]:
        for start, end in placement.pieces:
            for k in range((start - T0) // (SLOT_S * 1000), (end - 1 - T0) // (SLOT_S * 1000) + 1):
                used[(placement.server_id, k)] = used.get((placement.server_id, k), 0) + placement.cores
    for (server_id, _), cores in used.items():
        assert cores <= servers[server_id].cores
    for task_id, placement in plan.placements.items():
        t, s = tasks[task_id], servers[placement.server_id]
        assert t.earliest_start_ms <= placement.start_ms and placement.end_ms <= t.deadline_ms
        assert sum(end - start for start, end in placement.pieces) == t.duration_s * 1000
        assert not t.regions or s.region in t.regions
        assert t.tags <= s.tags and t.cores <= s.cores
        assert t.server_id in (None, s.id)
        if not t.interruptible:
            assert len(placement.pieces) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_every_solver_respects_capacity_windows_and_constraints(prob):
    for solver in SOLVERS:
        check_plan(prob, plan_tasks(prob, BuiltinIntensity(), solver=solver, time_budget_s=5.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.lists(st.tuples(st.integers(0, 15), st.integers(1, 8), st.integers(-8, 40)), max_size=4))
def test_plans_made_at_the_prices_of_expected_tasks_are_valid_and_priced_in_grams(prob, forecast):
    expected = tuple(Expected(T0 + a * SLOT_S * 1000, T0 + (a + n) * SLOT_S * 1000, float(c)) for a, n, c in forecast)
    priced = replace(prob, expected=expected)
    for solver in SOLVERS:
        plan = plan_tasks(priced, BuiltinIntensity(), solver=solver, time_budget_s=2.0)
        check_plan(priced, plan)
        plain = Horizon(prob, BuiltinIntensity())
        for placement in plan.placements.values():
            grams = footprint(plain, plain.index[placement.server_id], placement.cores, placement.pieces)[1]
            assert placement.co2_g == pytest.approx(grams)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_the_carbon_aware_plan_never_emits_more_than_run_now_first_fit(prob):
    # A short budget on purpose: a MILP stopped early must still keep the guarantee.
    first_fit = plan_tasks(prob, BuiltinIntensity(), solver="first-fit")
    for solver in ("heuristic", "exact"):
        plan = plan_tasks(prob, BuiltinIntensity(), solver=solver, time_budget_s=1.0)
        assert len(plan.placements) >= len(first_fit.placements)
        if set(plan.placements) == set(first_fit.placements):
            assert plan.total_co2_g <= first_fit.total_co2_g + 1e-6


def test_a_task_waits_for_the_clean_server_and_says_why():
    # the wind server is busy for the first two hours; the task may wait until 6:00
    fleet = [server("coal", source="coal", g=820.0), server("wind", source="wind", region="eu-north", g=11.0)]
    busy = Placement("other", "wind", ((T0, T0 + 2 * H),), 0.0, 0.0, cores=32)
    plan = plan_tasks(problem([task("t", hours=1.0, deadline_h=6.0)], fleet, fixed=[busy]), BuiltinIntensity())
    placement, why = plan.placements["t"], plan.explanations["t"]
    assert (placement.server_id, placement.start_ms) == ("wind", T0 + 2 * H)
    assert (why.run_now_server_id, why.run_now_start_ms) == ("coal", T0)
    assert why.saving_g(placement.co2_g) == pytest.approx(why.run_now_co2_g * (1 - 11 / 820))
    assert why.reason == "wind in eu-north, 11 g/kWh; earlier slots on cleaner servers are full"


def test_a_grid_mix_task_waits_for_midday_solar():
    fleet = [server("g", source="grid-mix", region="us-west", g=230.0)]
    plan = plan_tasks(problem([task("t", hours=1.0, deadline_h=30.0)], fleet), BuiltinIntensity())
    reason = plan.explanations["t"].reason
    assert "waits for midday solar in us-west" in reason
    # one figure for the grid over its run, in both halves of the sentence
    level = re.search(r"us-west, (\d+) g/kWh", reason)
    assert level and f": {level[1]} g/kWh from " in reason and "starting now" in reason, reason


def test_a_replan_keeps_the_previous_placements_and_adds_the_new_task():
    fleet = [server("a", source="wind", g=11.0, cores=8), server("b", source="coal", g=820.0, cores=8)]
    tasks = [task(f"t{i}", cores=4, hours=2.0, deadline_h=12.0) for i in range(3)]
    first = plan_tasks(problem(tasks, fleet), BuiltinIntensity(), solver="heuristic")
    again = plan_tasks(
        problem([*tasks, task("new", cores=4, hours=1.0)], fleet),
        BuiltinIntensity(),
        solver="heuristic",
        previous=first,
    )
    assert {k: again.placements[k] for k in first.placements} == first.placements
    check_plan(problem([*tasks, task("new", cores=4, hours=1.0)], fleet), again)


def test_a_periodic_round_moves_tasks_only_where_the_search_finds_better():
    fleet = [server("b", source="coal", g=820.0, cores=8), server("a", source="wind", g=11.0, cores=8)]
    prob = problem([task(f"t{i}", cores=4, hours=2.0, deadline_h=12.0) for i in range(3)], fleet)
    run_now = plan_tasks(prob, BuiltinIntensity(), solver="first-fit")
    assert {p.server_id for p in run_now.placements.values()} == {"a", "b"}

    fast = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=run_now)
    refined = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=run_now, refine=True)
    again = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=refined, refine=True)

    assert fast.placements == run_now.placements  # an event round only inserts what is new
    assert {p.server_id for p in refined.placements.values()} == {"a"}
    assert refined.total_co2_g < run_now.total_co2_g / 10
    check_plan(prob, refined)
    assert again.placements == refined.placements  # nothing beats it: the next round keeps it


def test_a_periodic_round_of_a_small_fleet_searches_on_from_the_last_plan():
    # small enough for the MILP: "auto" searches on from the last plan rather than afresh
    fleet = [server("b", source="coal", g=820.0, cores=8), server("a", source="wind", g=11.0, cores=8)]
    prob = problem([task(f"t{i}", cores=4, hours=2.0, deadline_h=12.0) for i in range(3)], fleet)
    run_now = plan_tasks(prob, BuiltinIntensity(), solver="first-fit")
    refined = plan_tasks(prob, BuiltinIntensity(), solver="auto", previous=run_now, refine=True)
    again = plan_tasks(prob, BuiltinIntensity(), solver="auto", previous=refined, refine=True)

    check_plan(prob, refined)
    assert {p.server_id for p in refined.placements.values()} == {"a"} and refined.solver == "exact"
    assert again.placements == refined.placements and again.explanations == refined.explanations

    # a plan as good on another server stays where it is: rounds do not shuffle tasks around
    twins = [server("a", source="wind", g=11.0, cores=8), server("b", source="wind", g=11.0, cores=8)]
    one = problem([task("t0", cores=4, hours=2.0, deadline_h=12.0)], twins)
    on_b = plan_tasks(replace(one, servers=one.servers[::-1]), BuiltinIntensity(), solver="first-fit")
    assert on_b.placements["t0"].server_id == "b"
    assert plan_tasks(one, BuiltinIntensity(), solver="auto").placements["t0"].server_id == "a"  # afresh
    kept = plan_tasks(one, BuiltinIntensity(), solver="auto", previous=on_b, refine=True)
    assert kept.placements == on_b.placements


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_a_small_fleets_refining_round_is_valid_and_never_worse_than_inserting_alone(prob):
    last = plan_tasks(replace(prob, tasks=prob.tasks[:-1]), BuiltinIntensity(), solver="heuristic")
    inserted = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=last)
    refined = plan_tasks(prob, BuiltinIntensity(), solver="auto", time_budget_s=0.2, previous=last, refine=True)
    check_plan(prob, refined)
    assert len(refined.placements) >= len(inserted.placements)
    if len(refined.placements) == len(inserted.placements):
        assert refined.total_co2_g <= inserted.total_co2_g + 1e-6


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_a_refining_round_is_valid_and_never_worse_than_inserting_alone(prob):
    # the last plan knew every task but the last one; the round adds it
    last = plan_tasks(replace(prob, tasks=prob.tasks[:-1]), BuiltinIntensity(), solver="heuristic")
    inserted = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=last)
    refined = plan_tasks(prob, BuiltinIntensity(), solver="heuristic", previous=last, refine=True)
    check_plan(prob, refined)
    assert len(refined.placements) >= len(inserted.placements)
    if len(refined.placements) == len(inserted.placements):
        assert refined.total_co2_g <= inserted.total_co2_g + 1e-6
