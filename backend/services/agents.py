"""The agent protocol's backend half: heartbeats hand out the agent lease and the work of a
server, run events move its tasks (docs/agents.md).

One agent per server at a time: the heartbeat takes or renews the registry lease
`agent:{server_id}`; every run event carries the lease epoch it was made under and is refused
(409) unless that is the lease's current epoch, so an agent that lost its lease to another
cannot move a task any more. Who may act as a server's agent: an ingest key scoped to that
server, the admin, or the sysadmin who owns the server (the emulator acts for the fleet with
such a session).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, replace
from typing import Any

from backend.ports import Conflict, LeaseRecord, Registry, ServerRecord, TaskRecord, Unavailable
from backend.services.auth import INGEST_ROLE, Principal
from backend.services.errors import Forbidden, InvalidField
from backend.services.servers import owner_of
from backend.services.task_runs import RunRefused, apply_run_event, parse_run_event
from backend.services.tasks import TaskService
from backend.services.timestamps import format_rfc3339, now_ms

log = logging.getLogger(__name__)

_AGENT_ID = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
MAX_REPORTED = 1000
_CAS_ATTEMPTS = 20


def agent_lease_name(server_id: str) -> str:
    """The registry lease one agent of `server_id` holds at a time."""
    return f"agent:{server_id}"


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """How agents are paced (sent to them in every heartbeat answer)."""

    lease_ttl_s: float = 30.0
    """How long an agent lease holds without a heartbeat; the scheduler queues the tasks of a
    server whose agent stayed silent past it (and `SchedulerSettings.agent_grace_s`) again."""
    poll_s: float = 2.0
    """How often an agent heartbeats when nothing is due sooner."""
    lookahead_s: float = 600.0
    """Tasks whose next piece starts within this are handed to the agent."""


def lease_json(lease: LeaseRecord, ttl_s: float) -> dict[str, Any]:
    return {
        "name": lease.name,
        "holder": lease.holder,
        "epoch": lease.epoch,
        "expires_at": format_rfc3339(lease.expires_at_ms),
        "expires_at_ms": lease.expires_at_ms,
        "ttl_s": ttl_s,
    }


def assignment_json(task: TaskRecord) -> dict[str, Any]:
    """A task as its agent needs it: what to run, where, and when (times in epoch ms)."""
    return {
        "id": task.id,
        "name": task.name,
        "state": task.state,
        "command": task.command,
        "cwd": task.cwd,
        "env": dict(task.env),
        "cores": task.cores,
        "interruptible": task.interruptible,
        "pieces": [list(p) for p in task.pieces],
        "paused": task.state == "running" and task.run_since_ms is None,
        "version": task.version,
    }


def _reported(payload: Any) -> tuple[str, list[str]]:
    if not isinstance(payload, dict):
        raise InvalidField("body", 'must be a JSON object {"agent", "running"}')
    agent = payload.get("agent")
    if not isinstance(agent, str) or not _AGENT_ID.fullmatch(agent):
        raise InvalidField("agent", "must be the agent's instance id: 1-128 of A-Z a-z 0-9 . _ : @ -")
    running = payload.get("running", [])
    if not isinstance(running, list) or len(running) > MAX_REPORTED:
        raise InvalidField("running", f"must be a list of at most {MAX_REPORTED} tasks")
    ids = []
    for item in running:
        task_id = item.get("task_id") if isinstance(item, dict) else item
        if not isinstance(task_id, str) or len(task_id) > 64:
            raise InvalidField("running", 'items must be task ids or {"task_id": ...}')
        ids.append(task_id)
    return agent, ids


class AgentService:
    """Heartbeats and run events for the api role."""

    def __init__(self, registry: Registry, tasks: TaskService, settings: AgentSettings | None = None) -> None:
        self.registry = registry
        self.tasks = tasks
        self.settings = settings or AgentSettings()

    async def authorize(self, principal: Principal, server_id: str) -> ServerRecord:
        """The server, if `principal` may act as its agent; Forbidden or NotFound otherwise."""
        if principal.role == INGEST_ROLE:
            if principal.server_id != server_id:
                raise Forbidden(
                    f"only an ingest key scoped to server {server_id!r} may act as its agent "
                    f"(tasker keys create --server {server_id})"
                )
            return await self.registry.get_server(server_id)
        if not principal.can_write:
            raise Forbidden(f"role {principal.role!r} may not act as an agent")
        server = await self.registry.get_server(server_id)
        if principal.role != "admin" and owner_of(server) != principal.name:
            raise Forbidden(
                f"server {server_id!r} belongs to {owner_of(server)}; only they or an admin may act as its agent"
            )
        return server

    async def heartbeat(self, server_id: str, payload: Any, principal: Principal) -> dict[str, Any]:
        """Take or renew the server's agent lease; answer with it, the tasks to run and the ones
        to stop. Conflict (409) while another agent holds the lease."""
        await self.authorize(principal, server_id)
        agent, reported = _reported(payload)
        now = now_ms()
        ttl_ms = int(self.settings.lease_ttl_s * 1000)
        name = agent_lease_name(server_id)
        epoch = await self.registry.acquire_lease(name, agent, now, ttl_ms)
        if epoch is None:
            lease = await self.registry.get_lease(name)
            holder = "another agent" if lease is None else f"agent {lease.holder!r}"
            until = "" if lease is None else f" until {format_rfc3339(lease.expires_at_ms)}"
            raise Conflict(f"server {server_id} already has an agent: {holder} holds its lease{until}")
        lease = LeaseRecord(name, agent, epoch, now + ttl_ms)
        mine = [t for t in await self.registry.list_tasks(states=["planned", "running"]) if t.server_id == server_id]
        horizon = now + int(self.settings.lookahead_s * 1000)
        due = [t for t in mine if t.state == "running" or any(b > now and a < horizon for a, b in t.pieces)]
        keep = {t.id for t in mine}
        cancel = []
        for task_id in dict.fromkeys(reported):
            if task_id not in keep:
                cancel.append({"task_id": task_id, "reason": await self._why_stop(task_id)})
        return {
            "server_id": server_id,
            "now_ms": now,
            "lease": lease_json(lease, self.settings.lease_ttl_s),
            "poll_s": self.settings.poll_s,
            "tasks": [assignment_json(t) for t in due],
            "cancel": cancel,
        }

    async def _why_stop(self, task_id: str) -> str:
        try:
            task = await self.registry.get_task(task_id)
        except Exception:  # noqa: BLE001 - unknown or unreadable: stop it either way
            return "unknown task"
        if task.state == "cancelled":
            return task.reason or "cancelled"
        if task.state in ("queued", "planned", "unschedulable"):
            return "queued again while its agent was away" if task.server_id is None else "moved to another server"
        return f"task is {task.state}"

    async def report(self, task_id: str, payload: Any, principal: Principal) -> TaskRecord:
        """Apply one run event; RunRefused (409) when stale or invalid, as the task stands."""
        now = now_ms()
        event = parse_run_event(payload, now)
        for _ in range(_CAS_ATTEMPTS):
            task = await self.registry.get_task(task_id)
            server_id = event.server_id or task.server_id
            if server_id is None:
                raise InvalidField("server_id", "is required for a task that is not placed on a server")
            await self.authorize(principal, server_id)
            lease = await self.registry.get_lease(agent_lease_name(server_id))
            if lease is None or lease.epoch != event.agent_epoch:
                current = "none" if lease is None else str(lease.epoch)
                raise RunRefused(
                    f"stale agent epoch {event.agent_epoch}: the agent lease of server "
                    f"{server_id} is at epoch {current}"
                )
            changed = apply_run_event(task, event, server_id)
            if changed is None:
                return task
            changed = replace(changed, updated_at_ms=now, version=task.version + 1)
            if await self.registry.update_task(changed, task.version):
                log.info("task %s: %s on %s (agent epoch %d)", task_id, event.state, server_id, event.agent_epoch)
                await self.tasks.announce(event.state, changed)
                return changed
        raise Unavailable(f"task {task_id} kept changing; report the event again")
