"""`tasker bench allocate`: the carbon-aware plan against run-now first-fit and round-robin.

Workloads are seeded and reproducible: a fleet over the 15 regions (grid-mix mostly, dedicated
sources a minority, clean ones rarer still) and a day of submitted tasks of mixed size, slack and
interruptibility, scaled so that about 60% of the fleet's cores are busy over the day when
every task runs as soon as submitted, with a daytime peak near 90%: clean capacity is contested.
All tasks of the day are planned at once (the plan an online scheduler converges to when it
re-plans on each submission).
"""

from __future__ import annotations

import random
import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from backend.allocation import BuiltinIntensity, plan_tasks
from backend.allocation.model import Plan, Problem, ServerSpec, TaskSpec
from tasker.domain import REGIONS, default_carbon_intensity

DAY_MS = 86_400_000
START_MS = 1_780_272_000_000  # 2026-06-01T00:00:00Z: a fixed day, so runs compare
# (source, weight): grid-mix most; dedicated clean sources a minority
SOURCES = (("grid-mix", 70), ("coal", 7), ("gas", 8), ("oil", 2), ("nuclear", 4), ("hydro", 3),
           ("wind", 3), ("solar", 3))
# (cores, idle W, max W): a few hardware models
HARDWARE = ((8, 40, 160), (16, 70, 280), (32, 100, 400), (48, 140, 560))
TASK_CORES = ((1, 10), (2, 15), (4, 25), (8, 25), (16, 15), (32, 10))
TARGET_BUSY = 0.6
SLOT_MS = 300_000


@dataclass(frozen=True, slots=True)
class Workload:
    servers: list[ServerSpec]
    tasks: list[TaskSpec]


