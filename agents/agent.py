"""The agent loop: heartbeat, then act on the plan, then report; until cancelled.

Every step starts with a heartbeat, which takes or renews the lease `agent:{server}`; a task is
started, paused or resumed only in a step whose heartbeat succeeded, and while the lease surely
still holds (counted from before the request). The lease's end is written to a file the
supervisors of running tasks watch, so a task stops by itself once its agent may have lost the
lease: the scheduler may then queue it elsewhere. Through a backend outage shorter than the
lease, running tasks go on and reports wait; a restarted agent adopts its tasks from the state
directory and reports them under its new lease epoch.

Between heartbeats the agent waits `poll_s`, or less when a piece starts or ends sooner; a
`plan` frame about its server on its websocket (agents/plan_watch.py) ends the wait at once.

Times: the plan's pieces are in the backend's clock; each heartbeat answer carries its `now_ms`,
and the agent acts at `time.time() + offset`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.plan_watch import PlanWatch
from agents.processes import TaskProcess
from tasker.client import ApiError, BackendUnavailable, Conflict, Forbidden, NotFoundError, TaskerClient, Unauthorized
from tasker.models import AgentTask, AgentWork, Interval, ModelError


class AgentRefused(Exception):
    """The backend refused the agent's first heartbeat: no such server, or a key not for it."""

    user_facing = True  # shown to the user as one line by the CLI


log = logging.getLogger("tasker.agent")

LEASE_MARGIN_S = 1.0
"""Safety margin under the lease's ttl for what the agent believes it holds."""


@dataclass(slots=True)
class AgentStats:
    """What a person watching the agent wants to know."""

    epoch: int | None = None
    started: int = 0
    ended: int = 0
    running: int = 0
    last_error: str = ""
    steps: int = 0
    transport: str = "polling"
    """How the agent hears of plan changes: its websocket, or polling only."""

    def line(self) -> str:
        """The agent's status line."""
        lease = f"lease epoch {self.epoch}" if self.epoch else "no lease"
        text = f"{lease}  running {self.running}  started {self.started}  ended {self.ended}  via {self.transport}"
        return text + (f"  last error: {self.last_error}" if self.last_error else "")


@dataclass(slots=True)
class _Report:
    task_id: str
    body: dict[str, Any]
    forget_after: bool = False


def _in(pieces: Sequence[Interval], now_ms: int) -> bool:
    return any(a <= now_ms < b for a, b in pieces)


def _next_boundary(pieces: Sequence[Interval], now_ms: int) -> int | None:
    edges = [t for p in pieces for t in p if t > now_ms]
    return min(edges) if edges else None


