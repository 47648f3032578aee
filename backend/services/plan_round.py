"""One planning round in plain values: registry records in, the allocator's Problem out, and
the Plan back into the task records to write.

No I/O here (the scheduler reads and writes); what counts as a live server, which tasks are
re-planned and which keep their place are decided in this file.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from backend.allocation import CarbonIntensity, plan_tasks
from backend.allocation.model import DEFAULT_HORIZON_S, DEFAULT_SLOT_S, Placement, Plan, Problem, ServerSpec, TaskSpec
from backend.ports import Latest, ServerRecord, TaskRecord, no_plan
from backend.services.task_forecast import expected_demand
from backend.services.task_runs import ran_ms

STALE_MS = 2 * 60_000
"""A server without a reading for this long gets no tasks (DESIGN.md section 3)."""
REPLANNED = frozenset({"queued", "planned", "unschedulable"})
"""States whose placement every round may change (tasks not started)."""


def server_spec(record: ServerRecord) -> ServerSpec:
    """The allocator's view of a registered server."""
    return ServerSpec(
        id=record.id,
        name=record.name,
        region=record.region,
        energy_source=record.energy_source,
        intensity_g_per_kwh=float(record.carbon_intensity_g_per_kwh),
        pue=float(record.pue),
        idle_watts=float(record.idle_watts),
        max_watts=float(record.max_watts),
        cores=int(record.cores),
        tags=frozenset(record.tags),
    )


def live_servers(
    servers: Sequence[ServerRecord],
    latest: Mapping[tuple[str, str], Latest] | None,
    now_ms: int,
    stale_ms: int = STALE_MS,
) -> list[ServerRecord]:
    """Servers that reported within `stale_ms`, or were added less than `stale_ms` ago (their
    sensor may not have started yet). With `latest` None (the store is down) all count."""
    if latest is None:
        return list(servers)
    newest: dict[str, int] = {}
    for (server_id, _metric), value in latest.items():
        newest[server_id] = max(newest.get(server_id, 0), value.ts_ms)
    cutoff = now_ms - stale_ms
    return [s for s in servers if newest.get(s.id, s.created_at_ms) > cutoff]


def _ran_ms(task: TaskRecord, now_ms: int) -> int:
    """What the task has run: as its agent reported it, else (no agent) its pieces until now."""
    if task.runs or task.run_since_ms is not None:
        return ran_ms(task, now_ms)
    return sum(max(0, min(b, now_ms) - a) for a, b in task.pieces)


def frozen(task: TaskRecord, now_ms: int, slot_ms: int, grace_ms: int) -> bool:
    """True when the task's placement must not move: it runs now or starts within the next
    slot, so its agent may be starting it (agents and the plan must agree). A planned task
    whose start passed more than `grace_ms` ago was never started (no agent took it): it
    moves again."""
    if task.state not in ("planned", "running") or not task.pieces:
        return False
    upcoming = [p for p in task.pieces if p[1] > now_ms]
    if not upcoming:
        return task.state == "running"  # overran its plan: it still holds its server
    start = upcoming[0][0]
    return start <= now_ms + slot_ms and (task.state == "running" or start > now_ms - grace_ms)


@dataclass(slots=True)
class Round:
    """What one round asks the allocator, and the tasks it concerns."""

    problem: Problem
    tasks: dict[str, TaskRecord]
    """Every task of the round by id (the ones re-planned and the running ones)."""
    expired: list[TaskRecord]
    """Tasks not started whose deadline can no longer be met; written unschedulable."""