def make_workload(seed: int, n_servers: int, n_tasks: int, *, day_ms: int = DAY_MS,
                  busy: float = TARGET_BUSY, slot_ms: int = SLOT_MS) -> Workload:
    """A fleet and `day_ms` of submitted tasks (planned over twice that), the same for the same
    arguments."""
    rng = random.Random(seed)
    regions = list(REGIONS)
    sources, weights = zip(*SOURCES)
    servers = []
    for i in range(n_servers):
        region = regions[i % len(regions)]
        source = rng.choices(sources, weights)[0]
        cores, idle, peak = rng.choice(HARDWARE)
        tags = frozenset({"gpu"}) if rng.random() < 0.1 else frozenset()
        servers.append(ServerSpec(
            id=f"s{i:04d}", name=f"srv-{i:04d}", region=region, energy_source=source,
            intensity_g_per_kwh=default_carbon_intensity(source, region)[0],
            pue=round(rng.uniform(1.1, 1.7), 2), idle_watts=idle, max_watts=peak, cores=cores, tags=tags))
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
        slack_h = 0.0 if kind < 0.2 else rng.uniform(1, 4) * day_ms / DAY_MS if kind < 0.6 else rng.uniform(6, 20) * day_ms / DAY_MS
        est = START_MS + at // slot_ms * slot_ms  # submissions wait for the next planning round
        deadline = min(est + duration_s * 1000 + int(slack_h * 3_600_000), horizon_end)
        duration_s = min(duration_s, (deadline - est) // 1000)
        regions_allowed = frozenset(rng.sample(regions, 4)) if rng.random() < 0.1 else frozenset()
        tasks.append(TaskSpec(
            id=f"t{i:05d}", cores=cores, duration_s=duration_s, earliest_start_ms=est,
            deadline_ms=deadline,
            interruptible=rng.random() < 0.4, regions=regions_allowed,
            tags=frozenset({"gpu"}) if rng.random() < 0.03 else frozenset(), name=f"task-{i}"))
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


def busy_share(plan: Plan, servers: list[ServerSpec], day_ms: int = DAY_MS) -> tuple[float, float]:
    """(mean, peak) share of the fleet's cores busy over the first day, per slot."""
    slot_ms = plan.slot_s * 1000
    used = np.zeros(day_ms // slot_ms)
    for placement in plan.placements.values():
        for start, end in placement.pieces:
            first, last = (start - plan.start_ms) // slot_ms, (end - 1 - plan.start_ms) // slot_ms
            used[max(first, 0):min(last + 1, len(used))] += placement.cores
    share = used / sum(s.cores for s in servers)
    return float(share.mean()), float(share.max())


def run_allocate(seed: int, n_servers: int, n_tasks: int, exact_seeds: int) -> dict[str, Any]:
    """Every figure of the benchmark, as one JSON-ready dict."""
    workload = make_workload(seed, n_servers, n_tasks)
    intensity = BuiltinIntensity()
    plans = {}
    for solver in ("heuristic", "first-fit", "round-robin"):
        plans[solver] = plan_tasks(problem_of(workload), intensity, solver=solver, time_budget_s=10.0)
    baseline = plans["first-fit"].total_co2_g
    rows = []
    for solver, plan in plans.items():
        mean, peak = busy_share(plan, workload.servers)
        rows.append({"solver": solver, "co2_kg": plan.total_co2_g / 1000, "saving_pct": 100 * (1 - plan.total_co2_g / baseline),
                     "unschedulable": len(plan.unschedulable), "busy_mean_pct": 100 * mean, "busy_peak_pct": 100 * peak,
                     "plan_s": plan.solve_s})
    extra = TaskSpec(id="submitted", cores=4, duration_s=7200, earliest_start_ms=START_MS + 6 * 3_600_000,
                     deadline_ms=START_MS + 20 * 3_600_000, interruptible=False)
    replans = []
    for _ in range(5):
        started = time.perf_counter()
        plan_tasks(problem_of(Workload(workload.servers, [*workload.tasks, extra])), intensity,
                   solver="heuristic", previous=plans["heuristic"])
        replans.append(time.perf_counter() - started)
    result: dict[str, Any] = {"seed": seed, "servers": n_servers, "tasks": n_tasks, "plans": rows,
                              "replan_s_median": statistics.median(replans)}
    if exact_seeds:
        result["exact"] = run_small(exact_seeds)
    return result


def run_small(seeds: int) -> dict[str, Any]:
    """Heuristic against the MILP on 20 servers x 60 tasks x 24 one-hour slots, per seed."""
    gaps, rows = [], []
    for seed in range(seeds):
        workload = make_workload(seed, 20, 60, day_ms=DAY_MS // 2, slot_ms=3_600_000)
        problem = problem_of(workload, slot_s=3600, horizon_s=24 * 3600)
        heuristic = plan_tasks(problem, BuiltinIntensity(), solver="heuristic")
        exact = plan_tasks(problem, BuiltinIntensity(), solver="exact", time_budget_s=60.0)
        gap = 100 * (heuristic.total_co2_g / exact.total_co2_g - 1)
        gaps.append(gap)
        rows.append({"seed": seed, "heuristic_placed": len(heuristic.placements), "exact_placed": len(exact.placements),
                     "gap_pct": gap, "optimal": exact.optimal, "exact_s": exact.solve_s})
    return {"runs": rows, "gap_pct_median": statistics.median(gaps), "gap_pct_worst": max(gaps)}


def render(result: dict[str, Any]) -> str:
    """The figures as tables."""
    from tasker.bench.report import table

    lines = [table(["plan", "kg CO2e", "saving %", "unschedulable", "busy mean %", "busy peak %", "plan s"],
                   [list(r.values())[0:7] for r in result["plans"]],
                   title=f"{result['tasks']} tasks on {result['servers']} servers, seed {result['seed']}, 48 h of 5-minute slots"),
             f"re-plan after one submitted task: {result['replan_s_median'] * 1000:.0f} ms (median of 5)"]
    if "exact" in result:
        small = result["exact"]
        lines.append(table(["seed", "heuristic placed", "exact placed", "gap %", "optimal", "exact s"],
                           [list(r.values()) for r in small["runs"]], title="\nheuristic vs exact (20 servers x 60 tasks x 24 slots)"))
        lines.append(f"gap median {small['gap_pct_median']:.2f}%, worst {small['gap_pct_worst']:.2f}%")
    return "\n".join(lines)
