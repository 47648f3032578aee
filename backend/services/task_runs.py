"""A task's run as its agent reports it: the event form and the transitions it may make.

Pure values (no I/O): `parse_run_event` checks a `POST /api/v1/tasks/{id}/events` body once, at
the boundary; `apply_run_event` says what the task becomes, None when the event was already
applied (an agent re-sending a report whose answer it lost), or raises `RunRefused` (HTTP 409)
when the transition is not allowed. Paused is not a task state: a paused task stays `running`
with no run in progress (`run_since_ms` None); `runs` keeps every interval it really ran.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from backend.ports import Conflict, TaskRecord
from backend.services.servers import FormRejected
from backend.services.timestamps import parse_rfc3339_ms
from tasker.domain import EARLIEST_TS_MS

RUN_EVENTS = ("running", "paused", "resumed", "done", "failed")
MAX_OUTPUT_TAIL = 4096
"""Characters of output kept per task (the last ones)."""
MAX_CLOCK_AHEAD_MS = 60_000
"""How far in the future an event's `at` may lie (an agent's clock running ahead)."""
_NOT_STARTED = frozenset({"queued", "planned", "unschedulable"})


class EventRejected(FormRejected):
    """A run event is invalid; `details` lists {"field", "reason"} for every bad field."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(details)
        self.args = (f"invalid task event: {', '.join(d['field'] for d in details)}",)


class RunRefused(Conflict):
    """The event does not fit the task as it stands (HTTP 409); the message says why."""


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One checked report of an agent about one task."""

    state: str
    at_ms: int
    agent_epoch: int
    exit_code: int | None = None
    output_tail: str = ""
    server_id: str | None = None


def parse_run_event(payload: Any, now_ms: int) -> RunEvent:
    """The event of a POST body; EventRejected naming every bad field."""
    if not isinstance(payload, dict):
        raise EventRejected([{"field": "body", "reason": "must be a JSON object"}])
    errors: list[dict[str, str]] = []
    known = {"state", "at", "agent_epoch", "exit_code", "output_tail", "server_id", "agent"}
    errors += [{"field": str(k)[:64], "reason": "is not an event field"} for k in payload if k not in known]
    state: Any = payload.get("state")
    if state not in RUN_EVENTS:
        errors.append({"field": "state", "reason": f"must be one of {', '.join(RUN_EVENTS)}"})
    at = payload.get("at", now_ms)
    try:
        if isinstance(at, str):
            at = parse_rfc3339_ms(at)
        elif type(at) is not int:
            raise ValueError("must be epoch milliseconds or an RFC 3339 timestamp")
        if at < EARLIEST_TS_MS:
            raise ValueError("is before 2000-01-01T00:00:00Z")
        if at > now_ms + MAX_CLOCK_AHEAD_MS:
            raise ValueError("is more than a minute in the future (is the agent's clock right?)")
    except ValueError as exc:
        errors.append({"field": "at", "reason": str(exc)})
    epoch: Any = payload.get("agent_epoch")
    if type(epoch) is not int or not 1 <= epoch <= 2**53:
        errors.append({"field": "agent_epoch", "reason": "must be the epoch of the agent lease (a whole number >= 1)"})
    code = payload.get("exit_code")
    if code is not None and (type(code) is not int or not -255 <= code <= 255):
        errors.append({"field": "exit_code", "reason": "must be an integer from -255 to 255 or null"})
    tail = payload.get("output_tail", "")
    if tail is None:
        tail = ""
    if not isinstance(tail, str) or len(tail) > 4 * MAX_OUTPUT_TAIL:
        errors.append({"field": "output_tail", "reason": f"must be text of at most {4 * MAX_OUTPUT_TAIL} characters"})
    server = payload.get("server_id")
    if server is not None and (not isinstance(server, str) or not 1 <= len(server) <= 64):
        errors.append({"field": "server_id", "reason": "must be a server id"})
    if errors:
        raise EventRejected(errors)
    return RunEvent(state, at, epoch, code, tail[-MAX_OUTPUT_TAIL:].replace("\x00", ""), server)


def _close_run(task: TaskRecord, at_ms: int) -> list[list[int]]:
    runs = [list(r) for r in task.runs]
    if task.run_since_ms is not None:
        runs.append([task.run_since_ms, max(task.run_since_ms, at_ms)])
    return runs


def ran_ms(task: TaskRecord, now_ms: int) -> int:
    """How long the task has really run so far (its closed runs and the one in progress)."""
    done = sum(b - a for a, b in task.runs)
    return done + (max(0, now_ms - task.run_since_ms) if task.run_since_ms is not None else 0)


def apply_run_event(task: TaskRecord, event: RunEvent, server_id: str) -> TaskRecord | None:
    """The task after `event` from the agent of `server_id` (version not yet bumped), None when
    the event changes nothing (already applied); RunRefused when the transition is invalid."""
    state, at = event.state, event.at_ms
    if task.state == "cancelled":
        raise RunRefused(f"task {task.id} was cancelled")
    here = task.server_id == server_id
    if state == "running":
        if task.state == "planned" and here:
            return replace(
                task,
                state="running",
                reason="",
                started_at_ms=task.started_at_ms or at,
                run_since_ms=at,
                agent_epoch=event.agent_epoch,
            )
        if task.state == "running" and here:
            if task.run_since_ms is None:
                raise RunRefused(f"task {task.id} is paused; report resumed to run it again")
            # An agent that restarted takes over the run under its new lease epoch.
            return None if task.agent_epoch == event.agent_epoch else replace(task, agent_epoch=event.agent_epoch)
        raise RunRefused(f"task {task.id} is {task.state}" + ("" if here else f" and not planned on {server_id}"))
    if state in ("paused", "resumed"):
        if task.state != "running" or not here:
            raise RunRefused(f"task {task.id} is not running on {server_id}")
        if state == "paused":
            if not task.interruptible:
                raise RunRefused(f"task {task.id} is not interruptible")
            if task.run_since_ms is None:
                return None
            return replace(task, runs=_close_run(task, at), run_since_ms=None, agent_epoch=event.agent_epoch)
        if task.run_since_ms is not None:
            return None
        return replace(task, run_since_ms=at, agent_epoch=event.agent_epoch)
    # done or failed
    if task.state in ("done", "failed"):
        if task.state == state and task.exit_code == event.exit_code:
            return None
        raise RunRefused(f"task {task.id} already ended {task.state}")
    finishing = task.state == "running" and here
    # A task queued again while its agent was away may still have finished there; and a start
    # that failed (no such program) ends a planned task failed without a run.
    late = task.state in _NOT_STARTED and (task.started_at_ms is not None or (state == "failed" and here))
    if not (finishing or late):
        raise RunRefused(f"task {task.id} is {task.state}" + ("" if here else " on another server"))
    reason = (
        ""
        if state == "done"
        else (f"exit code {event.exit_code}" if event.exit_code is not None else "the agent could not run it")
    )
    return replace(
        task,
        state=state,
        reason=reason,
        runs=_close_run(task, at),
        run_since_ms=None,
        finished_at_ms=at,
        exit_code=event.exit_code,
        output_tail=event.output_tail,
        agent_epoch=event.agent_epoch,
        server_id=task.server_id or server_id,
    )
