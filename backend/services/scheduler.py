"""The scheduler: exactly one process plans at a time, by a lease in the registry.

Every backend process running the `scheduler` role tries to take the lease `scheduler`
(ttl 15 s, renewed every 5 s), so when the holder dies another takes over within about 20 s.
The holder plans on every task submission or cancellation and server change (events on the
broker), when the set of live servers changes (one without readings for 2 minutes is stale),
and every few minutes as forecasts move. The tasks of the last days tell which clean cores to
keep free for the tasks expected to come (`task_forecast`). Each plan write is
a compare-and-set on the task's version carrying the lease epoch (`Registry.update_task`): a
task is one record, so it is never planned twice, and a holder that lost its lease cannot
overwrite a newer holder's plan.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from backend.allocation.model import DEFAULT_HORIZON_S, DEFAULT_SLOT_S, Plan
from backend.ports import Broker, Registry, TaskRecord, TimeSeriesStore, Unavailable
from backend.services.agent_silence import requeue_silent
from backend.services.grid_traces import load_intensity
from backend.services.plan_round import STALE_MS, build_round, live_servers, make_plan, planned_records
from backend.services.task_forecast import DAY_MS, HISTORY_DAYS
from backend.services.tasks import task_json
from backend.services.timestamps import now_ms
from backend.services.wire import PLAN_CHANNEL, REGISTRY_CHANNEL

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
ARCHIVE_AFTER_MS = 6 * 3_600_000
"""Finished tasks last written this long ago are archived (`Registry.archive_tasks`): the
rounds, the agents and the task meter (which looks back less far) read no further back."""
ARCHIVE_PAUSE_S = 1.0
"""Pause between two archive calls of a backlog, leaving the registry to the others."""
ARCHIVE_FIRST_S = 60.0
"""The first archive after start (or while waiting for the lease), once the first rounds are done."""


@dataclass(frozen=True, slots=True)
class SchedulerSettings:
    """How the scheduler paces itself (defaults: DESIGN.md and issue 12)."""

    lease_ttl_s: float = 15.0
    """How long a lease holds without renewal: the takeover time after a crash, plus renew_s."""
    renew_s: float = 5.0
    """How often the holder renews (and others try to take over)."""
    replan_s: float = 180.0
    """A full round this often even without events, as forecasts move."""
    check_s: float = 20.0
    """How often the holder looks for servers gone stale (or back)."""
    debounce_s: float = 0.2
    """Events arriving this close together make one round."""
    time_budget_s: float = 1.0
    """The allocator's search budget per round."""
    stale_ms: int = STALE_MS
    slot_s: int = DEFAULT_SLOT_S
    """Planning resolution (tests use seconds)."""
    horizon_s: int = DEFAULT_HORIZON_S
    """How far ahead tasks are planned."""
    agent_grace_s: float = 15.0
    """A running task is queued again once its server's agent lease has been expired this long
    (the agent's task watchdog stops the task when its lease may have expired, before that)."""
    freeze_grace_s: float = 60.0
    """A planned task whose start passed this long ago unstarted moves again (see plan_round.frozen)."""
    measure_every_s: float = 5.0
    """How often ended tasks are looked for to measure their CO2 (`TaskMeter`)."""
    measure_settle_s: float = 5.0
    """How long after a task ended its readings are waited for before measuring."""
    history_every_s: float = 3600.0
    """How often the tasks of the last days are read again for the forecast (the open ones are
    read every round anyway)."""
    archive_every_s: float = 3600.0
    """How often the lease holder archives finished tasks (`Registry.archive_tasks`), beside the
    rounds: a backlog takes MongoDB seconds a call, which no round should wait for."""


def _overdue(tasks: list[TaskRecord], now: int, grace_ms: int) -> bool:
    """A planned task whose start passed `grace_ms` ago unstarted: the round must move it."""
    return any(t.state == "planned" and t.pieces and t.pieces[0][0] < now - grace_ms for t in tasks)


