"""Ingest: a validated batch becomes broker messages, confirmed before the caller hears 202.

Readings are grouped by metric into the message's columns (validation already left them so),
at most `READINGS_PER_MESSAGE` of a batch to a message. Publishes go through a group commit per
metric: at most PUBLISHES_IN_FLIGHT messages of a queue await their confirm at once, and the
readings of the POSTs that arrive meanwhile go out together in the next message (up to about
twice READINGS_PER_MESSAGE). Every POST still hears 202 only once the broker confirmed every
message holding its readings. A batch split over several messages that fails half-way is
answered 503 and re-sent whole by the sensor; the half that did reach the broker is stored
twice as an upsert of the same keys, i.e. once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from backend.ports import Broker, Registry, Unavailable
from backend.services.group_commit import GroupCommit
from backend.services.readings import MAX_BATCH_READINGS, ReadingBatch, ServerCeilings, validate_batch
from backend.services.telemetry import Telemetry
from backend.services.timestamps import now_ms
from backend.services.wire import READINGS_PER_MESSAGE, ReadingColumns, encode_columns, queue_for
from tasker.domain import value_ceilings

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S = 5.0
"""Longest wait for the broker's confirms before answering 503; a healthy broker takes ms."""
PUBLISHES_IN_FLIGHT = 2
"""Messages per work queue awaiting their confirm at once. Under load the POSTs arriving
meanwhile share the next message: with 500-reading POSTs (250 per metric) this cut RabbitMQ's CPU
per accepted reading by about 30% and the p99 POST latency by about a third; the stored rate,
bounded by Cassandra, did not change measurably."""


class ServerDirectory:
    """Registered servers with the ceiling of each metric's values, cached for ingest validation.

    Refreshed every `ttl_s` in the background (requests go on with the ids in hand meanwhile:
    a refresh awaited by the requests in flight was, with the ingest key lookups, most of the p99
    of POST -> 202 in `tasker bench latency`), kept current by registry events, and re-read
    before answering (at most every `miss_refresh_s`) when a batch names an id it does not know,
    so a server registered a moment ago on another api process is accepted at once.
    """

    def __init__(
        self,
        registry: Registry,
        ttl_s: float = 10.0,
        miss_refresh_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self._clock = clock
        self.ttl_s = ttl_s
        self.miss_refresh_s = miss_refresh_s
        self._ceilings: dict[str, dict[str, float]] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: asyncio.Task[None] | None = None

    async def _refresh(self) -> None:
        async with self._lock:
            servers = await self.registry.list_servers()
            self._ceilings = {s.id: value_ceilings(s.max_watts) for s in servers}
            self._loaded_at = self._clock()

    async def _refresh_quietly(self) -> None:
        try:
            await self._refresh()
        except Exception as exc:  # noqa: BLE001 - the registry is down: keep the ids in hand
            log.warning("server list not refreshed: %s", exc)
        finally:
            self._background = None

    async def ceilings(self, wanted: set[str] | None = None) -> ServerCeilings:
        """Known server ids -> metric -> ceiling; loaded first if never loaded or when one of
        `wanted` is unknown, else refreshed in the background when older than `ttl_s`."""
        age = self._clock() - self._loaded_at
        if self._loaded_at == float("-inf") or (
            wanted and not wanted <= self._ceilings.keys() and age > self.miss_refresh_s
        ):
            await self._refresh()
        elif age > self.ttl_s and self._background is None:
            self._background = asyncio.create_task(self._refresh_quietly(), name="server-list-refresh")
        return self._ceilings

    async def close(self) -> None:
        task, self._background = self._background, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def on_registry_event(self, body: bytes) -> None:
        """Apply an added/updated/removed event from the registry channel."""
        try:
            event = json.loads(body)
            server_id = event["server"]["id"]
            kind = event["event"]
            max_watts = float(event["server"].get("max_watts") or 0.0)
        except (ValueError, KeyError, TypeError, AttributeError):
            return
        if kind in ("added", "updated"):
            self._ceilings[server_id] = value_ceilings(max_watts)
        elif kind == "removed":
            self._ceilings.pop(server_id, None)


def _server_ids_named(payload: Any) -> set[str]:
    items = payload.get("readings") if isinstance(payload, dict) else None
    if not isinstance(items, list) or len(items) > MAX_BATCH_READINGS:
        return set()
    return {i["server_id"] for i in items if isinstance(i, dict) and isinstance(i.get("server_id"), str)}


class IngestService:
    """Validate, publish, confirm."""

    def __init__(
        self,
        broker: Broker,
        directory: ServerDirectory,
        telemetry: Telemetry,
        publish_timeout_s: float = PUBLISH_TIMEOUT_S,
    ) -> None:
        self.broker = broker
        self.directory = directory
        self.telemetry = telemetry
        self.publish_timeout_s = publish_timeout_s
        self._publishers: dict[str, GroupCommit[ReadingColumns, None]] = {}

    async def validate(self, payload: Any) -> ReadingBatch:
        """Raise BatchRejected naming every bad item, or return the typed batch."""
        known = await self.directory.ceilings(_server_ids_named(payload))
        return validate_batch(payload, known, now_ms())

    def _publisher(self, metric: str) -> GroupCommit[ReadingColumns, None]:
        publisher = self._publishers.get(metric)
        if publisher is None:
            queue = queue_for(metric)

            async def publish(parts: list[ReadingColumns]) -> None:
                columns = parts[0] if len(parts) == 1 else ReadingColumns.merged(parts)
                await self.broker.publish_work(queue, encode_columns(metric, columns, now_ms()))

            publisher = self._publishers[metric] = GroupCommit(
                publish, len, READINGS_PER_MESSAGE, PUBLISHES_IN_FLIGHT, f"publish to {queue}"
            )
        return publisher

    async def publish(self, batch: ReadingBatch) -> int:
        """Publish every reading and wait for every confirm; Unavailable if the broker fails."""
        parts = [
            (self._publisher(metric), chunk) for metric, columns in batch.columns.items() for chunk in columns.chunks()
        ]
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.publish_timeout_s):
                # A TaskGroup, so one failed publish cancels the rest instead of leaving them running.
                async with asyncio.TaskGroup() as group:
                    for publisher, chunk in parts:
                        group.create_task(publisher.submit(chunk))
        except TimeoutError:
            raise Unavailable(f"no publisher confirm within {self.publish_timeout_s:g} s") from None
        except ExceptionGroup as failed:
            first = failed.exceptions[0]
            if isinstance(first, Unavailable):
                raise first from None
            log.warning("publish failed unexpectedly: %r", first)
            raise Unavailable(f"publish failed: {first!r}") from None
        self.telemetry.publish_latency.observe(time.perf_counter() - started)
        for metric, columns in batch.columns.items():
            self.telemetry.readings_accepted.inc(len(columns), metric=metric)
        return len(batch)
