"""The tables of the store, the statements over them, and bringing a keyspace up to date.

All in the keyspace named by the URL (docs/architecture.md draws the same layout):

- `raw_minutes`: a partition per (server_id, metric, UTC day), clustered by `minute` of the day
  newest first; a row holds that minute's readings in `points`, a map from milliseconds into
  the day (`int`) to a 32-bit `float` value (about 7 significant digits). Each reading is its
  own map cell, so writing one is still an idempotent upsert keyed by (server, metric, ts) that
  needs no read, while Cassandra handles a row per minute instead of a row per reading: about a
  quarter of the CPU per reading written and under half per reading read back (measured on
  this node, `BENCHMARKS.md`), at the same bytes on disk. TimeWindowCompactionStrategy with
  one-day windows, Zstd, and a default TTL of `retention_days`.
- `rollup_60` (partition per server, metric, day) and `rollup_3600` (per server, metric and
  64-day period): min, max, sum and count per bucket; avg = sum / count.
- `latest`: each server's newest reading per metric.
- `series_days`: which (metric, day) partitions a server has, so raw paging can skip empty days
  and purge can find every partition.

`ensure_schema` creates what is missing and changes what the settings changed: the keyspace's
replication when the URL names another, and the tables' default TTL when `retention_days` did
(rows already written keep theirs).
"""

from __future__ import annotations

import logging

from backend import downsample as ds
from backend.adapters.cassandra.driver import CassandraSession

HOUR_PERIOD_MS = 64 * ds.DAY_MS  # rollup_3600 partition span: at most 1,536 rows each

# Tables whose default TTL follows retention_days, with what they keep beyond it: the partition
# index outlives the last rows it points to.
TTL_TABLES = {"raw_minutes": 0, "rollup_60": 0, "rollup_3600": 0, "series_days": 2 * 86_400}

STATEMENTS = {
    # Adds cells to the minute's map: an upsert per reading, no read.
    "insert_raw": "UPDATE {ks}.raw_minutes SET points = points + ?"
    " WHERE server_id = ? AND metric = ? AND day = ? AND minute = ?",
    "insert_day": "INSERT INTO {ks}.series_days (server_id, metric, day) VALUES (?, ?, ?)",
    "select_raw": "SELECT minute, points FROM {ks}.raw_minutes"
    " WHERE server_id = ? AND metric = ? AND day = ? AND minute >= ? AND minute <= ? LIMIT ?",
    "select_raw_all": "SELECT points FROM {ks}.raw_minutes"
    " WHERE server_id = ? AND metric = ? AND day = ? AND minute >= ? AND minute <= ?",
    "insert_r60": "INSERT INTO {ks}.rollup_60 (server_id, metric, period, start_ms, min, max, sum, count)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "insert_r3600": "INSERT INTO {ks}.rollup_3600 (server_id, metric, period, start_ms, min, max, sum, count)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?",
    "select_raw_in": "SELECT server_id, minute, points FROM {ks}.raw_minutes"
    " WHERE server_id IN ? AND metric = ? AND day = ? AND minute >= ? AND minute < ?",
    "select_r60_in": "SELECT server_id, start_ms, min, max, sum, count FROM {ks}.rollup_60"
    " WHERE server_id IN ? AND metric = ? AND period = ? AND start_ms >= ? AND start_ms < ?",
    "select_r60": "SELECT start_ms, min, max, sum, count FROM {ks}.rollup_60"
    " WHERE server_id = ? AND metric = ? AND period = ? AND start_ms >= ? AND start_ms < ?",
    "select_r3600": "SELECT start_ms, min, max, sum, count FROM {ks}.rollup_3600"
    " WHERE server_id = ? AND metric = ? AND period = ? AND start_ms >= ? AND start_ms < ?",
    "insert_latest": "INSERT INTO {ks}.latest (server_id, metric, ts, value) VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
    "select_latest_of": "SELECT server_id, metric, ts, value FROM {ks}.latest WHERE server_id = ?",
    "select_latest_all": "SELECT server_id, metric, ts, value FROM {ks}.latest",
    "select_days": "SELECT metric, day FROM {ks}.series_days WHERE server_id = ?",
    "select_days_of": "SELECT day FROM {ks}.series_days WHERE server_id = ? AND metric = ? AND day >= ? AND day <= ?",
    "delete_raw": "DELETE FROM {ks}.raw_minutes WHERE server_id = ? AND metric = ? AND day = ?",
    "delete_r60": "DELETE FROM {ks}.rollup_60 WHERE server_id = ? AND metric = ? AND period = ?",
    "delete_r3600": "DELETE FROM {ks}.rollup_3600 WHERE server_id = ? AND metric = ? AND period = ?",
    "delete_latest": "DELETE FROM {ks}.latest USING TIMESTAMP ? WHERE server_id = ?",
    "delete_days": "DELETE FROM {ks}.series_days WHERE server_id = ?",
}
"""Every prepared statement the store runs, by name; `{ks}` stands for the keyspace."""