class Scheduler:
    """The scheduler role's service: the lease loop and the planning loop of one process."""

    def __init__(
        self,
        registry: Registry,
        broker: Broker,
        timeseries: TimeSeriesStore | None,
        settings: SchedulerSettings | None = None,
    ) -> None:
        self.registry = registry
        self.broker = broker
        self.timeseries = timeseries
        self.settings = settings or SchedulerSettings()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.epoch: int | None = None
        self._valid_until = 0.0  # monotonic time our lease surely still holds
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._previous: Plan | None = None
        self._live: frozenset[str] | None = None
        self._history: dict[str, TaskRecord] = {}
        self._history_read: float | None = None
        self.rounds = 0

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for task and server events, then run the lease and planning loops."""
        await self.broker.subscribe_events(PLAN_CHANNEL, self._on_plan_event)
        await self.broker.subscribe_events(REGISTRY_CHANNEL, self._on_registry_event)
        self._tasks = [
            asyncio.create_task(self._lease_loop(), name="scheduler lease"),
            asyncio.create_task(self._plan_loop(), name="scheduler planning"),
            asyncio.create_task(self._archive_loop(), name="scheduler archive"),
        ]

    async def close(self) -> None:
        """Stop both loops and hand the lease over at once."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.epoch is not None:
            try:
                await self.registry.release_lease(LEASE_NAME, self.holder, self.epoch)
            except Unavailable as exc:
                log.warning("scheduler lease not released (it expires by itself): %s", exc)
            self.epoch = None

    # --- events -------------------------------------------------------------------------------

    async def _on_plan_event(self, body: bytes) -> None:
        try:
            event = json.loads(body).get("event")
        except (ValueError, AttributeError):
            return
        if event in ("submitted", "cancelled", "done", "failed"):  # a finish frees cores early
            self._wake.set()

    async def _on_registry_event(self, body: bytes) -> None:
        self._wake.set()  # a server added, edited or removed

    # --- the lease ----------------------------------------------------------------------------

    def holds_lease(self) -> bool:
        """True while this process holds the lease and it cannot have expired yet."""
        return self.epoch is not None and time.monotonic() < self._valid_until

    async def _lease_loop(self) -> None:
        ttl_ms = int(self.settings.lease_ttl_s * 1000)
        while True:
            asked = time.monotonic()
            try:
                epoch = await self.registry.acquire_lease(LEASE_NAME, self.holder, now_ms(), ttl_ms)
            except Unavailable as exc:
                log.warning("scheduler lease: registry unavailable: %s", exc)
                epoch = self.epoch if self.holds_lease() else None
            else:
                # Counted from before the request: the registry's expiry is at least this late.
                self._valid_until = asked + self.settings.lease_ttl_s if epoch is not None else 0.0
            if epoch != self.epoch:
                if epoch is None:
                    log.warning("scheduler lease lost (epoch %s)", self.epoch)
                else:
                    log.info("scheduler lease taken by %s, epoch %d", self.holder, epoch)
                    self._previous = None
                    self._wake.set()  # a new holder plans at once
                self.epoch = epoch
            await asyncio.sleep(self.settings.renew_s)

    # --- planning -----------------------------------------------------------------------------

    async def _plan_loop(self) -> None:
        last_full = 0.0
        while True:
            timeout = self.settings.check_s
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
                await asyncio.sleep(self.settings.debounce_s)  # one round for a burst
            except TimeoutError:
                pass
            woken = self._wake.is_set()
            self._wake.clear()
            if not self.holds_lease():
                continue
            due = time.monotonic() - last_full >= self.settings.replan_s
            try:
                if await self.plan_once(force=woken or due, full=due) and due:
                    last_full = time.monotonic()
            except Unavailable as exc:
                log.warning("planning round skipped: %s", exc)
                await asyncio.sleep(1.0)
                self._wake.set()
            except Exception:  # noqa: BLE001 - a bad round must not stop the scheduler
                log.exception("planning round failed; trying again")
                await asyncio.sleep(1.0)
                self._wake.set()

    async def _live_servers(self, now: int) -> list[Any]:
        servers = await self.registry.list_servers()
        latest = None
        if self.timeseries is not None and servers:
            try:
                latest = await self.timeseries.latest([s.id for s in servers])
            except Unavailable as exc:
                log.warning("time-series store unavailable; not judging servers stale: %s", exc)
        return live_servers(servers, latest, now, self.settings.stale_ms)

    async def plan_once(self, force: bool = True, full: bool = False) -> bool:
        """One round if this process holds the lease (and, unless `force`, only when the set of
        live servers changed); `full` searches from the last plan for the whole budget rather than
        only inserting what is new. True when a round ran."""
        epoch = self.epoch
        if epoch is None or not self.holds_lease():
            return False
        now = now_ms()
        settings = self.settings
        servers = await self._live_servers(now)
        live = frozenset(s.id for s in servers)
        tasks = await self.registry.list_tasks(states=["queued", "planned", "unschedulable", "running"])
        requeued = await requeue_silent(
            self.registry, tasks, now, epoch, int(settings.agent_grace_s * 1000), self.holds_lease
        )
        if requeued:
            await self._announce_tasks(epoch, requeued, "requeued")
            tasks = await self.registry.list_tasks(states=["queued", "planned", "unschedulable", "running"])
        elif not force and live == self._live and not _overdue(tasks, now, int(settings.freeze_grace_s * 1000)):
            return False
        round_ = build_round(
            tasks,
            servers,
            now,
            settings.slot_s,
            settings.horizon_s,
            int(settings.freeze_grace_s * 1000),
            history=await self._history_with(tasks, now),
        )
        intensity = await load_intensity(self.registry)
        # Events get the fast path (the last plan kept, the new tasks inserted, repaired nearby);
        # the periodic round, and one after the live servers changed, searches on from the last
        # plan for its whole budget. Plans made afresh each round would each commit their next
        # slot from a different plan (see BENCHMARKS.md, allocation).
        round_, plan = await asyncio.to_thread(
            make_plan,
            round_,
            intensity,
            time_budget_s=self.settings.time_budget_s,
            previous=self._previous,
            refine=full or live != self._live,
        )
        written = await self._write(planned_records(round_, plan, epoch, now), epoch)
        self._previous, self._live = plan, live
        self.rounds += 1
        log.info(
            "plan round %d (epoch %d, %s): %d tasks, %d servers live, %d written in %.0f ms",
            self.rounds,
            epoch,
            plan.solver,
            len(round_.problem.tasks),
            len(servers),
            len(written),
            plan.solve_s * 1000,
        )
        if written:
            await self._announce(epoch, plan, written)
        return True

    async def _archive_loop(self) -> None:
        # soon after start, or after the lease is taken over: a backlog after an upgrade goes soon
        soon = min(ARCHIVE_FIRST_S, self.settings.archive_every_s)
        delay = soon
        while True:
            await asyncio.sleep(delay)
            if not self.holds_lease():
                delay = soon
                continue
            delay = self.settings.archive_every_s
            try:
                await self.archive_once()
            except Unavailable as exc:
                log.warning("archiving finished tasks skipped: %s", exc)
            except Exception:  # noqa: BLE001 - archiving must not stop the scheduler
                log.exception("archiving finished tasks failed; trying again in %.0f s", self.settings.archive_every_s)

    async def archive_once(self) -> int:
        """Archive what finished over ARCHIVE_AFTER_MS ago, call after call (each takes a batch)
        until none is left, while this process holds the lease; how many were archived."""
        total = 0
        while self.holds_lease():
            archived = await self.registry.archive_tasks(now_ms() - ARCHIVE_AFTER_MS)
            if not archived:
                break
            total += archived
            await asyncio.sleep(ARCHIVE_PAUSE_S)
        if total:
            log.info("archived %d tasks finished over %d h ago", total, ARCHIVE_AFTER_MS // 3_600_000)
        return total

    async def _history_with(self, open_tasks: list[TaskRecord], now: int) -> list[TaskRecord]:
        """The tasks of the last days (read again every `history_every_s`), with every task a
        round has seen open since: one submitted and finished between two reads still counts
        (a first day's forecast repeats the last hours)."""
        if self._history_read is None or time.monotonic() - self._history_read >= self.settings.history_every_s:
            since = now - HISTORY_DAYS * DAY_MS
            # A task of those days was written since: submitted, planned, run or cancelled then.
            recent = await self.registry.list_tasks(updated_since_ms=since)
            self._history = {t.id: t for t in recent if t.earliest_start_ms >= since}
            self._history_read = time.monotonic()
        self._history.update((t.id, t) for t in open_tasks)
        return list(self._history.values())

    async def _write(self, records: list[TaskRecord], epoch: int) -> list[TaskRecord]:
        """Write each changed record while the lease holds; a lost race (a cancel meanwhile)
        leaves that task to the next round, which is asked for at once."""
        written: list[TaskRecord] = []
        for record in records:
            if not self.holds_lease() or self.epoch != epoch:
                log.warning("lease lost mid-round; %d plan writes left to the next holder", len(records) - len(written))
                break
            if await self.registry.update_task(record, record.version - 1):
                written.append(record)
            else:
                self._wake.set()
        return written

    async def _announce_tasks(self, epoch: int, tasks: list[TaskRecord], event: str) -> None:
        body = {"event": event, "epoch": epoch, "tasks": [task_json(t) for t in tasks]}
        try:
            await self.broker.publish_event(PLAN_CHANNEL, json.dumps(body, separators=(",", ":")).encode())
        except Unavailable as exc:
            log.warning("%s tasks not broadcast (clients re-read the plan): %s", event, exc)

    async def _announce(self, epoch: int, plan: Plan, written: list[TaskRecord]) -> None:
        body = {
            "event": "replanned",
            "epoch": epoch,
            "made_at_ms": plan.made_at_ms,
            "solver": plan.solver,
            "tasks": [task_json(t) for t in written],
        }
        try:
            await self.broker.publish_event(PLAN_CHANNEL, json.dumps(body, separators=(",", ":")).encode())
        except Unavailable as exc:
            log.warning("plan change not broadcast (clients re-read the plan): %s", exc)
