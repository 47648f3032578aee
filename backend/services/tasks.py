"""Tasks: submit, list, show and cancel, with ownership, and the events that wake the scheduler.

Ownership (DESIGN.md section 3): a task belongs to the sysadmin who submitted it. Sysadmins see
and cancel only their own (another's task is "not found" to them), engineers read every task
and submit none, admins do everything. Every write is a compare-and-set on the task's version
(`Registry.update_task`), retried on a lost race, so a cancel never undoes a plan written
meanwhile nor the other way round.
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

from backend.ports import (
    FINISHED_TASK_STATES,
    TASK_STATES,
    Broker,
    Conflict,
    NotFound,
    Registry,
    TaskRecord,
    Unavailable,
)
from backend.services.auth import Principal
from backend.services.errors import Forbidden
from backend.services.passwords import random_base32
from backend.services.task_form import new_task
from backend.services.timestamps import format_rfc3339, now_ms
from backend.services.wire import PLAN_CHANNEL

log = logging.getLogger(__name__)

_CAS_ATTEMPTS = 20


def new_task_id() -> str:
    """`tsk_` and 10 random lowercase base32 characters (50 bits)."""
    return "tsk_" + random_base32(10)


def task_json(task: TaskRecord) -> dict[str, Any]:
    """A task as the API shows it (times RFC 3339, the plan as one object or null)."""
    plan = None
    if task.server_id is not None and task.pieces:
        saving = None if task.run_now_co2_g is None or task.co2_g is None else task.run_now_co2_g - task.co2_g
        plan = {
            "server_id": task.server_id,
            "pieces": [[format_rfc3339(a), format_rfc3339(b)] for a, b in task.pieces],
            "start": format_rfc3339(task.pieces[0][0]),
            "end": format_rfc3339(task.pieces[-1][1]),
            "co2_g": task.co2_g,
            "energy_kwh": task.energy_kwh,
            "run_now_co2_g": task.run_now_co2_g,
            "run_now_server_id": task.run_now_server_id,
            "saving_g": saving,
            "explanation": task.explanation,
            "epoch": task.plan_epoch,
            "measured_co2_g": task.measured_co2_g,
            "measured_energy_kwh": task.measured_energy_kwh,
            "measured_saving_g": (
                None
                if task.run_now_co2_g is None or task.measured_co2_g is None
                else task.run_now_co2_g - task.measured_co2_g
            ),
        }
    return {
        "id": task.id,
        "name": task.name,
        "owner": task.owner,
        "cores": task.cores,
        "duration_s": task.duration_s,
        "earliest_start": format_rfc3339(task.earliest_start_ms),
        "deadline": format_rfc3339(task.deadline_ms),
        "interruptible": task.interruptible,
        "regions": list(task.regions),
        "tags": list(task.tags),
        "command": task.command,
        "state": task.state,
        "reason": task.reason,
        "plan": plan,
        "created_at": format_rfc3339(task.created_at_ms),
        "updated_at": format_rfc3339(task.updated_at_ms),
        "started_at": None if task.started_at_ms is None else format_rfc3339(task.started_at_ms),
        "finished_at": None if task.finished_at_ms is None else format_rfc3339(task.finished_at_ms),
        "version": task.version,
        "cwd": task.cwd,
        "env": dict(task.env),
        "run": run_json(task),
    }


def run_json(task: TaskRecord) -> dict[str, Any]:
    """How the task really ran, as its agent reported it (see docs/agents.md)."""
    activity = "running" if task.run_since_ms is not None else "paused" if task.state == "running" else None
    return {
        "activity": activity,
        "runs": [[format_rfc3339(a), format_rfc3339(b)] for a, b in task.runs],
        "since": None if task.run_since_ms is None else format_rfc3339(task.run_since_ms),
        "exit_code": task.exit_code,
        "output_tail": task.output_tail,
        "agent_epoch": task.agent_epoch,
        "measured_at": None if task.measured_at_ms is None else format_rfc3339(task.measured_at_ms),
    }


def can_see(principal: Principal, task: TaskRecord) -> bool:
    """Sysadmins see their own tasks; engineers and admins see every task."""
    return principal.role != "sysadmin" or task.owner == principal.name


class TaskService:
    """Task CRUD for the api role; announces submissions and cancellations on the plan channel."""

    def __init__(self, registry: Registry, broker: Broker | None) -> None:
        self.registry = registry
        self.broker = broker

    async def announce(self, event: str, task: TaskRecord) -> None:
        """Tell schedulers and websocket clients (through every api process) of a change."""
        if self.broker is None:
            return
        body = json.dumps({"event": event, "task": task_json(task)}, separators=(",", ":"))
        try:
            await self.broker.publish_event(PLAN_CHANNEL, body.encode())
        except Unavailable as exc:
            # Stored anyway; the scheduler's periodic round plans it, clients re-list on reconnect.
            log.warning("task %s event for %s not broadcast: %s", event, task.id, exc)

    async def submit(self, payload: Any, principal: Principal) -> TaskRecord:
        """Validate and store a queued task owned by the caller; engineers may not submit."""
        if not principal.can_write:
            raise Forbidden(f"role {principal.role!r} may not submit tasks; needs sysadmin or admin")
        fleet = await self.registry.list_servers()
        task = new_task(payload, new_task_id(), principal.name, now_ms(), fleet)
        await self.registry.add_task(task)
        log.info("task %s (%s) submitted by %s", task.id, task.name, principal.name)
        await self.announce("submitted", task)
        return task

    async def list(
        self, principal: Principal, states: list[str] | None = None, finished_since_ms: int | None = None
    ) -> list[TaskRecord]:
        """The tasks the caller may see, oldest first. With `finished_since_ms`, finished tasks
        last written before it are left out (unfinished ones never are): a read that stays the
        same size however long the fleet has been running."""
        owner = principal.name if principal.role == "sysadmin" else None
        if finished_since_ms is None:
            return await self.registry.list_tasks(owner=owner, states=states)
        wanted = TASK_STATES if states is None else states
        unfinished = [s for s in wanted if s not in FINISHED_TASK_STATES]
        finished = [s for s in wanted if s in FINISHED_TASK_STATES]
        tasks = await self.registry.list_tasks(owner=owner, states=unfinished) if unfinished else []
        if finished:
            tasks += await self.registry.list_tasks(owner=owner, states=finished, updated_since_ms=finished_since_ms)
        return sorted(tasks, key=lambda t: (t.created_at_ms, t.id))

    async def get(self, task_id: str, principal: Principal) -> TaskRecord:
        """One task; NotFound also when the caller may not see it."""
        task = await self.registry.get_task(task_id)
        if not can_see(principal, task):
            raise NotFound(f"no task with id {task_id!r}")
        return task

    async def cancel(self, task_id: str, principal: Principal) -> TaskRecord:
        """Cancel a task not finished yet (owner or admin); Conflict when it already finished."""
        if not principal.can_write:
            raise Forbidden(f"role {principal.role!r} may not cancel tasks; needs sysadmin or admin")
        for _ in range(_CAS_ATTEMPTS):
            task = await self.get(task_id, principal)
            if task.state in FINISHED_TASK_STATES:
                raise Conflict(f"task {task_id} is already {task.state}")
            at = now_ms()
            cancelled = replace(
                task,
                state="cancelled",
                reason=f"cancelled by {principal.name}",
                updated_at_ms=at,
                finished_at_ms=at,
                version=task.version + 1,
            )
            if await self.registry.update_task(cancelled, task.version):
                log.info("task %s cancelled by %s", task_id, principal.name)
                await self.announce("cancelled", cancelled)
                return cancelled
        raise Unavailable(f"task {task_id} kept changing; try the cancel again")
