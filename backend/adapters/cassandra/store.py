"""The TimeSeriesStore over Cassandra, composed of the session, the schema, writes, rollups and reads.

A write upserts the raw rows and latest values (`writes`), then recomputes the rollups they
touch (`rollups`); the packager calls the two halves itself to recompute many writes' minutes
together. The packager hands over many messages per write (group commit), so a write typically
carries many readings of each series.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence

from backend import downsample as ds
from backend.adapters.cassandra.batches import MAX_PARTITIONS_PER_BATCH, BatchWriter
from backend.adapters.cassandra.driver import CassandraSession, all_of
from backend.adapters.cassandra.reads import Reads
from backend.adapters.cassandra.rollups import Rollups
from backend.adapters.cassandra.schema import HOUR_PERIOD_MS, STATEMENTS, ensure_schema
from backend.adapters.cassandra.target import parse_target
from backend.adapters.cassandra.writes import ReadingWriter
from backend.ports import Latest, MinuteBucket, RawPage, Series, minutes_of
from tasker.domain import MAX_FUTURE_SKEW_MS, Reading


class CassandraTimeSeries:
    """TimeSeriesStore over Cassandra at `url` (`cassandra://host[,host][:port]/keyspace`, with
    `?replication=N&consistency=LEVEL` as `parse_target` describes).

    `retention_days` is the TTL of raw readings and rollups; changing it changes the tables'
    default TTL at the next start (rows already written keep theirs). `partitions_per_batch`:
    see `batches.MAX_PARTITIONS_PER_BATCH`.
    """

    def __init__(
        self, url: str, retention_days: int = 400, partitions_per_batch: int = MAX_PARTITIONS_PER_BATCH
    ) -> None:
        target = parse_target(url)
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        self._ttl_s = retention_days * 86_400
        self._session = CassandraSession(target)
        self._batches = BatchWriter(self._session, partitions_per_batch)
        self._writes = ReadingWriter(self._batches)
        self._rollups = Rollups(self._session, self._batches)
        self._reads = Reads(self._session)

    async def start(self) -> None:
        """Connect, bring the keyspace and tables up to date (`schema.ensure_schema`) and
        prepare the statements. Idempotent."""
        if self._session.connected:
            return
        await self._session.connect()
        try:
            await ensure_schema(self._session, self._ttl_s)
            await self._session.prepare(STATEMENTS)
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self._session.close()

    async def ping(self) -> None:
        await self._session.execute("SELECT release_version FROM system.local")

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert readings and latest values, then recompute the 60 s and 3600 s rollups they
        touch. Returns once all of it is acknowledged; raises Unavailable otherwise (the caller
        retries the whole batch, which is idempotent), ValueError for a value out of range."""
        await self.write_raw(readings)
        await self.recompute_rollups(minutes_of(readings))

    async def write_raw(self, readings: Sequence[Reading]) -> None:
        """Upsert readings, latest values and the partition index, leaving the rollups to
        `recompute_rollups`."""
        await self._writes.write(readings)

    async def recompute_rollups(
        self, minutes: Collection[MinuteBucket], hours_of: Collection[MinuteBucket] | None = None
    ) -> None:
        """Recompute the given 60 s buckets from the raw rows, then the hours holding `hours_of`
        (by default the same minutes) from their 60 s rollups."""
        await self._rollups.recompute(minutes, hours_of)

    async def history(self, server_id: str, metric: str, from_ms: int, to_ms: int, max_points: int) -> Series:
        """Downsampled [from_ms, to_ms); see `backend.downsample.choose_resolution`."""
        return await self._reads.history(server_id, metric, from_ms, to_ms, max_points)

    async def raw(
        self, server_id: str, metric: str, from_ms: int, to_ms: int, limit: int, cursor: str | None = None
    ) -> RawPage:
        """Raw readings in [from_ms, to_ms), newest first, across day partitions; ValueError
        for a garbled cursor."""
        return await self._reads.raw(server_id, metric, from_ms, to_ms, limit, cursor)

    async def latest(self, server_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Latest]:
        """Newest reading per (server, metric), for all servers or the ones given."""
        return await self._reads.latest(server_ids)

    async def purge(self, server_id: str) -> None:
        """Delete every reading, rollup and latest value of a server. The index of its
        partitions goes last, so a purge interrupted by an outage can simply be repeated."""
        run = self._session.run
        series_days = await run("select_days", (server_id,))
        hour_periods = {(m, day * ds.DAY_MS // HOUR_PERIOD_MS) for m, day in series_days}
        await all_of(
            [run("delete_raw", (server_id, m, day)) for m, day in series_days]
            + [run("delete_r60", (server_id, m, day)) for m, day in series_days]
            + [run("delete_r3600", (server_id, m, p)) for m, p in hour_periods]
            # `latest` cells carry their reading's time, which may run ahead of our clock.
            + [run("delete_latest", ((_now_ms() + 2 * MAX_FUTURE_SKEW_MS) * 1_000, server_id))]
        )
        await run("delete_days", (server_id,))
        self._writes.forget(server_id)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
