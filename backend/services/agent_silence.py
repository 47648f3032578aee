"""Tasks of a server whose agent went silent are queued again, by the scheduler.

A running task needs its server's agent to hold the lease `agent:{server_id}`. Once that lease
has been expired for `grace_ms` (the agent died, or lost the backend, long enough for its task
watchdog to stop the task), the task goes back to `queued` under the scheduler's lease epoch, and
the round that follows plans it afresh, maybe elsewhere. Its runs so far are kept as history; it
restarts from the beginning (a process's state cannot move between servers). An agent that
comes back learns it from its heartbeat (the task is in `cancel`) and stops it if still running.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from backend.ports import LeaseRecord, Registry, TaskRecord
from backend.services.agents import agent_lease_name
from backend.services.plan_round import unplanned
from backend.services.timestamps import format_rfc3339

log = logging.getLogger(__name__)


def silent_since(lease: LeaseRecord | None, now_ms: int, grace_ms: int) -> int | None:
    """When the agent went silent (its lease's expiry), if that was over `grace_ms` ago."""
    if lease is None:
        return 0  # a task marked running with no agent ever: nobody runs it
    return lease.expires_at_ms if lease.expires_at_ms + grace_ms <= now_ms else None


def requeued_record(task: TaskRecord, since_ms: int, epoch: int, now_ms: int) -> TaskRecord:
    """The task back in the queue, its open run closed at the agent's silence."""
    runs = [list(r) for r in task.runs]
    if task.run_since_ms is not None:
        runs.append([task.run_since_ms, max(task.run_since_ms, min(since_ms or now_ms, now_ms))])
    when = format_rfc3339(since_ms) if since_ms else "ever"
    return unplanned(
        task,
        state="queued",
        reason=f"the agent of {task.server_id} has been silent since {when}; queued again",
        runs=runs,
        run_since_ms=None,
        plan_epoch=epoch,
        updated_at_ms=now_ms,
        version=task.version + 1,
    )


async def requeue_silent(
    registry: Registry,
    tasks: Iterable[TaskRecord],
    now_ms: int,
    epoch: int,
    grace_ms: int,
    still_leader: Callable[[], bool],
) -> list[TaskRecord]:
    """Queue again every running task whose agent is silent; returns the records written."""
    leases: dict[str, LeaseRecord | None] = {}
    written = []
    for task in tasks:
        if task.state != "running" or task.server_id is None:
            continue
        if task.server_id not in leases:
            leases[task.server_id] = await registry.get_lease(agent_lease_name(task.server_id))
        since = silent_since(leases[task.server_id], now_ms, grace_ms)
        if since is None or not still_leader():
            continue
        record = requeued_record(task, since, epoch, now_ms)
        if await registry.update_task(record, task.version):
            log.warning("task %s queued again: %s", task.id, record.reason)
            written.append(record)
    return written