@dataclass
class Agent:
    """One server's agent. `run()` until cancelled; `step()` once (tests)."""

    client: TaskerClient
    server_id: str
    state_dir: Path
    agent_id: str = ""
    """The lease holder's name; by default this host's name, so an agent restarted here renews
    its predecessor's lease at once (and its tasks' watchdogs see the lease go on)."""
    kill_grace_s: float = 10.0
    """Between SIGTERM and SIGKILL when a task is cancelled."""
    websocket: bool = True
    """Keep a websocket open so plan changes wake the agent at once (polling only without)."""
    stats: AgentStats = field(default_factory=AgentStats)

    def __post_init__(self) -> None:
        self.agent_id = self.agent_id or socket.gethostname()[:120]
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.lease_file = self.state_dir / "lease"
        self.procs: dict[str, TaskProcess] = TaskProcess.adopt_all(self.state_dir)
        self.reports: deque[_Report] = deque()
        self.epoch: int | None = None
        self._valid_until = 0.0  # monotonic
        self._offset_ms = 0
        self._poll_s = 2.0
        self._stopping: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.watch = PlanWatch(self.client, self.server_id, self._wake) if self.websocket else None
        for proc in self.procs.values():
            if proc.ended() is None and not proc.meta.cancelled:
                self._report(proc.meta.task_id, "paused" if proc.meta.paused else "running", proc.meta.started_at_ms)

    # --- time and lease -----------------------------------------------------------------------

    def now_ms(self) -> int:
        """The backend's clock, as far as this agent knows it."""
        return int(time.time() * 1000) + self._offset_ms

    def holds_lease(self) -> bool:
        return self.epoch is not None and time.monotonic() < self._valid_until

    def _write_lease_file(self, until_wall_ms: int) -> None:
        tmp = self.lease_file.with_suffix(".tmp")
        tmp.write_text(str(until_wall_ms))
        os.replace(tmp, self.lease_file)

    # --- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        """Heartbeat and act until cancelled; stops reporting nothing and kills nothing on exit
        (tasks go on under their supervisors, for the next agent to adopt)."""
        watching = asyncio.create_task(self.watch.run(), name="agent websocket") if self.watch else None
        try:
            while True:
                self._wake.clear()  # before the heartbeat: a frame arriving during it wakes the next
                wait = await self.step()
                try:
                    await asyncio.wait_for(self._wake.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            for task in self._stopping.values():
                task.cancel()
            if watching is not None:
                watching.cancel()
                await asyncio.gather(watching, return_exceptions=True)  # closes the websocket

    async def step(self) -> float:
        """One heartbeat and what follows; returns how long to wait before the next."""
        self.stats.steps += 1
        answer = await self._heartbeat()
        if answer is not None:
            self._act(answer)
        self._collect_ends()
        await self._flush()
        self.stats.running = sum(1 for p in self.procs.values() if not p.meta.reported_end)
        self.stats.transport = self.watch.describe(self._poll_s) if self.watch else f"polling every {self._poll_s:g} s"
        wait = self._poll_s
        if answer is not None:
            now = self.now_ms()
            for task in answer.tasks:
                edge = _next_boundary(task.pieces, now)
                if edge is not None:
                    wait = min(wait, max(0.05, (edge - now) / 1000))
        return wait if self.procs or answer is not None else min(wait, 1.0)

    async def _heartbeat(self) -> AgentWork | None:
        sent, sent_wall = time.monotonic(), time.time()
        running = [tid for tid, p in self.procs.items() if not p.meta.reported_end and not p.meta.cancelled]
        try:
            answer = await self.client.agent_heartbeat(self.server_id, self.agent_id, running)
        except Conflict as exc:
            self._lost(f"another agent holds the lease: {exc.message}")
            return None
        except (BackendUnavailable, ApiError, ModelError) as exc:
            if self.epoch is None and isinstance(exc, (NotFoundError, Forbidden, Unauthorized)):
                # never let in: a wrong server or key, which no retry mends
                raise AgentRefused(f"server {self.server_id}: {exc.message}") from None
            self.stats.last_error = str(exc)
            if not self.holds_lease() and self.epoch is not None:
                self._lost("lease may have expired while the backend was away")
            return None
        lease = answer.lease
        ttl = lease.ttl_s
        if lease.epoch != self.epoch:
            log.info("agent lease of %s taken, epoch %d", self.server_id, lease.epoch)
            # Reports made under an older epoch go out again under this one.
            for report in self.reports:
                report.body["agent_epoch"] = lease.epoch
        self.epoch = lease.epoch
        self.stats.epoch = self.epoch
        self._valid_until = sent + ttl - LEASE_MARGIN_S
        self._write_lease_file(int((sent_wall + ttl - LEASE_MARGIN_S) * 1000))
        self._offset_ms = int(answer.now_ms - (sent_wall + time.time()) * 500)
        self._poll_s = answer.poll_s if answer.poll_s is not None else self._poll_s
        self.stats.last_error = ""
        return answer

    def _lost(self, why: str) -> None:
        if self.epoch is not None:
            log.warning("agent of %s: %s; starting nothing until it holds the lease again", self.server_id, why)
        self.epoch = None
        self.stats.epoch = None
        self.stats.last_error = why

    # --- acting on the plan -------------------------------------------------------------------

    def _act(self, answer: AgentWork) -> None:
        for task_id, reason in answer.cancel.items():
            self._stop(task_id, reason)
        now = self.now_ms()
        for task in answer.tasks:
            if not self.holds_lease():
                return
            proc = self.procs.get(task.id)
            inside = _in(task.pieces, now)
            if proc is None:
                if task.state == "planned" and inside:
                    self._start(task, now)
                continue
            if proc.meta.reported_end or proc.meta.cancelled or proc.ended() is not None:
                continue
            later = _next_boundary(task.pieces, now) is not None
            if not proc.meta.paused and not inside and later and task.interruptible:
                proc.pause()
                self._report(task.id, "paused", now)
            elif proc.meta.paused and inside:
                proc.resume()
                self._report(task.id, "resumed", now)

    def _start(self, task: AgentTask, now: int) -> None:
        if not task.command:
            self._report(task.id, "failed", now, output_tail="the task has no command to run")
            return
        try:
            proc = TaskProcess.start(
                self.state_dir,
                task.id,
                task.command,
                cwd=task.cwd,
                env=task.env,
                interruptible=task.interruptible,
                lease_file=self.lease_file,
                kill_grace_s=self.kill_grace_s,
                now_ms=now,
            )
        except OSError as exc:  # e.g. its cwd does not exist
            self._report(task.id, "failed", now, output_tail=f"tasker agent: cannot start: {exc.strerror or exc}")
            return
        self.procs[task.id] = proc
        self.stats.started += 1
        log.info("task %s started: %s", task.id, " ".join(task.command)[:200])
        self._report(task.id, "running", now)

    def _stop(self, task_id: str, reason: str) -> None:
        proc = self.procs.get(task_id)
        if proc is None or proc.meta.cancelled:
            return
        log.info("task %s stopped: %s", task_id, reason)
        proc.meta.cancelled = True
        proc.save()
        self.reports = deque(r for r in self.reports if r.task_id != task_id)
        self._stopping[task_id] = asyncio.create_task(self._terminate(proc), name=f"stop {task_id}")

    async def _terminate(self, proc: TaskProcess) -> None:
        """SIGTERM, then SIGKILL after the grace period if it is still there."""
        proc.terminate()
        deadline = time.monotonic() + self.kill_grace_s
        while proc.ended() is None:
            if time.monotonic() > deadline:
                proc.kill()
                deadline = float("inf")
            await asyncio.sleep(0.05)
        self._stopping.pop(proc.meta.task_id, None)

    def _collect_ends(self) -> None:
        for task_id, proc in list(self.procs.items()):
            if proc.meta.reported_end:
                continue
            ended = proc.ended()
            if ended is None:
                continue
            if proc.meta.cancelled:
                if task_id not in self._stopping:
                    proc.forget()
                    del self.procs[task_id]
                continue
            state = "done" if ended.exit_code == 0 else "failed"
            tail = proc.tail() + (f"\n[tasker agent: {ended.why}]" if ended.why else "")
            proc.meta.reported_end = True
            proc.save()
            self.stats.ended += 1
            self._report(
                task_id,
                state,
                ended.ended_at_ms + self._offset_ms,
                exit_code=ended.exit_code,
                output_tail=tail[-4096:],
                forget_after=True,
            )

    # --- reporting ----------------------------------------------------------------------------

    def _report(
        self,
        task_id: str,
        state: str,
        at_ms: int,
        *,
        exit_code: int | None = None,
        output_tail: str = "",
        forget_after: bool = False,
    ) -> None:
        body: dict[str, Any] = {
            "state": state,
            "at": at_ms,
            "agent_epoch": self.epoch or 0,
            "server_id": self.server_id,
        }
        if state in ("done", "failed"):
            body.update(exit_code=exit_code, output_tail=output_tail)
        self.reports.append(_Report(task_id, body, forget_after))

    async def _flush(self) -> None:
        """Send the reports in order; keep them through an outage; drop the refused ones."""
        while self.reports and self.epoch is not None:
            report = self.reports[0]
            report.body["agent_epoch"] = self.epoch
            try:
                await self.client.task_event(report.task_id, report.body)
            except Conflict as exc:
                # Stale or moved on (cancelled, queued again): the next heartbeat says what to stop.
                log.warning("task %s: %s refused: %s", report.task_id, report.body["state"], exc.message)
            except (BackendUnavailable, ApiError) as exc:
                if isinstance(exc, BackendUnavailable) or exc.status >= 500:
                    self.stats.last_error = exc.message
                    return
                log.warning("task %s: %s refused: %s", report.task_id, report.body["state"], exc.message)
            self.reports.popleft()
            if report.forget_after and report.task_id in self.procs:
                self.procs.pop(report.task_id).forget()
