"""A round of the scheduler role in plain values: a started task keeps its place even when a
plan would rather give its server's room to new tasks."""

from __future__ import annotations

from dataclasses import replace

from backend.allocation import BuiltinIntensity
from backend.ports import ServerRecord, TaskRecord
from backend.services.plan_round import build_round, make_plan, planned_records

T0 = 1_780_272_000_000  # 2026-06-01T00:00:00Z
H = 3_600_000
NOW = T0 + H


def server(id: str, cores: int) -> ServerRecord:
    return ServerRecord(
        id=id,
        name=id,
        region="eu-north",
        site="",
        energy_source="wind",
        carbon_intensity_g_per_kwh=11.0,
        carbon_intensity_source="default",
        pue=1.2,
        idle_watts=50.0,
        max_watts=250.0,
        cores=cores,
        tags=[],
        created_at_ms=T0,
        created_by="admin",
        updated_at_ms=T0,
    )


def task(id: str, *, hours: float, deadline_ms: int, interruptible: bool = False, **changes) -> TaskRecord:
    record = TaskRecord.submitted(
        id=id,
        name=id,
        owner="ops",
        cores=8,
        duration_s=int(hours * 3600),
        earliest_start_ms=NOW,
        deadline_ms=deadline_ms,
        interruptible=interruptible,
        now_ms=T0,
    )
    return replace(record, **changes)


def test_a_started_task_the_plan_leaves_out_keeps_its_last_place():
    # An interruptible task ran its first hour; its last plan has its other two at +1h..+3h.
    # Between pieces it is planned again, on its server, for what it owes. Three new one-hour
    # tasks want the same 8 cores within the same 3 hours: placing them (three tasks) beats
    # placing it and one of them (two), so a plan alone would leave it out, and its agent would
    # still run its last plan's two hours on top of them.
    started = task(
        "started",
        hours=3.0,
        deadline_ms=NOW + 3 * H,
        interruptible=True,
        earliest_start_ms=T0,
        state="running",
        server_id="solo",
        pieces=[[T0, T0 + H], [NOW + H, NOW + 3 * H]],
        runs=[[T0, T0 + H]],
        started_at_ms=T0,
        plan_epoch=1,
    )
    new = [task(f"new{i}", hours=1.0, deadline_ms=NOW + 3 * H) for i in range(3)]
    round_ = build_round([started, *new], [server("solo", cores=8)], NOW)
    assert "started" in {spec.id for spec in round_.problem.tasks}  # planned again, not fixed

    held, plan = make_plan(round_, BuiltinIntensity(), time_budget_s=1.0)

    last_plan = ((T0, T0 + H), (NOW + H, NOW + 3 * H))
    assert [(p.task_id, p.pieces) for p in held.problem.fixed] == [("started", last_plan)]
    assert len(plan.placements) == 1 and len(plan.unschedulable) == 2
    (placed,) = plan.placements.values()
    assert placed.pieces == ((NOW, NOW + H),)  # the one hour the started task leaves free
    assert all("no capacity" in reason for reason in plan.unschedulable.values())
    written = {record.id: record for record in planned_records(held, plan, 2, NOW)}
    assert "started" not in written  # its record, pieces and all, stays as it was


def test_a_started_task_with_room_is_planned_again_for_what_it_owes():
    started = task(
        "started",
        hours=2.0,
        deadline_ms=NOW + 6 * H,
        interruptible=True,
        earliest_start_ms=T0,
        state="running",
        server_id="solo",
        pieces=[[T0, T0 + H], [NOW + 4 * H, NOW + 5 * H]],
        runs=[[T0, T0 + H]],
        started_at_ms=T0,
        plan_epoch=1,
    )
    round_ = build_round([started], [server("solo", cores=8)], NOW)

    held, plan = make_plan(round_, BuiltinIntensity(), time_budget_s=1.0)

    assert held is round_ and not plan.unschedulable
    placement = plan.placements["started"]
    assert placement.server_id == "solo"
    assert sum(end - start for start, end in placement.pieces) == H  # the hour it still owes


def test_a_task_declared_past_the_horizon_stays_queued_saying_why_until_a_round_reaches_it():
    ahead = task("ahead", hours=1.0, earliest_start_ms=NOW + 60 * H, deadline_ms=NOW + 70 * H)
    fleet = [server("solo", cores=8)]
    round_, plan = make_plan(build_round([ahead], fleet, NOW), BuiltinIntensity(), time_budget_s=0.2)
    (written,) = planned_records(round_, plan, 1, NOW)
    assert written.state == "queued" and written.server_id is None
    assert written.reason == "waits until the 48h planning horizon covers its run"
    later = NOW + 24 * H  # its window now starts 36 h on, within the horizon
    round_, plan = make_plan(build_round([written], fleet, later), BuiltinIntensity(), time_budget_s=0.2)
    (placed,) = planned_records(round_, plan, 1, later)
    assert placed.state == "planned" and placed.server_id == "solo" and placed.reason == ""
