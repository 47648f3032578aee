"""The 60 s and 3600 s rollups, recomputed from what is stored below them, never incremented.

Once raw readings are written, every 60 s bucket they touched is re-read (one `raw_minutes` row
each) and written `USING TIMESTAMP` = the moment that read started (microseconds), then every
touched hour likewise from its 60 s rollups. Of two recomputations racing (two packagers, a
redelivery), the one whose read started last saw every raw row written before it and carries
the larger timestamp, so it wins: rollups converge to an aggregate of the raw rows.

Each server's runs of consecutive touched buckets are re-read together, servers with the same
run sharing one `IN` read of up to MAX_SERVERS_PER_READ partitions; the store's `write` does it
at once, while the packager recomputes the minutes dirtied by all its writes of the last second
or so, so a minute is re-read about once a second, not once per write.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from backend import downsample as ds
from backend.adapters.cassandra.batches import BatchWriter
from backend.adapters.cassandra.driver import CassandraSession, all_of, map_items
from backend.adapters.cassandra.schema import HOUR_PERIOD_MS
from backend.ports import MinuteBucket

# Rollup recomputations (a multi-partition read, then its rollup rows) at once. A recomputation
# round re-reads thousands of rows; all at once it would fill every request slot and Cassandra's
# queues ahead of the raw writes that live readings wait for.
ROLLUP_GROUPS_IN_FLIGHT = 4
MAX_SERVERS_PER_READ = 100  # partitions per multi-partition (IN) read of a rollup recomputation
MAX_BUCKETS_PER_READ = 200  # and at most this many (server, bucket) pairs per read

Runs = dict[tuple[str, int, int, int], list[str]]
"""{(metric, day, lo, hi): servers}: the servers whose buckets in [lo, hi) ms into `day` are
re-read together."""


class Rollups:
    """Recomputes rollup buckets from the rows below them."""

    def __init__(self, session: CassandraSession, batches: BatchWriter) -> None:
        self._session = session
        self._batches = batches
        self._slots = asyncio.Semaphore(ROLLUP_GROUPS_IN_FLIGHT)

    async def recompute(
        self, minutes: Collection[MinuteBucket], hours_of: Collection[MinuteBucket] | None = None
    ) -> None:
        """Recompute the given 60 s buckets from the raw rows, then the hours holding `hours_of`
        (by default the same minutes) from their 60 s rollups."""
        day_ms, hour_ms = ds.DAY_MS, ds.HOUR_MS
        by_partition: dict[tuple[str, str, int], list[int]] = defaultdict(list)
        for server_id, metric, start_ms in minutes:
            by_partition[(server_id, metric, start_ms // day_ms)].append(start_ms % day_ms)
        await self._recompute_minutes(_bucket_runs(by_partition.items(), ds.MINUTE_MS))
        hours: dict[tuple[str, str, int], set[int]] = defaultdict(set)
        for server_id, metric, start_ms in minutes if hours_of is None else hours_of:
            offset = start_ms % day_ms
            hours[(server_id, metric, start_ms // day_ms)].add(offset - offset % hour_ms)
        await self._recompute_hours(_bucket_runs(hours.items(), ds.HOUR_MS))

    async def _recompute_minutes(self, runs: Runs) -> None:
        """Recompute every minute bucket of the runs from the raw rows."""
        await all_of(
            self._recompute_minute_group(metric, day, lo, hi, servers)
            for (metric, day, lo, hi), servers in _read_groups(runs, ds.MINUTE_MS)
        )

    async def _recompute_minute_group(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        """Recompute the minutes [lo, hi) (ms into `day`) of several servers from their raw rows:
        one multi-partition read, then the rollup rows, batched by partition."""
        async with self._slots:
            read_at = _now_us()  # before the read: a later read always carries a later timestamp
            minute_ms = ds.MINUTE_MS
            rows = await self._session.run("select_raw_in", (servers, metric, day, lo // minute_ms, hi // minute_ms))
            base = day * ds.DAY_MS
            rollups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
            for server_id, minute, points in rows:
                values = [v for _, v in map_items(points)]
                if values:
                    rollups[server_id].append(
                        (
                            server_id,
                            metric,
                            day,
                            base + minute * minute_ms,
                            min(values),
                            max(values),
                            sum(values),
                            len(values),
                            read_at,
                        )
                    )
            await self._batches.write_rows("insert_r60", rollups.values())

    async def _recompute_hours(self, runs: Runs) -> None:
        """Recompute every hour bucket of the runs from their 60 s rollups."""
        await all_of(
            self._recompute_hour_group(metric, day, lo, hi, servers)
            for (metric, day, lo, hi), servers in _read_groups(runs, ds.HOUR_MS)
        )

    async def _recompute_hour_group(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        """Recompute the hours [lo, hi) (ms into `day`) of several servers from their 60 s
        rollups: one multi-partition read, then the rollup rows."""
        async with self._slots:
            base = day * ds.DAY_MS
            read_at = _now_us()
            rows = await self._session.run("select_r60_in", (servers, metric, day, base + lo, base + hi))
            minutes: dict[str, list[tuple[int, float, float, float, int]]] = defaultdict(list)
            for server_id, *rollup in rows:
                minutes[server_id].append(tuple(rollup))  # type: ignore[arg-type]
            by_partition: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
            for server_id, found in minutes.items():
                for r in ds.merge(found, ds.HOUR_MS):
                    period = r.start_ms // HOUR_PERIOD_MS
                    by_partition[(server_id, period)].append(
                        (server_id, metric, period, r.start_ms, r.min, r.max, r.sum, r.n, read_at)
                    )
            await self._batches.write_rows("insert_r3600", by_partition.values())


def _now_us() -> int:
    return time.time_ns() // 1_000


def _runs(offsets: Sequence[int], width: int) -> list[tuple[int, int]]:
    """Sorted bucket starts -> [lo, hi) ranges of consecutive buckets."""
    runs: list[tuple[int, int]] = []
    for start in offsets:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + width)
        else:
            runs.append((start, start + width))
    return runs


def _bucket_runs(partitions: Iterable[tuple[tuple[str, str, int], Iterable[int]]], width: int) -> Runs:
    """Touched partitions with the ms into the day they touched (raw timestamps or bucket
    starts) -> each server's runs of consecutive touched buckets, so servers touched alike
    share a read."""
    runs: Runs = defaultdict(list)
    for (server_id, metric, day), values in partitions:
        starts = sorted({ts - ts % width for ts in values})
        for lo, hi in _runs(starts, width):
            runs[(metric, day, lo, hi)].append(server_id)
    return runs


def _read_groups(runs: Runs, width: int) -> list[tuple[tuple[str, int, int, int], list[str]]]:
    """Split each run's servers into multi-partition reads of at most MAX_SERVERS_PER_READ
    servers and MAX_BUCKETS_PER_READ buckets, so no single read returns too many rows."""
    groups: list[tuple[tuple[str, int, int, int], list[str]]] = []
    for key, servers in runs.items():
        buckets = (key[3] - key[2]) // width
        per_read = max(1, min(MAX_SERVERS_PER_READ, MAX_BUCKETS_PER_READ // buckets))
        groups.extend((key, servers[i : i + per_read]) for i in range(0, len(servers), per_read))
    return groups
