"""The packager: broker work queues -> time-series store, acking only what is stored.

For each metric queue it consumes with a prefetch bound. A message is decoded (a malformed one
raises Undecodable, so the broker dead-letters and counts it), written as an idempotent upsert,
and only then acknowledged. While the store is down the write is retried with capped
exponential backoff and the message stays unacked, so an outage pauses the packager and a crash
leaves the message to be redelivered. Once stored, the same bytes go out on the live channel.
"""

from __future__ import annotations

import asyncio
import logging
import time

from backend.ports import Broker, Delivery, TimeSeriesStore
from backend.services.telemetry import Telemetry
from backend.services.timestamps import now_ms
from backend.services.wire import LIVE_CHANNEL, decode_readings, queue_for
from tasker.domain import METRICS

log = logging.getLogger(__name__)

DEFAULT_PREFETCH = 8
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


class Packager:
    """Consumes every metric's work queue into the time-series store."""

    def __init__(self, broker: Broker, store: TimeSeriesStore, telemetry: Telemetry,
                 prefetch: int = DEFAULT_PREFETCH, backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S) -> None:
        self.broker = broker
        self.store = store
        self.telemetry = telemetry
        self.prefetch = prefetch
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.outage = StoreOutage()
        self._live: asyncio.Queue[bytes] = asyncio.Queue(maxsize=LIVE_BACKLOG)
        self._live_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start the live announcer and one consumer per metric queue."""
        self._live_task = asyncio.create_task(self._announce_live(), name="packager-live")
        for metric in METRICS:
            await self.broker.consume_work(queue_for(metric), self.handle, self.prefetch)
        log.info("packager consuming %s (prefetch %d)",
                 ", ".join(queue_for(m) for m in METRICS), self.prefetch)

    async def close(self) -> None:
        if self._live_task is not None:
            self._live_task.cancel()
            await asyncio.gather(self._live_task, return_exceptions=True)
            self._live_task = None

    async def handle(self, delivery: Delivery) -> None:
        """Store one message; returning acks it, Undecodable dead-letters it."""
        if delivery.redelivered:
            self.telemetry.redelivered.inc()
        message = decode_readings(delivery.body)
        if message.readings:
            await self._write_until_stored(message.readings)
        self.telemetry.readings_stored.inc(len(message.readings), metric=message.metric)
        self.telemetry.queue_lag.set(max(0, now_ms() - message.sent_ms) / 1000, metric=message.metric)
        try:
            self._live.put_nowait(delivery.body)
        except asyncio.QueueFull:
            pass  # live is best effort; subscribers backfill from history

    async def _write_until_stored(self, readings) -> None:  # type: ignore[no-untyped-def]
        delay = self.backoff_initial_s
        while True:
            started = time.perf_counter()
            try:
                await self.store.write(readings)
            except asyncio.CancelledError:
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