log = logging.getLogger(__name__)


def replication_map(replicas: int) -> dict[str, str]:
    """The keyspace replication for `replicas` copies of each row, in every data centre (the
    `replication_factor` shorthand of NetworkTopologyStrategy, which Cassandra expands per DC)."""
    return {"class": "NetworkTopologyStrategy", "replication_factor": str(replicas)}


def tables(ks: str, ttl_s: int, replicas: int) -> list[str]:
    """The CQL creating the keyspace (first) and each table, where missing."""
    twcs = (
        "compaction = {'class': 'TimeWindowCompactionStrategy',"
        " 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}"
    )
    zstd = "compression = {'class': 'ZstdCompressor', 'chunk_length_in_kb': 64}"
    lz4 = "compression = {'class': 'LZ4Compressor', 'chunk_length_in_kb': 16}"
    rollup_columns = "min float, max float, sum double, count int"
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {_cql_map(replication_map(replicas))}",
        (
            f"CREATE TABLE IF NOT EXISTS {ks}.raw_minutes ("
            " server_id text, metric text, day int, minute int, points map<int, float>,"
            " PRIMARY KEY ((server_id, metric, day), minute))"
            f" WITH CLUSTERING ORDER BY (minute DESC) AND {twcs} AND {zstd}"
            f" AND default_time_to_live = {ttl_s}"
        ),
        (
            f"CREATE TABLE IF NOT EXISTS {ks}.rollup_60 ("
            f" server_id text, metric text, period int, start_ms bigint, {rollup_columns},"
            " PRIMARY KEY ((server_id, metric, period), start_ms))"
            f" WITH {twcs} AND {lz4} AND default_time_to_live = {ttl_s}"
        ),
        (
            f"CREATE TABLE IF NOT EXISTS {ks}.rollup_3600 ("
            f" server_id text, metric text, period int, start_ms bigint, {rollup_columns},"
            " PRIMARY KEY ((server_id, metric, period), start_ms))"
            f" WITH {lz4} AND default_time_to_live = {ttl_s}"
        ),
        # Overwritten at every batch: leveled compaction keeps a row in few SSTables.
        (
            f"CREATE TABLE IF NOT EXISTS {ks}.latest ("
            " server_id text, metric text, ts bigint, value float, PRIMARY KEY (server_id, metric))"
            " WITH compaction = {'class': 'LeveledCompactionStrategy'}"
        ),
        (
            f"CREATE TABLE IF NOT EXISTS {ks}.series_days ("
            " server_id text, metric text, day int, PRIMARY KEY (server_id, metric, day))"
            f" WITH default_time_to_live = {ttl_s + TTL_TABLES['series_days']}"
        ),
    ]


async def ensure_schema(session: CassandraSession, ttl_s: int) -> None:
    """Create the keyspace (NetworkTopologyStrategy, the URL's replication or 1) and tables if
    missing, change an existing keyspace's replication when the URL names another, and give
    the tables the default TTL `ttl_s`. Idempotent."""
    target = session.target
    schema = tables(target.keyspace, ttl_s, target.replication or 1)
    await session.execute(schema[0])
    await _update_replication(session)
    for ddl in schema[1:]:
        await session.execute(ddl)
    await _update_ttl(session, ttl_s)


async def _update_replication(session: CassandraSession) -> None:
    """Give the keyspace the URL's replication when it has another. Rows written before
    reach the new replicas only through a repair (`nodetool repair` on each node), which
    this does not run: it says so."""
    keyspace, replication = session.target.keyspace, session.target.replication
    if replication is None:
        return
    rows = await session.execute(
        "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (keyspace,)
    )
    wanted = replication_map(replication)
    current = dict(rows[0][0]) if rows else {}
    if _replicas_of(current) == replication and current.get("class", "").endswith("NetworkTopologyStrategy"):
        return
    await session.execute(f"ALTER KEYSPACE {keyspace} WITH replication = {_cql_map(wanted)}")
    log.warning(
        "%s: replication changed from %s to %d replicas; run `nodetool repair %s` on every"
        " node so rows written before have them all",
        session.where,
        current or "none",
        replication,
        keyspace,
    )


async def _update_ttl(session: CassandraSession, ttl_s: int) -> None:
    keyspace = session.target.keyspace
    rows = await session.execute(
        "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s",
        (keyspace,),
    )
    current = dict(rows)
    for table, extra in TTL_TABLES.items():
        if current.get(table) != ttl_s + extra:
            await session.execute(f"ALTER TABLE {keyspace}.{table} WITH default_time_to_live = {ttl_s + extra}")


def _cql_map(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in values.items()) + "}"


def _replicas_of(replication: dict[str, str]) -> int | None:
    """Replicas per data centre of a keyspace's replication map (as Cassandra stores it: NTS
    lists each data centre), or None when they differ between data centres."""
    counts = {v for k, v in replication.items() if k not in ("class",)}
    return int(counts.pop()) if len(counts) == 1 and next(iter(counts)).isdigit() else None
