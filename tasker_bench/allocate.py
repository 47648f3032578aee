"""`tasker bench allocate`: the carbon-aware plan against run-now first-fit and round-robin.

Workloads are seeded and reproducible: a fleet over the 15 regions (grid-mix mostly, dedicated
sources a minority, clean ones rarer still) and a day of submitted tasks of mixed size, slack and
interruptibility, scaled so that about 60% of the fleet's cores are busy over the day when
every task runs as soon as submitted, with a daytime peak near 90%: clean capacity is contested.
Two carbon-aware figures: "online", the day as the scheduler role lives it (a round at each
5-minute slot in which tasks are submitted, made by the role's own round code, knowing only the
tasks submitted so far and, as its forecast, the tasks of the three days before (same fleet,
same users, another draw), with agents running what each round planned; priced over what ran),
and "day known", every task of the day planned at once from midnight (a clairvoyant bound, not
what the product can do). "online, first day" is the online day without the days before: its
forecast is the day's own tasks so far, at the pace they came (`task_forecast`). Run-now
first-fit is the same either way: each task at its submission on the first server that fits.
With `--ahead H`, the online day is replayed again (with its history) with the tasks without
slack submitted H hours before they may start (declared ahead with `--earliest`).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from backend.allocation import BuiltinIntensity, plan_tasks
from backend.allocation.carbon import footprint
from backend.allocation.horizon import Horizon
from backend.allocation.model import Placement, Plan, Problem, ServerSpec, TaskSpec
from backend.ports import ServerRecord, TaskRecord
from backend.services.plan_round import build_round, make_plan, planned_records
from backend.services.task_forecast import expected_demand
from tasker.domain import REGIONS, default_carbon_intensity

DAY_MS = 86_400_000
START_MS = 1_780_272_000_000  # 2026-06-01T00:00:00Z: a fixed day, so runs compare
# (source, weight): grid-mix most; dedicated clean sources a minority
SOURCES = (
    ("grid-mix", 70),
    ("coal", 7),
    ("gas", 8),
    ("oil", 2),
    ("nuclear", 4),
    ("hydro", 3),
    ("wind", 3),
    ("solar", 3),
)
# (cores, idle W, max W): a few hardware models
HARDWARE = ((8, 40, 160), (16, 70, 280), (32, 100, 400), (48, 140, 560))
TASK_CORES = ((1, 10), (2, 15), (4, 25), (8, 25), (16, 15), (32, 10))
TARGET_BUSY = 0.6
SLOT_MS = 300_000


@dataclass(frozen=True, slots=True)
class Workload:
    servers: list[ServerSpec]
    tasks: list[TaskSpec]


def make_workload(
    seed: int,
    n_servers: int,
    n_tasks: int,
    *,
    day_ms: int = DAY_MS,
    busy: float = TARGET_BUSY,
    slot_ms: int = SLOT_MS,
    days_before: int = 0,
) -> Workload:
    """A fleet and `day_ms` of submitted tasks (planned over twice that), the same for the same
    arguments. With `days_before` k, the same fleet and the tasks of the k-th day before, drawn
    alike (another day of the same users)."""
    rng = random.Random(seed)
    regions = list(REGIONS)
    sources, weights = zip(*SOURCES)
    servers = []
    for i in range(n_servers):
        region = regions[i % len(regions)]
        source = rng.choices(sources, weights)[0]
        cores, idle, peak = rng.choice(HARDWARE)
        tags = frozenset({"gpu"}) if rng.random() < 0.1 else frozenset()
        servers.append(
            ServerSpec(
                id=f"s{i:04d}",
                name=f"srv-{i:04d}",
                region=region,
                energy_source=source,
                intensity_g_per_kwh=default_carbon_intensity(source, region)[0],
                pue=round(rng.uniform(1.1, 1.7), 2),
                idle_watts=idle,
                max_watts=peak,
                cores=cores,
                tags=tags,
            )
        )
    if days_before:
        rng = random.Random(f"{seed}/{days_before}")
    task_cores, task_weights = zip(*TASK_CORES)
    largest = max(s.cores for s in servers)
    raw = []
    for i in range(n_tasks):
        # more submissions in the (UTC) working day: the daily peak of busy cores
        while True:
            at = rng.random()
            if rng.random() < 0.35 + 0.65 * np.sin(np.pi * at) ** 2:
                break
        cores = min(rng.choices(task_cores, task_weights)[0], largest)
        hours = min(12.0, rng.lognormvariate(0.6, 0.8))
        raw.append((int(at * day_ms), cores, hours))
    scale = _scale_to_busy(raw, sum(s.cores for s in servers), day_ms, busy)
    horizon_end = START_MS + 2 * day_ms
    tasks = []
    for i, (at, cores, hours) in enumerate(raw):
        duration_s = max(slot_ms // 1000, int(hours * scale * 3600) // 60 * 60)
        kind = rng.random()
        slack_h = (
            0.0
            if kind < 0.2
            else rng.uniform(1, 4) * day_ms / DAY_MS
            if kind < 0.6
            else rng.uniform(6, 20) * day_ms / DAY_MS
        )
        # submissions wait for the next planning round
        est = START_MS - days_before * day_ms + at // slot_ms * slot_ms
        deadline = min(est + duration_s * 1000 + int(slack_h * 3_600_000), horizon_end - days_before * day_ms)
        duration_s = min(duration_s, (deadline - est) // 1000)
        regions_allowed = frozenset(rng.sample(regions, 4)) if rng.random() < 0.1 else frozenset()
        tasks.append(
            TaskSpec(
                id=f"t{i:05d}" if not days_before else f"d{days_before}t{i:05d}",
                cores=cores,
                duration_s=duration_s,
                earliest_start_ms=est,
                deadline_ms=deadline,
                interruptible=rng.random() < 0.4,
                regions=regions_allowed,
                tags=frozenset({"gpu"}) if rng.random() < 0.03 else frozenset(),
                name=f"task-{i}",
            )
        )
    return Workload(servers, tasks)


def _scale_to_busy(raw: list[tuple[int, int, float]], fleet_cores: int, day_ms: int, busy: float) -> float:
    """Duration factor that keeps `busy` of the fleet's cores busy over the day if every task
    runs when submitted (tasks spilling past midnight count only for their part in the day)."""

    def mean_busy(scale: float) -> float:
        in_day = sum(c * (min(day_ms, at + h * scale * 3_600_000) - at) for at, c, h in raw)
        return in_day / (fleet_cores * day_ms)

    low, high = 0.0, 1.0
    while mean_busy(high) < busy and high < 1e4:
        low, high = high, high * 2
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if mean_busy(mid) < busy else (low, mid)
    return high


def problem_of(workload: Workload, **kwargs: Any) -> Problem:
    """The planning round of a workload: all its tasks, from the start of its day."""
    return Problem(tasks=workload.tasks, servers=workload.servers, start_ms=START_MS, now_ms=START_MS, **kwargs)


def g_per_core_hour(plan: Plan) -> float:
    """Grams CO2e per core-hour the plan runs: a rate that compares plans placing different tasks."""
    core_ms = sum(p.cores * (end - start) for p in plan.placements.values() for start, end in p.pieces)
    return plan.total_co2_g / (core_ms / 3_600_000) if core_ms else 0.0


def busy_share(plan: Plan, servers: list[ServerSpec], day_ms: int = DAY_MS) -> tuple[float, float]:
    """(mean, peak) share of the fleet's cores busy over the first day, per slot."""
    slot_ms = plan.slot_s * 1000
    used = np.zeros(day_ms // slot_ms)
    for placement in plan.placements.values():
        for start, end in placement.pieces:
            first, last = (start - plan.start_ms) // slot_ms, (end - 1 - plan.start_ms) // slot_ms
            used[max(first, 0) : min(last + 1, len(used))] += placement.cores
    share = used / sum(s.cores for s in servers)
    return float(share.mean()), float(share.max())


HISTORY_DAYS = 3
"""Days of tasks before the replayed one that the online rounds know (the role reads seven)."""
ONLINE_BUDGET_S = 1.0
"""The scheduler role's search budget per round (`SchedulerSettings.time_budget_s`)."""


def run_online(
    workload: Workload, intensity: BuiltinIntensity, ahead_ms: int = 0, history: Sequence[TaskSpec] = ()
) -> tuple[Plan, list[float]]:
    """The day as the scheduler role lives it: a round at each 5-minute slot in which tasks are
    submitted, built and written back by the role's own code (`plan_round.build_round` and
    `planned_records`: what is frozen, what a started interruptible task still owes), with
    agents that run every piece as planned between rounds. A task is submitted when it may
    start, except that with `ahead_ms` the tasks without slack are submitted that long before
    (declared ahead, as `--earliest` allows). `history` are the tasks of the days before, from
    which the rounds expect the tasks to come (as the role does from the registry). Returns
    the plan of the day (every task where it really ran, priced over its runs) and each round's
    planning time."""
    servers = [_server_record(spec) for spec in workload.servers]
    past = [_task_record(task, task.earliest_start_ms) for task in history]
    by_slot: dict[int, list[TaskSpec]] = {}
    for task in workload.tasks:
        at = task.earliest_start_ms
        if ahead_ms and task.deadline_ms - at == task.duration_s * 1000:
            at = max(START_MS, at - ahead_ms) // SLOT_MS * SLOT_MS
        by_slot.setdefault(at, []).append(task)
    records: dict[str, TaskRecord] = {}
    round_s: list[float] = []
    then = START_MS
    previous = None
    for now in sorted(by_slot):
        _run_agents(records, then, now)
        for task in by_slot[now]:
            records[task.id] = _task_record(task, now)
        round_ = build_round(
            records.values(),
            servers,
            now,
            SLOT_MS // 1000,
            2 * DAY_MS // 1000 - (now - START_MS) // 1000,
            history=[*past, *records.values()],
            # Nobody submits after the replayed day: expecting its tasks again the next day
            # would hold cores nobody comes for (the role, in a fleet that goes on, does).
            expect_until_ms=START_MS + DAY_MS,
        )
        # The role's full round (SchedulerSettings.replan_s, every 3 min: at this 5-minute
        # granularity every round is one) searches on from its last plan.
        round_, plan = make_plan(round_, intensity, time_budget_s=ONLINE_BUDGET_S, previous=previous, refine=True)
        previous = plan
        round_s.append(plan.solve_s)
        for record in planned_records(round_, plan, 1, now):
            records[record.id] = record
        then = now
    _run_agents(records, then, START_MS + 2 * DAY_MS)  # no task is submitted after the last round
    return _as_run(records, workload, intensity, round_s), round_s


def _run_agents(records: dict[str, TaskRecord], then: int, now: int) -> None:
    """What the agents do between two rounds: run each planned or running task's pieces that
    fall in [then, now), and report it done once it has run its duration."""
    for task_id, task in records.items():
        if task.state not in ("planned", "running"):
            continue
        ran = [[max(a, then), min(b, now)] for a, b in task.pieces if a < now and b > then]
        if not ran:
            continue
        runs = [*task.runs, *ran]
        done = sum(b - a for a, b in runs) >= task.duration_s * 1000
        records[task_id] = replace(
            task,
            state="done" if done else "running",
            runs=runs,
            started_at_ms=task.started_at_ms or ran[0][0],
            finished_at_ms=runs[-1][1] if done else None,
        )


def _as_run(
    records: dict[str, TaskRecord], workload: Workload, intensity: BuiltinIntensity, round_s: list[float]
) -> Plan:
    """The day's plan as it really ran: each task's runs, priced by the allocator's accounting."""
    horizon = Horizon(problem_of(workload), intensity)
    plan = Plan(
        made_at_ms=START_MS,
        solver="heuristic (online)",
        slot_s=SLOT_MS // 1000,
        start_ms=START_MS,
        horizon_end_ms=START_MS + 2 * DAY_MS,
        solve_s=sum(round_s),
    )
    for task_id, task in records.items():
        if not task.runs or task.server_id is None:
            plan.unschedulable[task_id] = task.reason or task.state
            continue
        pieces = tuple(_merged(task.runs))
        kwh, grams = footprint(horizon, horizon.index[task.server_id], task.cores, pieces)
        plan.placements[task_id] = Placement(task_id, task.server_id, pieces, grams, kwh, task.cores)
        if task.state != "done":
            plan.unschedulable[task_id] = f"ran {sum(b - a for a, b in pieces) // 1000} s of {task.duration_s} s"
    return plan


def _merged(runs: list[list[int]]) -> list[tuple[int, int]]:
    """Runs as pieces, the ones that touch joined."""
    out: list[tuple[int, int]] = []
    for a, b in sorted(runs):
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _server_record(spec: ServerSpec) -> ServerRecord:
    return ServerRecord(
        id=spec.id,
        name=spec.name,
        region=spec.region,
        site="",
        energy_source=spec.energy_source,
        carbon_intensity_g_per_kwh=spec.intensity_g_per_kwh,
        carbon_intensity_source="default",
        pue=spec.pue,
        idle_watts=spec.idle_watts,
        max_watts=spec.max_watts,
        cores=spec.cores,
        tags=sorted(spec.tags),
        created_at_ms=START_MS,
        created_by="bench",
        updated_at_ms=START_MS,
    )


def _task_record(spec: TaskSpec, now: int) -> TaskRecord:
    return TaskRecord.submitted(
        id=spec.id,
        name=spec.name,
        owner="bench",
        cores=spec.cores,
        duration_s=spec.duration_s,
        earliest_start_ms=spec.earliest_start_ms,
        deadline_ms=spec.deadline_ms,
        interruptible=spec.interruptible,
        now_ms=now,
        regions=sorted(spec.regions),
        tags=sorted(spec.tags),
    )


def run_allocate(seed: int, n_servers: int, n_tasks: int, exact_seeds: int, ahead_h: float = 0.0) -> dict[str, Any]:
    """Every figure of the benchmark, as one JSON-ready dict; with `ahead_h`, also the online
    day with the tasks without slack declared that many hours ahead."""
    workload = make_workload(seed, n_servers, n_tasks)
    history = [
        task
        for k in range(1, HISTORY_DAYS + 1)
        for task in make_workload(seed, n_servers, n_tasks, days_before=k).tasks
    ]
    intensity = BuiltinIntensity()
    plans = {}
    plans["carbon-aware, online"], rounds = run_online(workload, intensity, history=history)
    plans["online, first day (no history)"], _ = run_online(workload, intensity)
    if ahead_h:
        plans[f"online, no-slack tasks {ahead_h:g} h ahead"], _ = run_online(
            workload, intensity, ahead_ms=int(ahead_h * 3_600_000), history=history
        )
    plans["carbon-aware, day known"] = plan_tasks(
        problem_of(workload), intensity, solver="heuristic", time_budget_s=ONLINE_BUDGET_S
    )
    for solver in ("first-fit", "round-robin"):
        plans[solver] = plan_tasks(problem_of(workload), intensity, solver=solver)
    # Plans that place different tasks are compared per unit of work: grams per core-hour run.
    baseline = g_per_core_hour(plans["first-fit"])
    rows = []
    for solver, plan in plans.items():
        mean, peak = busy_share(plan, workload.servers)
        rate = g_per_core_hour(plan)
        rows.append(
            {
                "solver": solver,
                "co2_kg": plan.total_co2_g / 1000,
                "g_per_core_h": rate,
                "saving_pct": 100 * (1 - rate / baseline),
                "unschedulable": len(plan.unschedulable),
                "busy_mean_pct": 100 * mean,
                "busy_peak_pct": 100 * peak,
                "plan_s": plan.solve_s,
            }
        )
    extra = TaskSpec(
        id="submitted",
        cores=4,
        duration_s=7200,
        earliest_start_ms=START_MS + 6 * 3_600_000,
        deadline_ms=START_MS + 20 * 3_600_000,
        interruptible=False,
    )
    # The re-plan is timed with prices as a forecast sets them (the history's demand over the
    # day, none of it declared), the costlier case, and with the forecast made, as a round does.
    replans = []
    for _ in range(5):
        started = time.perf_counter()
        expected = expected_demand(history, [], START_MS, START_MS + DAY_MS, slot_ms=SLOT_MS)
        plan_tasks(
            problem_of(Workload(workload.servers, [*workload.tasks, extra]), expected=expected),
            intensity,
            solver="heuristic",
            previous=plans["carbon-aware, day known"],
        )
        replans.append(time.perf_counter() - started)
    result: dict[str, Any] = {
        "seed": seed,
        "servers": n_servers,
        "tasks": n_tasks,
        "plans": rows,
        "replan_s_median": statistics.median(replans),
        "online_rounds": len(rounds),
        "online_round_s_median": statistics.median(rounds),
        "online_round_s_max": max(rounds),
    }
    if exact_seeds:
        result["exact"] = run_small(exact_seeds)
    return result


SMALL_FULL_BUDGET_S = 2.0
"""Budget of the small instances' second "auto" figure: the full plan's target (issue 12)."""


SEARCH_ON_ROUNDS = 5
"""Rounds of the small instances' third "auto" figure: a round's 1 s each, every one after the
first searching on from the last plan, as the scheduler's periodic rounds do (every
`replan_s`, 3 minutes) on a fleet whose tasks stay the same meanwhile."""


def _rounds(problem: Problem, rounds: int) -> Plan:
    plan = plan_tasks(problem, BuiltinIntensity(), solver="auto", time_budget_s=ONLINE_BUDGET_S)
    for _ in range(rounds - 1):
        plan = plan_tasks(
            problem, BuiltinIntensity(), solver="auto", time_budget_s=ONLINE_BUDGET_S, previous=plan, refine=True
        )
    return plan


def run_small(seeds: int, exact_budget_s: float = 60.0) -> dict[str, Any]:
    """The heuristic and "auto" against the MILP on 20 servers x 60 tasks x 24 one-hour slots,
    per seed: the heuristic and "auto" (what a planning round of such a fleet does) with a
    round's 1 s budget, "auto" with the 2 s of a full plan's target, and the plan of
    SEARCH_ON_ROUNDS periodic rounds of 1 s."""
    rows = []
    gaps: dict[str, list[float]] = {"gap_pct": [], "auto_gap_pct": [], "auto_2s_gap_pct": [], "rounds_gap_pct": []}
    for seed in range(seeds):
        workload = make_workload(seed, 20, 60, day_ms=DAY_MS // 2, slot_ms=3_600_000)
        problem = problem_of(workload, slot_s=3600, horizon_s=24 * 3600)
        plans = {
            "gap_pct": plan_tasks(problem, BuiltinIntensity(), solver="heuristic", time_budget_s=ONLINE_BUDGET_S),
            "auto_gap_pct": plan_tasks(problem, BuiltinIntensity(), solver="auto", time_budget_s=ONLINE_BUDGET_S),
            "auto_2s_gap_pct": plan_tasks(
                problem, BuiltinIntensity(), solver="auto", time_budget_s=SMALL_FULL_BUDGET_S
            ),
            "rounds_gap_pct": _rounds(problem, SEARCH_ON_ROUNDS),
        }
        exact = plan_tasks(problem, BuiltinIntensity(), solver="exact", time_budget_s=exact_budget_s)
        row: dict[str, Any] = {
            "seed": seed,
            "heuristic_placed": len(plans["gap_pct"].placements),
            "exact_placed": len(exact.placements),
        }
        for key, plan in plans.items():
            row[key] = 100 * (plan.total_co2_g / exact.total_co2_g - 1)
            gaps[key].append(row[key])
        row.update({"optimal": exact.optimal, "exact_s": exact.solve_s, "exact_g": round(exact.total_co2_g, 1)})
        rows.append(row)
    result: dict[str, Any] = {"runs": rows}
    for key, values in gaps.items():
        result[f"{key}_median"] = statistics.median(values)
        result[f"{key}_worst"] = max(values)
    return result


def render(result: dict[str, Any]) -> str:
    """The figures as tables."""
    from tasker_bench.report import table

    lines = [
        table(
            ["plan", "kg CO2e", "g/core-h", "saving %", "unschedulable", "busy mean %", "busy peak %", "plan s"],
            [list(r.values())[0:8] for r in result["plans"]],
            title=(
                f"{result['tasks']} tasks on {result['servers']} servers, seed {result['seed']}, 48 h of 5-minute slots"
            ),
        ),
        f"online: {result['online_rounds']} planning rounds, {result['online_round_s_median'] * 1000:.0f} ms "
        f"median, {result['online_round_s_max'] * 1000:.0f} ms at most (plan s above: their sum)",
        f"re-plan of the whole day after one submitted task: {result['replan_s_median'] * 1000:.0f} ms (median of 5)",
    ]
    if "exact" in result:
        small = result["exact"]
        lines.append(
            table(
                [
                    "seed",
                    "heuristic placed",
                    "exact placed",
                    "gap %",
                    "auto gap %",
                    "auto 2 s gap %",
                    f"{SEARCH_ON_ROUNDS} rounds gap %",
                    "optimal",
                    "exact s",
                    "exact g",
                ],
                [list(r.values()) for r in small["runs"]],
                title="\nheuristic and auto vs exact (20 servers x 60 tasks x 24 slots)",
            )
        )
        lines.append(
            f"gap median {small['gap_pct_median']:.2f}%, worst {small['gap_pct_worst']:.2f}%; "
            f"auto (a round, 1 s) median {small['auto_gap_pct_median']:.2f}%, "
            f"worst {small['auto_gap_pct_worst']:.2f}%; "
            f"auto in 2 s median {small['auto_2s_gap_pct_median']:.2f}%, worst {small['auto_2s_gap_pct_worst']:.2f}%; "
            f"after {SEARCH_ON_ROUNDS} rounds of 1 s median {small['rounds_gap_pct_median']:.2f}%, "
            f"worst {small['rounds_gap_pct_worst']:.2f}%"
        )
    return "\n".join(lines)