def build_round(
    tasks: Iterable[TaskRecord],
    servers: Sequence[ServerRecord],
    now_ms: int,
    slot_s: int = DEFAULT_SLOT_S,
    horizon_s: int = DEFAULT_HORIZON_S,
    freeze_grace_ms: int = 60_000,
    history: Iterable[TaskRecord] = (),
    expect_until_ms: int | None = None,
) -> Round:
    """The Problem of a round: tasks not started are placed afresh; a task that runs now or
    starts within the next slot keeps its placement (fixed, see `frozen`), as does a started
    non-interruptible task; a started interruptible one between its pieces keeps its server
    for what it still owes. `history` (the tasks of the last days) gives the demand expected
    from tasks not yet submitted (`task_forecast`) until `expect_until_ms` (default: the end of
    the horizon; a replay whose submissions end earlier says so)."""
    specs: list[TaskSpec] = []
    fixed: list[Placement] = []
    by_id: dict[str, TaskRecord] = {}
    expired: list[TaskRecord] = []
    live = {s.id for s in servers}
    for task in tasks:
        by_id[task.id] = task
        if task.server_id in live and frozen(task, now_ms, slot_s * 1000, freeze_grace_ms):
            fixed.append(_held(task))
            continue
        if task.state in REPLANNED:
            if task.deadline_ms - max(now_ms, task.earliest_start_ms) < task.duration_s * 1000:
                expired.append(task)
                continue
            specs.append(
                TaskSpec(
                    id=task.id,
                    cores=task.cores,
                    duration_s=task.duration_s,
                    earliest_start_ms=max(task.earliest_start_ms, now_ms),
                    deadline_ms=task.deadline_ms,
                    interruptible=task.interruptible,
                    regions=frozenset(task.regions),
                    tags=frozenset(task.tags),
                    name=task.name,
                )
            )
        elif task.state == "running" and task.server_id in live and task.pieces:
            if task.interruptible:
                owed_s = max(1, task.duration_s - _ran_ms(task, now_ms) // 1000)
                specs.append(
                    TaskSpec(
                        id=task.id,
                        cores=task.cores,
                        duration_s=owed_s,
                        earliest_start_ms=now_ms,
                        deadline_ms=max(task.deadline_ms, now_ms + owed_s * 1000),
                        interruptible=True,
                        regions=frozenset(task.regions),
                        tags=frozenset(task.tags),
                        server_id=task.server_id,
                        name=task.name,
                    )
                )
            else:
                fixed.append(_held(task))
    start_ms = now_ms - now_ms % (slot_s * 1000)
    horizon_end_ms = start_ms + horizon_s * 1000
    until = horizon_end_ms if expect_until_ms is None else min(expect_until_ms, horizon_end_ms)
    expected = expected_demand(history, specs, now_ms, until, slot_ms=slot_s * 1000)
    problem = Problem(
        tasks=specs,
        servers=[server_spec(s) for s in servers],
        start_ms=start_ms,
        now_ms=now_ms,
        slot_s=slot_s,
        horizon_s=horizon_s,
        fixed=fixed,
        expected=expected,
    )
    return Round(problem, by_id, expired)


def make_plan(
    round_: Round,
    intensity: CarbonIntensity,
    *,
    time_budget_s: float,
    previous: Plan | None = None,
    refine: bool = False,
    solver: str = "auto",
) -> tuple[Round, Plan]:
    """The round's plan (and the round it was made for). A started task the plan leaves out
    (the room on its server went to others) is held where its last plan had it, and the rest
    planned again around it: a started task keeps its place, and its agent never runs pieces
    that no plan counted. Its last plan always fits: every plan since counted it. `previous`
    and `refine` are `plan_tasks`'s (the second pass only repairs)."""
    plan = plan_tasks(
        round_.problem, intensity, solver=solver, time_budget_s=time_budget_s, previous=previous, refine=refine
    )
    stranded = {
        spec.id
        for spec in round_.problem.tasks
        if (spec.id in plan.unschedulable or spec.id in plan.waiting)
        and round_.tasks[spec.id].state == "running"
        and round_.tasks[spec.id].pieces
    }
    if not stranded:
        return round_, plan
    problem = replace(
        round_.problem,
        tasks=[spec for spec in round_.problem.tasks if spec.id not in stranded],
        fixed=[*round_.problem.fixed, *(_held(round_.tasks[task_id]) for task_id in sorted(stranded))],
    )
    held = Round(problem, round_.tasks, round_.expired)
    again = plan_tasks(problem, intensity, solver=solver, time_budget_s=time_budget_s, previous=plan)
    again.solve_s += plan.solve_s  # the round took both
    return held, again


def _plan_fields(task: TaskRecord) -> tuple:
    return (
        task.state,
        task.reason,
        task.server_id,
        task.pieces,
        task.co2_g,
        task.energy_kwh,
        task.run_now_co2_g,
        task.run_now_server_id,
        task.explanation,
    )


def planned_records(round_: Round, plan: Plan, epoch: int, now_ms: int) -> list[TaskRecord]:
    """The task records this plan changes, each with the next version and the lease epoch.

    A record whose plan is unchanged is still written when it was planned under an older
    epoch, so that a scheduler whose lease was taken over cannot overwrite it any more."""
    out: list[TaskRecord] = []
    for task in round_.expired:
        out.append(unplanned(task, state="unschedulable", reason="its deadline can no longer be met"))
    for spec in round_.problem.tasks:
        task = round_.tasks[spec.id]
        if spec.id in plan.placements:
            placement = plan.placements[spec.id]
            explanation = plan.explanations.get(spec.id)
            state = "running" if task.state == "running" else "planned"
            out.append(
                replace(
                    task,
                    state=state,
                    reason="",
                    server_id=placement.server_id,
                    pieces=[[a, b] for a, b in placement.pieces],
                    co2_g=round(placement.co2_g, 6),
                    energy_kwh=round(placement.energy_kwh, 9),
                    run_now_co2_g=None
                    if explanation is None or explanation.run_now_co2_g is None
                    else round(explanation.run_now_co2_g, 6),
                    run_now_server_id=None if explanation is None else explanation.run_now_server_id,
                    explanation="" if explanation is None else explanation.reason,
                )
            )
        elif spec.id in plan.unschedulable and task.state != "running":
            out.append(unplanned(task, state="unschedulable", reason=plan.unschedulable[spec.id]))
        elif spec.id in plan.waiting and task.state != "running":
            out.append(unplanned(task, state="queued", reason=plan.waiting[spec.id]))
    # A planned task kept fixed (it starts within the next slot) is claimed under the new epoch
    # too: the scheduler whose lease was taken over must not overwrite it either.
    written = {task.id for task in out}
    replanned = {spec.id for spec in round_.problem.tasks}
    out.extend(
        task
        for task in round_.tasks.values()
        if task.state == "planned" and task.id not in replanned and task.id not in written and task.plan_epoch < epoch
    )
    changed = []
    for new in out:
        old = round_.tasks[new.id]
        if _plan_fields(new) != _plan_fields(old) or old.plan_epoch < epoch:
            changed.append(replace(new, plan_epoch=epoch, updated_at_ms=now_ms, version=old.version + 1))
    return changed


def unplanned(task: TaskRecord, **changes: Any) -> TaskRecord:
    """The task with its placement and explanation cleared (queued again, or unschedulable)."""
    return replace(task, **{**no_plan(), **changes})


def _held(task: TaskRecord) -> Placement:
    """The cores a started task holds where it runs, as a fixed placement."""
    assert task.server_id is not None
    return Placement(
        task.id,
        task.server_id,
        tuple((a, b) for a, b in task.pieces),
        task.co2_g or 0.0,
        task.energy_kwh or 0.0,
        task.cores,
    )
