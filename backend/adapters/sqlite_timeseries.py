"""The embedded time-series store: one SQLite file (WAL), no server to install.

Every sqlite3 call runs on one dedicated thread, so the event loop never blocks on the disk and
the connection is only ever touched by the thread that opened it. Each `write` is one
`BEGIN IMMEDIATE` transaction: the batch arrives as one JSON document, raw rows are upserted
(INSERT OR REPLACE, keyed by server, metric and ts), then every 60 s bucket the batch touched is
recomputed from its raw rows and every 3600 s bucket from its 60 s rollups (`write_raw` leaves
that to a later `recompute_rollups` transaction, which the packager runs for the minutes dirtied
by all its writes of the last second or so). Recomputing
(instead of adding deltas) keeps the rollups equal to an aggregate of the raw rows whatever
duplicates arrive, and the write lock makes two writers (even two processes on one file) take
turns.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import orjson

from backend import downsample as ds
from backend.adapters.sqlite_tx import use_wal, write_transaction
from backend.ports import Latest, MinuteBucket, RawPage, Series, Unavailable
from tasker.domain import Reading
from tasker.private_files import private_file

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS readings (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (server_id, metric, ts_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_60 (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, start_ms INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (server_id, metric, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rollup_3600 (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, start_ms INTEGER NOT NULL,
    min REAL NOT NULL, max REAL NOT NULL, sum REAL NOT NULL, count INTEGER NOT NULL,
    PRIMARY KEY (server_id, metric, start_ms)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS latest (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (server_id, metric)
) WITHOUT ROWID;
"""

# The batch being written, deduplicated by key (last one wins, as INSERT OR REPLACE would).
_BATCH_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS batch (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, ts_ms INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (server_id, metric, ts_ms)
) WITHOUT ROWID
"""

# The batch arrives as one JSON array of [server_id, metric, ts_ms, value] rows; in the table a
# later row with the same key replaces an earlier one.
_BATCH_FROM_JSON = """
INSERT OR REPLACE INTO temp.batch (server_id, metric, ts_ms, value)
SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3 FROM json_each(?)
"""

# Buckets to recompute: `dirty` the minutes, from the batch just written (`write`) or given
# (`recompute_rollups`); `dirty_hours` the hours, those of the dirty minutes or of minutes given
# apart (the packager recomputes hours less often than minutes, `backend.services.rollups`).
_BUCKET_TABLE = """
CREATE TEMP TABLE IF NOT EXISTS {name} (
    server_id TEXT NOT NULL, metric TEXT NOT NULL, start_ms INTEGER NOT NULL,
    PRIMARY KEY (server_id, metric, start_ms)
) WITHOUT ROWID
"""

_DIRTY_FROM_BATCH = f"""
INSERT OR IGNORE INTO temp.dirty (server_id, metric, start_ms)
SELECT server_id, metric, ts_ms - ts_ms % {ds.MINUTE_MS} FROM temp.batch
"""

_DIRTY_FROM_JSON = """
INSERT OR IGNORE INTO temp.dirty (server_id, metric, start_ms)
SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?)
"""

_DIRTY_HOURS_FROM_MINUTES = f"""
INSERT OR IGNORE INTO temp.dirty_hours (server_id, metric, start_ms)
SELECT server_id, metric, start_ms - start_ms % {ds.HOUR_MS} FROM temp.dirty
"""

_DIRTY_HOURS_FROM_JSON = f"""
INSERT OR IGNORE INTO temp.dirty_hours (server_id, metric, start_ms)
SELECT value ->> 0, value ->> 1, (value ->> 2) - (value ->> 2) % {ds.HOUR_MS} FROM json_each(?)
"""

# CROSS JOIN makes SQLite loop over the dirty minutes and range-search the big table by its
# primary key; with a plain JOIN its planner (no statistics) chose to scan all of `readings`.
# Grouping by the dirty table's key streams the groups in its order (no temporary B-tree).
_RECOMPUTE_60 = f"""
INSERT OR REPLACE INTO rollup_60 (server_id, metric, start_ms, min, max, sum, count)
SELECT t.server_id, t.metric, t.start_ms, min(r.value), max(r.value), sum(r.value), count(*)
FROM temp.dirty t
CROSS JOIN readings r ON r.server_id = t.server_id AND r.metric = t.metric
    AND r.ts_ms >= t.start_ms AND r.ts_ms < t.start_ms + {ds.MINUTE_MS}
