"""Readings written: their minute rows, each series' latest value, and the partition index.

All three go at once, as they need nothing of each other; the rollups, which need the raw rows
in place, are recomputed afterwards (`rollups`). `latest` is written `USING TIMESTAMP` = the
reading's own time, so an older reading arriving late never replaces a newer one. `series_days`
notes each (server, metric, day) partition written; a process notes one again only after
SERIES_DAY_CACHE_S.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from backend import downsample as ds
from backend.adapters.cassandra.batches import BatchWriter
from backend.adapters.cassandra.driver import all_of
from tasker.domain import Reading

FLOAT32_MAX = 3.4028234663852886e38
YIELD_EVERY = 5_000  # readings a write handles before giving the event loop a turn
# How long this process trusts that it already recorded a (server, metric, day) in series_days.
SERIES_DAY_CACHE_S = 60.0


class ReadingWriter:
    """Upserts readings, latest values and the partition index through a BatchWriter."""

    def __init__(self, batches: BatchWriter) -> None:
        self._batches = batches
        self._known_days: dict[tuple[str, str, int], float] = {}

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert readings, latest values and the partition index; ValueError for a value that
        is not a finite 32-bit float (nothing is written then)."""
        partitions: dict[tuple[str, str, int], dict[int, float]] = defaultdict(dict)
        if not readings:
            return
        day_ms = ds.DAY_MS
        for start in range(0, len(readings), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)  # a large write must not hold the event loop
            for r in readings[start : start + YIELD_EVERY]:
                value = r.value
                if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    raise ValueError(f"reading {r.key}: value {value} is not a finite 32-bit float")
                partitions[(r.server_id, r.metric, r.ts_ms // day_ms)][r.ts_ms % day_ms] = value

        latest: dict[tuple[str, str], tuple[int, float]] = {}
        for (s, m, day), values in partitions.items():
            ts = max(values)
            if day * day_ms + ts >= latest.get((s, m), (-1, 0.0))[0]:
                latest[(s, m)] = (day * day_ms + ts, values[ts])
        by_server: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for (s, m), (ts, v) in latest.items():
            by_server[s].append((s, m, ts, v, ts * 1_000))

        await all_of(
            [
                self._batches.write_minutes(partitions),
                self._batches.write_rows("insert_latest", by_server.values()),
                self._record_days(partitions),
            ]
        )

    def forget(self, server_id: str) -> None:
        """Forget which partitions of a server were noted, once they are purged."""
        for key in [k for k in self._known_days if k[0] == server_id]:
            del self._known_days[key]

    async def _record_days(self, keys: Iterable[tuple[str, str, int]]) -> None:
        """Note the (server, metric, day) partitions in `series_days`, skipping those this
        process noted within SERIES_DAY_CACHE_S."""
        now = time.monotonic()
        known = self._known_days
        new = [key for key in keys if now - known.get(key, -SERIES_DAY_CACHE_S) >= SERIES_DAY_CACHE_S]
        if not new:
            return
        by_server: dict[str, list[tuple[str, str, int]]] = defaultdict(list)
        for key in new:
            by_server[key[0]].append(key)
        await self._batches.write_rows("insert_day", by_server.values())
        if len(known) > 100_000:
            known.clear()
        for key in new:
            known[key] = now
