"""The packager: broker work queues -> time-series store, acking only what is stored.

For each metric queue it consumes with a prefetch bound. A message is decoded (a malformed one
raises Undecodable, so the broker dead-letters and counts it), written as an idempotent upsert,
and only then acknowledged. Readings the store refuses (ValueError: a value its column cannot
hold; ingest's validation should let none through) never take the others down: the message's
readings are written in halves, then quarters..., around the refused ones, which alone go to the
dead-letter queue (`Broker.dead_letter`, counted); then the message is acked. While the store is
down the write is retried with capped exponential backoff and the message stays unacked, so an
outage pauses the packager and a crash leaves the message to be redelivered. Once its raw rows
are stored, the same bytes go out on the live channel (before the rollups, so they add nothing
to the live latency).

Rollups (`backend.services.rollups`): a write stores raw rows and latest values only; the minutes
it touched are marked dirty, and every minute marked within about a second is recomputed in one
go (their hours at most every five seconds). A message is acked only once the recomputations
covering its readings (minutes and hours) have returned, so a crash before that leaves the
message to be redelivered and its minutes and hours recomputed.

Group commit (`backend.services.group_commit`): the messages in hand (up to the prefetch of every
queue) are not written one by one. The readings of every message that arrives while the store is
busy go into one write, and each message is acked only once the write that holds it succeeded.
At light load a message is written alone, at once (no added latency); under load writes grow to
many thousand readings with many readings per series, which is what makes the store fast (few
large requests).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from functools import partial
from typing import TypeVar

from backend.ports import Broker, Delivery, MinuteBucket, TimeSeriesStore, minutes_of
from backend.services import rollups
from backend.services.group_commit import GroupCommit
from backend.services.telemetry import Telemetry
from backend.services.timestamps import now_ms
from backend.services.wire import LIVE_CHANNEL, decode_readings, encode_readings, queue_for
from tasker.backoff import RetryBackoff
from tasker.domain import METRICS, Reading

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PREFETCH = 2048
"""Unacked messages per metric queue. While a write is in flight the next group fills from these,
so they must hold more than a group, and stored messages stay unacked until their rollups are
recomputed (up to ROLLUP_HOUR_INTERVAL_S plus a recomputation, several seconds under load): at 250 readings
per message (a 500-reading POST over two metrics) 2 x 2,048 messages are about a million readings.
Messages wait as bytes (about 20 bytes per reading) until `GroupCommit.room` lets them be decoded.
With 512, ingest over RabbitMQ + Cassandra stored 18,901 readings/s end to end (4,558/s during the
load, the packager using under a fifth of a core: presumably most messages in hand were waiting
for their rollups); with 2,048, 20,131-28,499/s (12,662-18,808/s during the load) over three runs,
on a machine busy with other work."""
GROUP_MAX_READINGS = 100_000
"""A group stops taking messages at this many readings; the next message opens a new group. The
store's cost per reading falls as a write holds more readings of each series (Cassandra, 1,000
series: 16 us of its CPU per reading at 50,000 per write, 13 at 100,000, 12 at 200,000); end to end
over RabbitMQ + Cassandra 100,000 stored about 45% more per second than 50,000, and 200,000 no
more than 100,000 while holding twice the memory (about 130 bytes per decoded reading)."""
GROUP_WRITES_IN_FLIGHT = 8
"""Group writes at once, while they are small (see GROUP_BUSY_READINGS): at light load each
message is written at once, beside the others, as if there were no groups."""
GROUP_BUSY_READINGS = 5_000
"""Once this many readings are being written, the next group waits for a write to finish. Under
load there is then one write at a time and the next group gathers everything that arrives
meanwhile, which costs the store least per reading (with two large writes at once, groups were
half as large and end-to-end ingest over Cassandra no faster)."""
BACKOFF_INITIAL_S = 0.2
BACKOFF_MAX_S = 5.0
ROLLUP_INTERVAL_S = rollups.INTERVAL_S
ROLLUP_HOUR_INTERVAL_S = rollups.HOUR_INTERVAL_S
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
            log.warning(
                "time-series store write failed: %s; holding messages unacked, retrying with backoff from %.1f s",
                exc,
                delay,
            )
        else:
            log.debug("store write still failing (%s); next try in %.1f s", exc, delay)

    def succeeded(self) -> None:
        if self.since is not None:
            log.info("time-series store writes succeed again after %.1f s; catching up", time.monotonic() - self.since)
            self.since = None


class Packager:
    """Consumes every metric's work queue into the time-series store."""

    def __init__(
        self,
        broker: Broker,
        store: TimeSeriesStore,
        telemetry: Telemetry,
        prefetch: int = DEFAULT_PREFETCH,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        group_max_readings: int = GROUP_MAX_READINGS,
        group_writes: int = GROUP_WRITES_IN_FLIGHT,
        group_busy_readings: int = GROUP_BUSY_READINGS,
        rollup_interval_s: float = ROLLUP_INTERVAL_S,
        rollup_hour_interval_s: float = ROLLUP_HOUR_INTERVAL_S,
    ) -> None:
        self.broker = broker
        self.store = store
        self.telemetry = telemetry
        self.prefetch = prefetch
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.outage = StoreOutage()
        self.group_max_readings = group_max_readings
        self.group_writes = group_writes
        self.group_busy_readings = group_busy_readings
        self._groups: GroupCommit[Sequence[Reading], asyncio.Future[None]] | None = None
        self.rollups = rollups.DirtyMinutes(
            self._recompute_until_stored, rollup_interval_s, max(rollup_interval_s, rollup_hour_interval_s)
        )
        self._live: asyncio.Queue[bytes] = asyncio.Queue(maxsize=LIVE_BACKLOG)
        self._live_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the live announcer and one consumer per metric queue."""
        self._groups = GroupCommit(
            self._write_parts,
            len,
            self.group_max_readings,
            self.group_writes,
            "store write",
            busy_size=self.group_busy_readings,
        )
        self.rollups.start()
        self._live_task = asyncio.create_task(self._announce_live(), name="packager-live")
        for metric in METRICS:
            await self.broker.consume_work(queue_for(metric), self.handle, self.prefetch)
        log.info(
            "packager consuming %s (prefetch %d, writes of up to %d readings)",
            ", ".join(queue_for(m) for m in METRICS),
            self.prefetch,
            self.group_max_readings,
        )

    async def close(self) -> None:
        if self._groups is not None:
            await self._groups.close()
        await self.rollups.close()
        if self._live_task is not None:
            self._live_task.cancel()
            await asyncio.gather(self._live_task, return_exceptions=True)
            self._live_task = None

    async def handle(self, delivery: Delivery) -> None:
        """Store one message; returning acks it, Undecodable (raised by decoding) dead-letters it."""
        if delivery.redelivered:
            self.telemetry.redelivered.inc()
        assert self._groups is not None, "start the packager first"
        await self._groups.room()
        message = decode_readings(delivery.body)
        metric, sent_ms, count = message.metric, message.sent_ms, len(message.readings)
        if count:
            live = delivery.body
            try:
                rolled_up = await self._groups.submit(message.readings)
            except ValueError:  # e.g. a value the store's column cannot hold
                rolled_up, refused = await self._write_around_refused(message.readings)
                if refused:
                    await self._dead_letter(metric, refused)
                    count -= len(refused)
                    dropped = {id(r) for r, _ in refused}
                    live = encode_readings(metric, [r for r in message.readings if id(r) not in dropped], sent_ms)
            del message  # the readings are stored: hold no memory while the rollups wait
            # Live as soon as the raw rows are in: the rollups' wait is no part of the latency.
            if count:
                self._announce(live)
            await asyncio.shield(rolled_up)
        self.telemetry.readings_stored.inc(count, metric=metric)
        self.telemetry.queue_lag.set(max(0, now_ms() - sent_ms) / 1000, metric=metric)

    async def _write_around_refused(
        self, readings: Sequence[Reading]
    ) -> tuple[asyncio.Future[None], list[tuple[Reading, str]]]:
        """Write what the store takes of `readings`, halving each part it refuses down to the
        single readings it refuses; returns the rollups to wait for and the refused readings
        with the store's reason. Writes are upserts, so writing a part again is harmless."""
        rollups: list[asyncio.Future[None]] = []
        refused: list[tuple[Reading, str]] = []
        parts = [readings]
        while parts:
            part = parts.pop()
            try:
                rollups.append(await self._write_parts([part]))
            except ValueError as exc:
                if len(part) == 1:
                    refused.append((part[0], str(exc)))
                else:
                    half = len(part) // 2
                    parts += [part[half:], part[:half]]
        return asyncio.ensure_future(_all_done(rollups)), refused

    async def _dead_letter(self, metric: str, refused: list[tuple[Reading, str]]) -> None:
        """Send the refused readings alone to the dead-letter queue; Unavailable propagates, so
        the message is delivered again and its good readings written again (as upserts)."""
        reading, reason = refused[0]
        more = f" and {len(refused) - 1} more" if len(refused) > 1 else ""
        body = encode_readings(metric, [r for r, _ in refused], now_ms())
        await self.broker.dead_letter(
            queue_for(metric), body, f"the store refused {len(refused)} readings: {reason}{more}"
        )
        self.telemetry.readings_dead_lettered.inc(len(refused), metric=metric)

    def _announce(self, body: bytes) -> None:
        try:
            self._live.put_nowait(body)
        except asyncio.QueueFull:
            pass  # live is best effort; subscribers backfill from history

    async def _write_parts(self, parts: list[Sequence[Reading]]) -> asyncio.Future[None]:
        """Write the raw rows of a group; the recomputation of their minutes, to wait for."""
        readings = parts[0] if len(parts) == 1 else [r for part in parts for r in part]
        await self._until_stored(self.store.write_raw, readings, timed=True)
        return self.rollups.mark(minutes_of(readings))

    async def _recompute_until_stored(
        self, minutes: Collection[MinuteBucket], hours_of: Collection[MinuteBucket]
    ) -> None:
        await self._until_stored(partial(self.store.recompute_rollups, hours_of=hours_of), minutes, timed=False)

    async def _until_stored(self, operation: Callable[[T], Awaitable[None]], argument: T, timed: bool) -> None:
        """Run a store write, retrying with backoff until the store confirms. ValueError
        (readings the store refuses) is not retried: no retry could change the answer. `timed`:
        the write's duration goes to the store-write histogram (raw writes only)."""
        backoff = RetryBackoff(self.backoff_initial_s, self.backoff_max_s)
        while True:
            started = time.perf_counter()
            try:
                await operation(argument)
            except (asyncio.CancelledError, ValueError):
                raise
            except Exception as exc:  # noqa: BLE001 - never ack or drop what is not stored
                self.telemetry.store_failures.inc()
                delay = backoff.failed()
                self.outage.failed(exc, delay)
                await asyncio.sleep(delay)
                continue
            if timed:
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


async def _all_done(futures: list[asyncio.Future[None]]) -> None:
    """Wait for every future; the first failure is raised."""
    await asyncio.gather(*futures)
