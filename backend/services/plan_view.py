"""The plan as people read it: each server's timeline over the horizon with the intensity it
will draw per slot, and the CO2 planned against running every task now.

Read from the registry (the tasks as the scheduler last wrote them), so any api process can
answer without the scheduler's memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from backend.allocation.model import DEFAULT_HORIZON_S, DEFAULT_SLOT_S
from backend.ports import Registry, TaskRecord
from backend.services.auth import Principal
from backend.services.grid_traces import load_intensity
from backend.services.plan_round import server_spec
from backend.services.tasks import can_see
from backend.services.timestamps import format_rfc3339

ON_TIMELINE = frozenset({"planned", "running"})


async def timeline(
    registry: Registry,
    principal: Principal,
    now_ms: int,
    slot_s: int = DEFAULT_SLOT_S,
    horizon_s: int = DEFAULT_HORIZON_S,
) -> dict[str, Any]:
    """Every server with its placements (pieces) over [now, now + horizon) and the id of its
    intensity curve; `curves` holds each distinct curve once, g/kWh per slot from `start`.

    A sysadmin sees other owners' placements only as occupied cores (no name, owner or id)."""
    start = now_ms - now_ms % (slot_s * 1000)
    slots = horizon_s // slot_s
    end = start + slots * slot_s * 1000
    servers = await registry.list_servers()
    tasks = await registry.list_tasks(states=sorted(ON_TIMELINE))
    intensity = await load_intensity(registry)
    by_server: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        pieces = [[a, b] for a, b in task.pieces if b > start and a < end]
        if task.server_id is None or not pieces:
            continue
        entry: dict[str, Any] = {
            "cores": task.cores,
            "state": task.state,
            "co2_g": task.co2_g,
            "pieces": [[format_rfc3339(a), format_rfc3339(b)] for a, b in pieces],
        }
        if can_see(principal, task):
            entry.update({"task_id": task.id, "name": task.name, "owner": task.owner})
        else:
            entry.update({"task_id": None, "name": None, "owner": None})
        by_server.setdefault(task.server_id, []).append(entry)
    curves: dict[str, list[float]] = {}
    out = []
    for record in servers:
        spec = server_spec(record)
        # Servers of one region, source and own figure draw the same curve: sent once.
        key = f"{spec.region}/{spec.energy_source}/{spec.intensity_g_per_kwh:g}"
        if key not in curves:
            curves[key] = [round(float(v), 1) for v in intensity.series(spec, start, slot_s, slots)]
        placements = sorted(by_server.get(record.id, []), key=lambda p: p["pieces"][0][0])
        out.append(
            {
                "id": record.id,
                "name": record.name,
                "region": record.region,
                "energy_source": record.energy_source,
                "cores": record.cores,
                "pue": record.pue,
                "curve": key,
                "placements": placements,
            }
        )
    return {
        "start": format_rfc3339(start),
        "end": format_rfc3339(end),
        "slot_s": slot_s,
        "servers": out,
        "curves": curves,
    }


def _sums(tasks: Iterable[TaskRecord]) -> dict[str, Any]:
    tasks = list(tasks)
    compared = [t for t in tasks if t.co2_g is not None and t.run_now_co2_g is not None]
    planned = sum(t.co2_g for t in compared)  # type: ignore[misc]
    run_now = sum(t.run_now_co2_g for t in compared)  # type: ignore[misc]
    saving = run_now - planned
    return {
        "tasks": len(tasks),
        "compared": len(compared),
        "planned_co2_g": round(planned, 3),
        "run_now_co2_g": round(run_now, 3),
        "saving_g": round(saving, 3),
        "saving_pct": round(100 * saving / run_now, 2) if run_now > 0 else None,
    }


DAY_MS = 86_400_000


def saved_today(tasks: Iterable[TaskRecord], now_ms: int) -> dict[str, Any]:
    """Over the tasks done since midnight UTC with a measured figure: run-now minus measured
    CO2 ("saved today"); tasks done but not measured yet are counted apart."""
    midnight = now_ms - now_ms % DAY_MS
    done = [t for t in tasks if t.state == "done" and (t.finished_at_ms or 0) >= midnight]
    measured = [t for t in done if t.measured_co2_g is not None and t.run_now_co2_g is not None]
    run_now = sum(t.run_now_co2_g for t in measured)  # type: ignore[misc]
    actual = sum(t.measured_co2_g for t in measured)  # type: ignore[misc]
    return {
        "since": format_rfc3339(midnight),
        "done": len(done),
        "measured": len(measured),
        "run_now_co2_g": round(run_now, 3),
        "measured_co2_g": round(actual, 3),
        "saved_g": round(run_now - actual, 3),
    }


def savings(tasks: Iterable[TaskRecord], now_ms: int | None = None) -> dict[str, Any]:
    """CO2 planned vs run-now (first fit, now): in total over the tasks that run or will
    (planned, running, done), and per task state. Tasks without both figures (queued,
    unschedulable) are counted but not compared. With `now_ms`, also `today`: run-now minus
    measured over the tasks done today (`saved_today`)."""
    tasks = list(tasks)
    by_state: dict[str, list[TaskRecord]] = {}
    for task in tasks:
        by_state.setdefault(task.state, []).append(task)
    counted = [t for t in tasks if t.state in ("planned", "running", "done")]
    out = {"totals": _sums(counted), "by_state": {s: _sums(ts) for s, ts in sorted(by_state.items())}}
    if now_ms is not None:
        out["today"] = saved_today(tasks, now_ms)
    return out