GROUP BY t.server_id, t.metric, t.start_ms
"""

_RECOMPUTE_3600 = f"""
INSERT OR REPLACE INTO rollup_3600 (server_id, metric, start_ms, min, max, sum, count)
SELECT t.server_id, t.metric, t.start_ms, min(r.min), max(r.max), sum(r.sum), sum(r.count)
FROM temp.dirty_hours t
CROSS JOIN rollup_60 r ON r.server_id = t.server_id AND r.metric = t.metric
    AND r.start_ms >= t.start_ms AND r.start_ms < t.start_ms + {ds.HOUR_MS}
GROUP BY t.server_id, t.metric, t.start_ms
"""

# SQLite returns the row holding max(ts_ms) for the bare `value` column. An equal ts replaces the
# value, as the raw upsert does.
_UPDATE_LATEST = """
INSERT INTO latest (server_id, metric, ts_ms, value)
SELECT server_id, metric, max(ts_ms), value FROM temp.batch WHERE true GROUP BY server_id, metric
ON CONFLICT (server_id, metric) DO UPDATE SET ts_ms = excluded.ts_ms, value = excluded.value
WHERE excluded.ts_ms >= latest.ts_ms
"""

_ROLLUP_TABLES = {60: "rollup_60", 3600: "rollup_3600"}


class SqliteTimeSeries:
    """TimeSeriesStore over a SQLite file at `path` (created with its folder if missing)."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._executor: ThreadPoolExecutor | None = None
        self._con: sqlite3.Connection | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the file and create the tables, idempotently."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="tasker-timeseries-sqlite")
        await self._run(self._open)

    async def close(self) -> None:
        if self._executor is None:
            return
        try:
            await self._run(self._close_connection)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def ping(self) -> None:
        await self._run(lambda: self._db().execute("SELECT 1").fetchone())

    # --- port ----------------------------------------------------------------------------------

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert readings and recompute the rollups they touch, in one durable transaction."""
        if not readings:
            return
        await self._run(self._write, readings, True)

    async def write_raw(self, readings: Sequence[Reading]) -> None:
        """Upsert readings and latest values in one durable transaction; rollups untouched."""
        if not readings:
            return
        await self._run(self._write, readings, False)

    async def recompute_rollups(
        self, minutes: Collection[MinuteBucket], hours_of: Collection[MinuteBucket] | None = None
    ) -> None:
        """Recompute the given 60 s buckets, then the hours holding `hours_of` (by default the
        same minutes), in one transaction."""
        hours_of = minutes if hours_of is None else hours_of
        if not minutes and not hours_of:
            return
        await self._run(self._recompute, orjson.dumps(list(minutes)), orjson.dumps(list(hours_of)))

    async def history(self, server_id: str, metric: str, from_ms: int, to_ms: int, max_points: int) -> Series:
        """Downsampled [from_ms, to_ms); see `backend.downsample.choose_resolution`."""
        res = ds.choose_resolution(from_ms, to_ms, max_points)
        if res == 1:
            sql = (
                "SELECT ts_ms, value, value, value, 1 FROM readings"
                " WHERE server_id = ? AND metric = ? AND ts_ms >= ? AND ts_ms < ?"
            )
            lo = from_ms
        else:
            sql = (
                f"SELECT start_ms, min, max, sum, count FROM {_ROLLUP_TABLES[res]}"
                " WHERE server_id = ? AND metric = ? AND start_ms >= ? AND start_ms < ?"
            )
            lo = ds.bucket_start(from_ms, res * ds.SECOND_MS)
        found = await self._run(self._fetch, sql, (server_id, metric, lo, to_ms))
        return ds.downsample(found, res, from_ms, to_ms, max_points)

    async def raw(
        self,
        server_id: str,
        metric: str,
        from_ms: int,
        to_ms: int,
        limit: int,
        cursor: str | None = None,
    ) -> RawPage:
        """Raw readings in [from_ms, to_ms), newest first; ValueError for a garbled cursor."""
        upper = ds.raw_page_upper(from_ms, to_ms, limit, cursor)
        found = await self._run(
            self._fetch,
            "SELECT ts_ms, value FROM readings WHERE server_id = ? AND metric = ?"
            " AND ts_ms >= ? AND ts_ms < ? ORDER BY ts_ms DESC LIMIT ?",
            (server_id, metric, from_ms, upper, limit + 1),
        )
        page = [Reading(server_id, metric, ts, value) for ts, value in found[:limit]]
        more = len(found) > limit
        return RawPage(page, ds.encode_cursor(page[-1].ts_ms) if more else None)

    async def latest(self, server_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Latest]:
        """Newest reading per (server, metric), for all servers or the ones given."""
        if server_ids is None:
            found = await self._run(self._fetch, "SELECT server_id, metric, ts_ms, value FROM latest", ())
        else:
            found = await self._run(
                self._fetch,
                "SELECT server_id, metric, ts_ms, value FROM latest"
                " WHERE server_id IN (SELECT value FROM json_each(?))",
                (json.dumps(list(server_ids)),),
            )
        return {(s, m): Latest(ts, v) for s, m, ts, v in found}

    async def purge(self, server_id: str) -> None:
        """Delete every reading, rollup and latest value of a server."""
        await self._run(self._purge, server_id)

    # --- on the store's thread -----------------------------------------------------------------

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise Unavailable("time-series store (SQLite) is not started")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.OperationalError as exc:  # locked, disk full, unreadable file ...
            raise Unavailable(f"time-series store (SQLite {self._path}): {exc}") from exc

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            raise Unavailable("time-series store (SQLite) is closed")
        return self._con

    def _open(self) -> None:
        if self._con is not None:
            return
        try:
            private_file(self._path)
            # isolation_level=None: transactions are begun explicitly (BEGIN IMMEDIATE).
            con = sqlite3.connect(self._path, isolation_level=None, timeout=30)
            use_wal(con, timeout_s=30)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"time-series store: cannot open SQLite file {self._path}: {exc}") from exc
        # FULL: a committed write survives a power cut, not only a crash of the process, which
        # is what "return only once durable" promises the packager before it acks.
        con.execute("PRAGMA synchronous=FULL")
        con.executescript(_SCHEMA)
        con.execute(_BATCH_TABLE)
        con.execute(_BUCKET_TABLE.format(name="dirty"))
        con.execute(_BUCKET_TABLE.format(name="dirty_hours"))
        self._con = con

    def _close_connection(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def _fetch(self, sql: str, params: tuple[object, ...]) -> list[tuple]:
        return self._db().execute(sql, params).fetchall()

    def _write(self, readings: Sequence[Reading], rollups: bool) -> None:
        # One JSON document instead of a bound statement per row: SQLite unpacks it in C with
        # the GIL released, where executemany takes the GIL back for every row (which, beside
        # a busy event loop, halved the embedded store's rate). Built here, off the loop.
        rows = orjson.dumps([(r.server_id, r.metric, r.ts_ms, r.value) for r in readings])
        with write_transaction(self._db()) as con:
            con.execute("DELETE FROM temp.batch")
            con.execute(_BATCH_FROM_JSON, (rows,))
            con.execute("INSERT OR REPLACE INTO readings SELECT * FROM temp.batch")
            if rollups:
                con.execute("DELETE FROM temp.dirty")
                con.execute(_DIRTY_FROM_BATCH)
                con.execute(_RECOMPUTE_60)
                con.execute("DELETE FROM temp.dirty_hours")
                con.execute(_DIRTY_HOURS_FROM_MINUTES)
                con.execute(_RECOMPUTE_3600)
            con.execute(_UPDATE_LATEST)

    def _recompute(self, minutes: bytes, hours_of: bytes) -> None:
        with write_transaction(self._db()) as con:
            con.execute("DELETE FROM temp.dirty")
            con.execute(_DIRTY_FROM_JSON, (minutes,))
            con.execute(_RECOMPUTE_60)
            con.execute("DELETE FROM temp.dirty_hours")
            con.execute(_DIRTY_HOURS_FROM_JSON, (hours_of,))
            con.execute(_RECOMPUTE_3600)

    def _purge(self, server_id: str) -> None:
        with write_transaction(self._db()) as con:
            for table in ("readings", "rollup_60", "rollup_3600", "latest"):
                con.execute(f"DELETE FROM {table} WHERE server_id = ?", (server_id,))
