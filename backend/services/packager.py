"""The packager: broker work queues -> time-series store, acking only what is stored.

For each metric queue it consumes with a prefetch bound. A message is decoded (a malformed one
raises Undecodable, so the broker dead-letters and counts it), written as an idempotent upsert,
and only then acknowledged. While the store is down the write is retried with capped
exponential backoff and the message stays unacked, so an outage pauses the packager and a crash
leaves the message to be redelivered. Once stored, the same bytes go out on the live channel.

Group commit: the messages in hand (up to the prefetch of every queue) are not written one by
one. `GroupCommit` puts the readings of every message that arrives while the store is busy into
one write, and each message is acked only once the write that holds it succeeded. At light load
a message is written alone, at once (no added latency); under load writes grow to many
thousand readings with many readings per series, which is what makes the store fast (one
rollup recomputation per touched bucket per write, few large requests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from backend.ports import Broker, Delivery, TimeSeriesStore, Undecodable
from backend.services.telemetry import Telemetry
from backend.services.timestamps import now_ms
from backend.services.wire import LIVE_CHANNEL, decode_readings, queue_for
from tasker.domain import METRICS, Reading

log = logging.getLogger(__name__)

DEFAULT_PREFETCH = 512
"""Unacked messages per metric queue. While a write is in flight the next group fills from these,
so they must hold more than a group: at 250 readings per message (a 500-reading POST over two
metrics) 2 x 512 messages are 256,000 readings. Messages wait as bytes (about 20 bytes per reading)
until `GroupCommit.room` lets them be decoded."""
GROUP_MAX_READINGS = 100_000
"""A group stops taking messages at this many readings; the next message opens a new group. The
store's cost per reading falls as a write holds more readings of each series (Cassandra, 1,000
series: 16 us of its CPU per reading at 50,000 per write, 13 at 100,000, 12 at 200,000); end to end
over RabbitMQ + Cassandra 100,000 stored about 45% more per second than 50,000, and 200,000 no
more than 100,000 while holding twice the memory (about 130 bytes per decoded reading)."""
GROUP_WRITES_IN_FLIGHT = 1
"""Group writes at once. One: while it runs the next group gathers everything that arrives, so
under load each write is as large as it can be, which costs the store least per reading (with
two, groups were half as large, and end-to-end ingest over Cassandra no faster)."""
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
LIVE_BACKLOG = 1_000
"""Stored messages waiting to be announced live; beyond this live updates are dropped (they are
best effort; the data is already stored)."""


class StoreOutage:
    """Shared state of the store as the packager's concurrent writers see it, for one log line
    per outage instead of one per failed attempt."""

    def __init__(self) -> None:
        self.since: float | None = None

    def failed(self, exc: BaseException, delay: float) -> None:
        if self.since is None:
            self.since = time.monotonic()
            log.warning("time-series store write failed: %s; holding messages unacked, retrying "
                        "with backoff from %.1f s", exc, delay)
        else:
            log.debug("store write still failing (%s); next try in %.1f s", exc, delay)

    def succeeded(self) -> None:
        if self.since is not None:
            log.info("time-series store writes succeed again after %.1f s; catching up",
                     time.monotonic() - self.since)
            self.since = None


class _Group:
    """Readings of several messages, written together; `done` settles once they are stored."""

    __slots__ = ("parts", "size", "done")

    def __init__(self) -> None:
        self.parts: list[Sequence[Reading]] = []
        self.size = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class GroupCommit:
    """Coalesces the readings of concurrent callers into few store writes.

    `store(readings)` returns once a write holding them succeeded. Readings that arrive while
    `max_writes` writes are in flight wait in a group that grows up to `max_readings`, and the
    group is written as soon as a write finishes. `write` must be idempotent and retry by itself
    until it succeeds; it raises only ValueError, for content the store refuses, in which case
    each caller's readings of that group are written again on their own so only the offending
    caller sees the error.
    """

    def __init__(self, write: Callable[[Sequence[Reading]], Awaitable[None]],
                 max_readings: int = GROUP_MAX_READINGS, max_writes: int = GROUP_WRITES_IN_FLIGHT) -> None:
        if max_readings < 1 or max_writes < 1:
            raise ValueError("max_readings and max_writes must be at least 1")
        self._write = write
        self.max_readings = max_readings
        self.max_writes = max_writes
        self._waiting: deque[_Group] = deque()  # oldest first; the last one still takes readings
        self._writing: set[asyncio.Task[None]] = set()
        self._room = asyncio.Event()
        self._room.set()

    def _full(self) -> bool:
        return (len(self._writing) >= self.max_writes and bool(self._waiting)
                and self._waiting[-1].size >= self.max_readings)

    async def room(self) -> None:
        """Wait while every write slot is busy and the group waiting for one is full, so at
        most `max_writes + 1` groups of readings are in memory however many messages the
        broker has handed over (those stay undecoded bytes until there is room)."""
        while self._full():
            self._room.clear()
            await self._room.wait()

    async def store(self, readings: Sequence[Reading]) -> None:
        """Return once `readings` are stored; ValueError if the store refuses them."""
        if not self._waiting or self._waiting[-1].size >= self.max_readings:
            self._waiting.append(_Group())
        group = self._waiting[-1]
        group.parts.append(readings)
        group.size += len(readings)
        self._start_writes()
        # Shielded: a caller cancelled while waiting (its consumer stopped) must not cancel the
        # write the other callers of the group wait for.
        if await asyncio.shield(group.done):  # True: the group was refused, retry alone
            await self._write(readings)

    def _start_writes(self) -> None:
        while self._waiting and len(self._writing) < self.max_writes:
            task = asyncio.create_task(self._write_group(self._waiting.popleft()), name="packager-write")
            self._writing.add(task)
            task.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writing.discard(task)
        self._start_writes()
        if not self._full():
            self._room.set()

    async def _write_group(self, group: _Group) -> None:
        readings = group.parts[0] if len(group.parts) == 1 else [r for part in group.parts for r in part]
        started = time.perf_counter()
        try:
            await self._write(readings)
        except ValueError as exc:
            if len(group.parts) > 1:
                group.done.set_result(True)  # someone's readings are refused: each tries alone
            else:
                group.done.set_exception(exc)
            return
        except asyncio.CancelledError:
            group.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - `write` retries outages itself; this is a bug
            group.done.set_exception(exc)
            return
        log.debug("stored %d readings of %d messages in %.3f s (%d writing, %d waiting)", len(readings),
                  len(group.parts), time.perf_counter() - started, len(self._writing), len(self._waiting))
        group.done.set_result(False)

    async def close(self) -> None:
        """Cancel the writes in flight; their callers see CancelledError (nothing is acked)."""
        tasks = list(self._writing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for group in self._waiting:
            group.done.cancel()
        self._waiting.clear()


class Packager:
    """Consumes every metric's work queue into the time-series store."""

    def __init__(self, broker: Broker, store: TimeSeriesStore, telemetry: Telemetry,
                 prefetch: int = DEFAULT_PREFETCH, backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S, group_max_readings: int = GROUP_MAX_READINGS,
                 group_writes: int = GROUP_WRITES_IN_FLIGHT) -> None:
        self.broker = broker
        self.store = store
        self.telemetry = telemetry
        self.prefetch = prefetch
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.outage = StoreOutage()
        self.group_max_readings = group_max_readings
        self.group_writes = group_writes
        self._groups: GroupCommit | None = None
        self._live: asyncio.Queue[bytes] = asyncio.Queue(maxsize=LIVE_BACKLOG)
        self._live_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the live announcer and one consumer per metric queue."""
        self._groups = GroupCommit(self._write_until_stored, self.group_max_readings, self.group_writes)
        self._live_task = asyncio.create_task(self._announce_live(), name="packager-live")
        for metric in METRICS:
            await self.broker.consume_work(queue_for(metric), self.handle, self.prefetch)
        log.info("packager consuming %s (prefetch %d, writes of up to %d readings)",
                 ", ".join(queue_for(m) for m in METRICS), self.prefetch, self.group_max_readings)

    async def close(self) -> None:
        if self._groups is not None:
            await self._groups.close()
        if self._live_task is not None:
            self._live_task.cancel()
            await asyncio.gather(self._live_task, return_exceptions=True)
            self._live_task = None

    async def handle(self, delivery: Delivery) -> None:
        """Store one message; returning acks it, Undecodable dead-letters it."""
        if delivery.redelivered:
            self.telemetry.redelivered.inc()
        assert self._groups is not None, "start the packager first"
        await self._groups.room()
        message = decode_readings(delivery.body)
        if message.readings:
            try:
                await self._groups.store(message.readings)
            except ValueError as exc:  # e.g. a value the store's column cannot hold
                raise Undecodable(f"the store refuses its readings: {exc}") from None
        self.telemetry.readings_stored.inc(len(message.readings), metric=message.metric)
        self.telemetry.queue_lag.set(max(0, now_ms() - message.sent_ms) / 1000, metric=message.metric)
        try:
            self._live.put_nowait(delivery.body)
        except asyncio.QueueFull:
            pass  # live is best effort; subscribers backfill from history

    async def _write_until_stored(self, readings: Sequence[Reading]) -> None:
        """Write, retrying with backoff until the store confirms. ValueError (readings the
        store refuses) is not retried: no retry could change the answer."""
        delay = self.backoff_initial_s
        while True:
            started = time.perf_counter()
            try:
                await self.store.write(readings)
            except (asyncio.CancelledError, ValueError):
                raise
            except Exception as exc:  # noqa: BLE001 - never ack or drop what is not stored
                self.telemetry.store_failures.inc()
                self.outage.failed(exc, delay)
                await asyncio.sleep(delay)
                delay = min(self.backoff_max_s, delay * 2)
                continue
            self.telemetry.store_latency.observe(time.perf_counter() - started)
            self.outage.succeeded()
            return

    async def _announce_live(self) -> None:
        warned = False
        while True:
            body = await self._live.get()
            try:
                await self.broker.publish_event(LIVE_CHANNEL, body)
                warned = False
            except Exception as exc:  # noqa: BLE001 - live updates are best effort
                if not warned:
                    log.warning("live readings not announced while the broker fails: %s", exc)
                    warned = True
