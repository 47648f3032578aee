"""The emulator as the agent of every emulated server (docs/agents.md).

Every `poll_s` it lists the planned and running tasks, heartbeats for each emulated server that
has some (taking that server's agent lease, as `tasker agent` would), and then plays them: a
task keeps `cores` of its server busy during its pieces (`cores_at`, read by the emulator on
every tick, so the power and CO2 readings show the plan being carried out), and its run events
are reported at its pieces' boundaries: running, paused and resumed between the pieces of an
interruptible task, done (or, with `fail_rate`, failed with exit code 1) at the end of its last.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sensors.model import ServerSpec
from tasker.client import ApiError, BackendUnavailable, Conflict, TaskerClient
from tasker.models import AgentTask, Interval

log = logging.getLogger("tasker.sensors")


@dataclass(slots=True)
class AgentPlayStats:
    """What the emulated agents did, for the progress line."""

    tasks: int = 0
    started: int = 0
    ended: int = 0
    last_error: str = ""

    def line(self) -> str:
        text = f"tasks {self.tasks} (started {self.started}, ended {self.ended})"
        return text + (f"  agent error: {self.last_error}" if self.last_error else "")


@dataclass(frozen=True, slots=True)
class Assignment:
    """A task an emulated server's agent plays, and that server."""

    server_id: str
    task: AgentTask


def _desired(pieces: Sequence[Interval], now_ms: int) -> tuple[str, int]:
    """What a task should be doing at `now_ms` by its pieces, and since when."""
    if not pieces or now_ms < pieces[0][0]:
        return "waiting", 0
    if now_ms >= pieces[-1][1]:
        return "ended", pieces[-1][1]
    for a, b in pieces:
        if a <= now_ms < b:
            return "running", a
    return "paused", max(b for _, b in pieces if b <= now_ms)


class EmulatedAgents:
    """Heartbeats and run events for the emulated fleet; `cores_at` for the model."""

    def __init__(
        self,
        client: TaskerClient,
        *,
        poll_s: float = 1.0,
        fail_rate: float = 0.0,
        seed: int | str = 0,
        agent_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0.0 <= fail_rate <= 1.0:
            raise ValueError("the fail rate must be between 0 and 1")
        self.client = client
        self.poll_s = poll_s
        self.fail_rate = fail_rate
        self.agent_id = agent_id or f"emulator@{socket.gethostname()}"[:120]
        self.stats = AgentPlayStats()
        self._rng = random.Random(f"{seed}:agents")
        self._clock = clock
        self._epochs: dict[str, int] = {}
        self._tasks: dict[str, Assignment] = {}  # by task id
        self._reported: dict[str, str] = {}  # task id -> running | paused | ended
        self._disabled = False

    def cores_at(self, server_id: str, ts_ms: int) -> int:
        """Cores emulated tasks keep busy on `server_id` at `ts_ms`."""
        return sum(
            a.task.cores
            for a in self._tasks.values()
            if a.server_id == server_id
            and self._reported.get(a.task.id) != "ended"
            and any(start <= ts_ms < end for start, end in a.task.pieces)
        )

    async def run(self, specs: Callable[[], Mapping[str, ServerSpec]]) -> None:
        """Play the agents of the servers `specs()` names, until cancelled."""
        while not self._disabled:
            try:
                await self.step(specs())
            except (BackendUnavailable, ApiError) as exc:
                self.stats.last_error = exc.message
            await asyncio.sleep(self.poll_s)

    async def step(self, specs: Mapping[str, ServerSpec]) -> None:
        """One round: heartbeats for the servers with tasks, then the events that are due."""
        try:
            listed = await self.client.read_tasks(["planned", "running"])
        except ApiError as exc:
            if exc.status in (401, 403):
                log.warning("emulated agents off: the credentials cannot list tasks (%s)", exc.message)
                self._disabled = True
                return
            raise
        servers = {t.plan.server_id for t in listed if t.plan is not None and t.plan.server_id in specs}
        servers |= {a.server_id for a in self._tasks.values()}
        for server_id in sorted(servers):
            await self._heartbeat(server_id)
        now = int(self._clock() * 1000)
        for assignment in list(self._tasks.values()):
            await self._play(assignment, now)
        self.stats.tasks = sum(1 for t in self._tasks if self._reported.get(t) != "ended")

    async def _heartbeat(self, server_id: str) -> None:
        mine = [tid for tid, a in self._tasks.items() if a.server_id == server_id]
        try:
            answer = await self.client.agent_heartbeat(server_id, self.agent_id, mine)
        except Conflict:
            self._epochs.pop(server_id, None)  # a real agent runs this server
            for tid in mine:
                self._tasks.pop(tid, None)
            return
        self._epochs[server_id] = answer.lease.epoch
        for task_id in answer.cancel:
            self._tasks.pop(task_id, None)
        for task in answer.tasks:
            self._tasks[task.id] = Assignment(server_id, task)

    async def _play(self, assignment: Assignment, now: int) -> None:
        task = assignment.task
        tid = task.id
        reported = self._reported.get(tid, "waiting")
        desired, since = _desired(task.pieces, now)
        if reported == "ended" or desired == "waiting" or desired == reported:
            if reported == "ended":
                self._tasks.pop(tid, None)
            return
        if reported == "waiting" and task.state == "planned":
            if not await self._send(assignment, "running", task.pieces[0][0]):
                return
            self.stats.started += 1
            reported = "running"
        if desired == "ended":
            failed = self._rng.random() < self.fail_rate
            extra = {
                "exit_code": 1 if failed else 0,
                "output_tail": "emulated failure\n" if failed else "emulated run\n",
            }
            if await self._send(assignment, "failed" if failed else "done", since, **extra):
                self.stats.ended += 1
            self._reported[tid] = "ended"
            return
        if desired == "paused" and reported == "running" and task.interruptible:
            await self._send(assignment, "paused", since)
        elif desired == "running" and reported == "paused":
            await self._send(assignment, "resumed", since)

    async def _send(self, assignment: Assignment, state: str, at_ms: int, **extra: Any) -> bool:
        epoch = self._epochs.get(assignment.server_id)
        if epoch is None:
            return False
        task_id = assignment.task.id
        body = {"state": state, "at": at_ms, "agent_epoch": epoch, "server_id": assignment.server_id, **extra}
        try:
            await self.client.task_event(task_id, body)
        except Conflict as exc:
            log.info("emulated agent: task %s %s refused: %s", task_id, state, exc.message)
            self._reported[task_id] = "ended"
            return False
        self._reported[task_id] = "running" if state == "resumed" else state
        return True
