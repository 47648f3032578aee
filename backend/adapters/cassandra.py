"""The distributed time-series store: Apache Cassandra through cassandra-driver.

Layout (DESIGN.md section 7), all in the keyspace named by the URL:

- `raw_minutes`: a partition per (server_id, metric, UTC day), clustered by `minute` of the day
  newest first; a row holds that minute's readings in `points`, a map from milliseconds into
  the day (`int`) to a 32-bit `float` value (about 7 significant digits). Each reading is its
  own map cell, so writing one is still an idempotent upsert keyed by (server, metric, ts) that
  needs no read, while Cassandra handles a row per minute instead of a row per reading: about a
  quarter of the CPU per reading written and under half per reading read back (measured on
  this node, `BENCHMARKS.md`), at the same bytes on disk. TimeWindowCompactionStrategy with
  one-day windows, Zstd, and a default TTL of `retention_days`. It replaces `readings` (a row
  per reading), which `start` migrates and drops when it finds it (`_migrate_legacy_readings`).
- `rollup_60` (partition per server, metric, day) and `rollup_3600` (per server, metric and
  64-day period): min, max, sum and count per bucket; avg = sum / count.
- `latest`: each server's newest reading per metric.
- `series_days`: which (metric, day) partitions a server has, so raw paging can skip empty days
  and purge can find every partition.

Rollups are recomputed, never incremented: once raw readings are written, every 60 s bucket
they touched is re-read (one `raw_minutes` row each) and written `USING TIMESTAMP` = the moment that read
started (microseconds), then every touched hour likewise from its 60 s rollups (`write` does it
at once; the packager calls `write_raw`, then `recompute_rollups` for the minutes dirtied by all
its writes of the last second or so, so a minute is re-read about once a second, not once per
write). Of two
recomputations racing (two packagers, a redelivery), the one whose read started last saw every
raw row written before it and carries the larger timestamp, so it wins: rollups converge to an
aggregate of the raw rows. `latest` is written `USING TIMESTAMP` = the reading's own time, so an
older reading arriving late never replaces a newer one.

Requests per write, fewest first: on a small node a request costs Cassandra about as much as
a hundred rows in it, so a write packs rows into UNLOGGED batches of up to MAX_BATCH_ROWS rows
(minute rows count their readings) spanning up to `partitions_per_batch` partitions
(`pack_partitions`); a partition's rows stay in one batch. Latest values and the raw rows go at once; then each server's runs of consecutive
touched minutes are re-read, servers with the same run sharing one `IN` read of up to
MAX_SERVERS_PER_READ partitions, and their rollups written; then the touched hours likewise.
The packager hands over many messages per write (group commit), so a write typically carries
many readings of each series.

On a cluster (`cassandra://h1,h2,h3/tasker?replication=3`) the keyspace keeps `replication`
copies of every row (NetworkTopologyStrategy) and every read and write runs at the URL's
`consistency`, QUORUM by default: a write acknowledged by two of three replicas is read back by
any later QUORUM read, and either survives one node being down. The driver learns the other
nodes from whichever listed host answers, and moves its requests off a node that goes away;
a request that was in flight on it fails as Unavailable and is retried by the caller.

Every request goes through the driver's async API (`execute_async` futures bridged to asyncio
with `call_soon_threadsafe`); only connect, prepare and shutdown, which the driver offers only
blocking, run in a worker thread. Nothing blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Collection, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from cassandra import ConsistencyLevel, RequestValidationException
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, tuple_factory

from backend import downsample as ds
from backend.ports import Latest, MinuteBucket, RawPage, Series, Unavailable, minutes_of
from tasker.domain import MAX_FUTURE_SKEW_MS, Reading

DEFAULT_PORT = 9042
HOUR_PERIOD_MS = 64 * ds.DAY_MS  # rollup_3600 partition span: at most 1,536 rows each
# Rows (or readings, for minute rows) per UNLOGGED batch: rollup rows of about 40 bytes each, or
# readings of about 13 bytes each (a map cell), stay well below Cassandra's default
# batch_size_fail_threshold (50 KiB).
MAX_BATCH_ROWS = 500
MAX_BATCH_READINGS = 2_000
MAX_IN_FLIGHT = 64  # concurrent requests per store
# Rollup recomputations (a multi-partition read, then its rollup rows) at once. A recomputation
# round re-reads thousands of rows; all at once it would fill every request slot and Cassandra's
# queues ahead of the raw writes that live readings wait for.
ROLLUP_GROUPS_IN_FLIGHT = 4
# Partitions one batch may span (the default of `partitions_per_batch`). Rollup and latest rows
# are one per partition, so this sets their requests per write: 100 cost Cassandra about a quarter
# less CPU per reading than 10. It is compose/local's unlogged_batch_across_partitions_warn_threshold;
# under Cassandra's own default (10) the node logs a warning about it, at most once a minute.
# On a multi-node cluster such batches make the coordinator fan out: lower it there.
MAX_PARTITIONS_PER_BATCH = 100
MIN_PARTITIONS_PER_BATCH = 10  # Cassandra's own warn threshold: small writes stay below it
SPREAD_OVER = 8  # requests a small write's rows of one statement are spread over (see _write_encoded)
MAX_SERVERS_PER_READ = 100  # partitions per multi-partition (IN) read of a rollup recomputation
MAX_BUCKETS_PER_READ = 200  # and at most this many (server, bucket) pairs per read
FLOAT32_MAX = 3.4028234663852886e38
YIELD_EVERY = 5_000  # readings a write handles before giving the event loop a turn
# How long this process trusts that it already recorded a (server, metric, day) in series_days.
SERIES_DAY_CACHE_S = 60.0

T = TypeVar("T")
log = logging.getLogger(__name__)

_KEYSPACE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")


@dataclass(frozen=True, slots=True)
class CassandraTarget:
    """What a `cassandra://` URL names: where the cluster is, and how to use it."""

    hosts: list[str]
    port: int
    keyspace: str
    replication: int | None
    """`?replication=N`: replicas of each row (NetworkTopologyStrategy, N in every data centre).
    None: a new keyspace gets 1 and an existing one keeps what it has."""
    consistency: int
    """`?consistency=NAME`: the ConsistencyLevel of every read and write (QUORUM by default: with
    one replica that is the replica, with three it is two of them, so reads see every write)."""


CONSISTENCY_LEVELS = {
    name: getattr(ConsistencyLevel, name)
    for name in ("ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE")
}
MAX_REPLICATION = 9


def parse_target(url: str) -> CassandraTarget:
    """The CassandraTarget of `cassandra://host[,host][:port]/keyspace[?replication=N]
    [&consistency=LEVEL]`; ValueError naming what is wrong."""
    expected = "expected cassandra://host[,host][:port]/keyspace[?replication=N&consistency=LEVEL]"
    parts = urlsplit(url)
    keyspace = parts.path.lstrip("/")
    if parts.scheme != "cassandra" or not parts.netloc:
        raise ValueError(f"time-series URL {url!r}: {expected}")
    hosts, ports = [], set()
    for entry in parts.netloc.split(","):
        host, sep, port = entry.rpartition(":") if ":" in entry else (entry, "", "")
        if sep and not port.isdigit() or not host:
            raise ValueError(f"time-series URL {url!r}: bad host {entry!r}; {expected}")
        hosts.append(host)
        if sep:
            ports.add(int(port))
    if len(ports) > 1:
        raise ValueError(f"time-series URL {url!r}: all hosts must use the same port")
    if not _KEYSPACE.fullmatch(keyspace):
        raise ValueError(
            f"time-series URL {url!r}: keyspace must be a letter then up to 47 letters, digits"
            f" or underscores; {expected}"
        )
    options = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(options) - {"replication", "consistency"})
    if unknown:
        raise ValueError(f"time-series URL {url!r}: unknown option {', '.join(unknown)}; {expected}")
    repeated = sorted(name for name, values in options.items() if len(values) > 1)
    if repeated:
        raise ValueError(f"time-series URL {url!r}: {', '.join(repeated)} given more than once")
    replication = None
    if "replication" in options:
        text = options["replication"][0]
        if not text.isdigit() or not 1 <= int(text) <= MAX_REPLICATION:
            raise ValueError(f"time-series URL {url!r}: replication={text!r} is not a number of"
                             f" replicas from 1 to {MAX_REPLICATION}")
        replication = int(text)
    level = options.get("consistency", ["QUORUM"])[0].upper()
    if level not in CONSISTENCY_LEVELS:
        raise ValueError(f"time-series URL {url!r}: consistency={level!r} is not one of"
                         f" {', '.join(CONSISTENCY_LEVELS)}")
    return CassandraTarget(hosts, ports.pop() if ports else DEFAULT_PORT, keyspace, replication,
                           CONSISTENCY_LEVELS[level])


def parse_url(url: str) -> tuple[list[str], int, str]:
    """(hosts, port, keyspace) of a `cassandra://` URL (see `parse_target`); ValueError if bad."""
    target = parse_target(url)
    return target.hosts, target.port, target.keyspace


def replication_map(replicas: int) -> dict[str, str]:
    """The keyspace replication for `replicas` copies of each row, in every data centre (the
    `replication_factor` shorthand of NetworkTopologyStrategy, which Cassandra expands per DC)."""
    return {"class": "NetworkTopologyStrategy", "replication_factor": str(replicas)}


def _schema(ks: str, ttl_s: int, replicas: int) -> list[str]:
    twcs = (
        "compaction = {'class': 'TimeWindowCompactionStrategy',"
        " 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}"
    )
    zstd = "compression = {'class': 'ZstdCompressor', 'chunk_length_in_kb': 64}"
    lz4 = "compression = {'class': 'LZ4Compressor', 'chunk_length_in_kb': 16}"
    rollup_columns = "min float, max float, sum double, count int"
    return [
        f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {_cql_map(replication_map(replicas))}",
        f"CREATE TABLE IF NOT EXISTS {ks}.raw_minutes ("
        " server_id text, metric text, day int, minute int, points map<int, float>,"
        " PRIMARY KEY ((server_id, metric, day), minute))"
        f" WITH CLUSTERING ORDER BY (minute DESC) AND {twcs} AND {zstd}"
        f" AND default_time_to_live = {ttl_s}",
        f"CREATE TABLE IF NOT EXISTS {ks}.rollup_60 ("
        f" server_id text, metric text, period int, start_ms bigint, {rollup_columns},"
        " PRIMARY KEY ((server_id, metric, period), start_ms))"
        f" WITH {twcs} AND {lz4} AND default_time_to_live = {ttl_s}",
        f"CREATE TABLE IF NOT EXISTS {ks}.rollup_3600 ("
        f" server_id text, metric text, period int, start_ms bigint, {rollup_columns},"
        " PRIMARY KEY ((server_id, metric, period), start_ms))"
        f" WITH {lz4} AND default_time_to_live = {ttl_s}",
        # Overwritten at every batch: leveled compaction keeps a row in few SSTables.
        f"CREATE TABLE IF NOT EXISTS {ks}.latest ("
        " server_id text, metric text, ts bigint, value float, PRIMARY KEY (server_id, metric))"
        " WITH compaction = {'class': 'LeveledCompactionStrategy'}",
        f"CREATE TABLE IF NOT EXISTS {ks}.series_days ("
        " server_id text, metric text, day int, PRIMARY KEY (server_id, metric, day))"
        f" WITH default_time_to_live = {ttl_s + _TTL_TABLES['series_days']}",
    ]


def _cql_map(values: dict[str, str]) -> str:
    return "{" + ", ".join(f"'{k}': '{v}'" for k, v in values.items()) + "}"


def _replicas_of(replication: dict[str, str]) -> int | None:
    """Replicas per data centre of a keyspace's replication map (as Cassandra stores it: NTS
    lists each data centre), or None when they differ between data centres."""
    counts = {v for k, v in replication.items() if k not in ("class",)}
    return int(counts.pop()) if len(counts) == 1 and next(iter(counts)).isdigit() else None


# Tables whose default TTL follows retention_days (migrated at start when it changed), with
# what they keep beyond it: the partition index outlives the last rows it points to.
_TTL_TABLES = {"raw_minutes": 0, "rollup_60": 0, "rollup_3600": 0, "series_days": 2 * 86_400}

_STATEMENTS = {
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
    "insert_latest": "INSERT INTO {ks}.latest (server_id, metric, ts, value) VALUES (?, ?, ?, ?)"
    " USING TIMESTAMP ?",
    "select_latest_of": "SELECT server_id, metric, ts, value FROM {ks}.latest WHERE server_id = ?",
    "select_latest_all": "SELECT server_id, metric, ts, value FROM {ks}.latest",
    "select_days": "SELECT metric, day FROM {ks}.series_days WHERE server_id = ?",
    "select_days_of": "SELECT day FROM {ks}.series_days"
    " WHERE server_id = ? AND metric = ? AND day >= ? AND day <= ?",
    "delete_raw": "DELETE FROM {ks}.raw_minutes WHERE server_id = ? AND metric = ? AND day = ?",
    "delete_r60": "DELETE FROM {ks}.rollup_60 WHERE server_id = ? AND metric = ? AND period = ?",
    "delete_r3600": "DELETE FROM {ks}.rollup_3600 WHERE server_id = ? AND metric = ? AND period = ?",
    "delete_latest": "DELETE FROM {ks}.latest USING TIMESTAMP ? WHERE server_id = ?",
    "delete_days": "DELETE FROM {ks}.series_days WHERE server_id = ?",
}

_ROLLUP_SELECT = {60: ("select_r60", ds.DAY_MS), 3600: ("select_r3600", HOUR_PERIOD_MS)}


def _now_us() -> int:
    return time.time_ns() // 1_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def pack_partitions(
    by_partition: Iterable[Sequence[T]], max_rows: int, max_partitions: int,
    weight: Callable[[T], int] | None = None,
) -> Iterator[list[T]]:
    """Rows grouped by partition -> batches of at most `max_rows` rows (or of rows weighing
    `max_rows` in all, by `weight`) spanning at most `max_partitions` partitions, yielded as they
    fill. A partition's rows stay together unless they alone exceed `max_rows`; then full chunks
    of it go alone. Few requests matter most: on a small node each request costs Cassandra far
    more than a row."""
    current: list[T] = []
    size = parts = 0
    for rows in by_partition:
        weights = [weight(row) for row in rows] if weight else [1] * len(rows)
        n = sum(weights)
        start = 0
        while n > max_rows:  # full chunks go alone; the remainder joins the batches below
            chunk_start, chunk_size = start, 0
            while start < len(rows) and (start == chunk_start or chunk_size + weights[start] <= max_rows):
                chunk_size += weights[start]
                start += 1
            yield list(rows[chunk_start:start])
            n -= chunk_size
        if start == len(rows):
            continue
        if current and (size + n > max_rows or parts >= max_partitions):
            yield current
            current, size, parts = [], 0, 0
        current.extend(rows[start:] if start else rows)
        size += n
        parts += 1
    if current:
        yield current


Encoded = tuple[bytes, ...]
"""A row of bind values already serialized to the protocol's bytes, in statement order."""

_INT32 = struct.Struct(">i").pack


def _row_encoder(statement: PreparedStatement) -> Callable[[Iterable[Sequence[Any]]], list[Encoded]]:
    """Rows of plain values -> encoded rows, by each column's own type (as the driver's
    `BoundStatement.bind` does, without building a BoundStatement per row)."""
    version = statement.protocol_version
    serializers = [column.type.serialize for column in statement.column_metadata]

    def encode(rows: Iterable[Sequence[Any]]) -> list[Encoded]:
        return [tuple([serialize(v, version) for serialize, v in zip(serializers, row)]) for row in rows]

    return encode


def _batch_of(statement: PreparedStatement, rows: Sequence[Encoded]) -> BatchStatement:
    """An UNLOGGED batch of `statement` over encoded rows, routed by the first row's partition.

    `BatchStatement.add` would bind every row again (a BoundStatement and a named tuple per
    column each), which cost more client CPU than everything else in a write; the rows go in
    with the driver's internal `_add_statement_and_params` instead (stable throughout
    cassandra-driver 3.x; the contract tests catch a change)."""
    batch = BatchStatement(batch_type=BatchType.UNLOGGED)
    batch.keyspace = statement.keyspace
    first = rows[0]
    batch.routing_key = [first[i] for i in statement.routing_key_indexes or ()] or None
    add = batch._add_statement_and_params
    query_id = statement.query_id
    for row in rows:
        add(True, query_id, row)
    return batch


_MAP_STRUCTS: dict[int, struct.Struct] = {}


def _encode_points(points: list[tuple[int, float]]) -> bytes:
    """A `map<int, float>` value in the native protocol's form: the entry count, then each key
    and value with its length, all in one `struct.pack` (the driver's own MapType.serialize
    costs several times more per entry)."""
    n = len(points)
    packer = _MAP_STRUCTS.get(n)
    if packer is None:
        packer = struct.Struct(">i" + "iiif" * n)
        if n <= 1_024:
            _MAP_STRUCTS[n] = packer
    flat: list[float] = [n]
    for ts, value in points:
        flat += (4, ts, 4, value)
    return packer.pack(*flat)


def _points_in(row: Encoded) -> int:
    """Readings in an encoded `insert_raw` row (its map: 4 bytes of count, 16 per entry)."""
    return (len(row[0]) - 4) >> 4


def _encode_raw(partitions: dict[tuple[str, str, int], dict[int, float]]) -> Iterator[list[Encoded]]:
    """Encoded `insert_raw` rows, a row per touched minute, partition by partition: the hot path
    of every write, so the partition key is encoded once per partition."""
    int32, minute_ms = _INT32, ds.MINUTE_MS
    for (server_id, metric, day), values in partitions.items():
        s, m, d = server_id.encode(), metric.encode(), int32(day)
        minutes: dict[int, list[tuple[int, float]]] = defaultdict(list)
        for ts, v in values.items():
            minutes[ts // minute_ms].append((ts, v))
        yield [(_encode_points(points), s, m, d, int32(minute)) for minute, points in minutes.items()]


def _map_items(points: Any) -> list[tuple[int, float]]:
    """(key, value) pairs of a map the driver decoded (an OrderedMapSerializedKey, whose public
    Mapping API re-serializes every key on lookup; its item list is read directly, with the
    public API as the fallback). None (no cells) gives []."""
    if not points:
        return []
    items = getattr(points, "_items", None)
    return items if isinstance(items, list) else list(points.items())


def _runs(offsets: Sequence[int], width: int) -> list[tuple[int, int]]:
    """Sorted bucket starts -> [lo, hi) ranges of consecutive buckets."""
    runs: list[tuple[int, int]] = []
    for start in offsets:
        if runs and runs[-1][1] == start:
            runs[-1] = (runs[-1][0], start + width)
        else:
            runs.append((start, start + width))
    return runs


def _bucket_runs(
    partitions: Iterable[tuple[tuple[str, str, int], Iterable[int]]], width: int
) -> dict[tuple[str, int, int, int], list[str]]:
    """Touched partitions with the ms into the day they touched (raw timestamps or bucket
    starts) -> {(metric, day, lo, hi): servers}: each server's runs of consecutive touched
    buckets, so servers touched alike share a read."""
    runs: dict[tuple[str, int, int, int], list[str]] = defaultdict(list)
    for (server_id, metric, day), values in partitions:
        starts = sorted({ts - ts % width for ts in values})
        for lo, hi in _runs(starts, width):
            runs[(metric, day, lo, hi)].append(server_id)
    return runs


def _read_groups(
    runs: dict[tuple[str, int, int, int], list[str]], width: int
) -> list[tuple[tuple[str, int, int, int], list[str]]]:
    """Split each run's servers into multi-partition reads of at most MAX_SERVERS_PER_READ
    servers and MAX_BUCKETS_PER_READ buckets, so no single read returns too many rows."""
    groups = []
    for key, servers in runs.items():
        buckets = (key[3] - key[2]) // width
        per_read = max(1, min(MAX_SERVERS_PER_READ, MAX_BUCKETS_PER_READ // buckets))
        groups.extend((key, servers[i:i + per_read]) for i in range(0, len(servers), per_read))
    return groups


def _periods(from_ms: int, to_ms: int, span_ms: int) -> range:
    """Partition numbers of `span_ms`-wide partitions that overlap [from_ms, to_ms)."""
    return range(from_ms // span_ms, (to_ms - 1) // span_ms + 1)


class CassandraTimeSeries:
    """TimeSeriesStore over Cassandra at `url` (`cassandra://host[,host][:port]/keyspace`, with
    `?replication=N&consistency=LEVEL` as `parse_target` describes).

    `retention_days` is the TTL of raw readings and rollups; changing it migrates the tables'
    default TTL at the next start (rows already written keep theirs).
    """

    def __init__(self, url: str, retention_days: int = 400,
                 partitions_per_batch: int = MAX_PARTITIONS_PER_BATCH) -> None:
        target = parse_target(url)
        self._hosts, self._port, self._keyspace = target.hosts, target.port, target.keyspace
        self._replication, self._consistency = target.replication, target.consistency
        self.partitions_per_batch = partitions_per_batch
        if retention_days < 1:
            raise ValueError(f"retention_days must be at least 1, got {retention_days}")
        self._ttl_s = retention_days * 86_400
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}
        self._encoders: dict[str, Callable[[Iterable[Sequence[Any]]], list[Encoded]]] = {}
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._rollup_slots = asyncio.Semaphore(ROLLUP_GROUPS_IN_FLIGHT)
        self._known_days: dict[tuple[str, str, int], float] = {}

    def _where(self) -> str:
        return f"time-series store (Cassandra {','.join(self._hosts)}:{self._port}/{self._keyspace})"

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect, create the keyspace (NetworkTopologyStrategy, the URL's replication or 1)
        and tables if missing, change an existing keyspace's replication when the URL names
        another, migrate the TTL, and prepare the statements. Idempotent."""
        if self._session is not None:
            return
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=self._consistency,
            row_factory=tuple_factory,
            request_timeout=15.0,
        )
        cluster = Cluster(
            self._hosts,
            port=self._port,
            protocol_version=4,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=5,
            # The driver's default backoff grows to 10 minutes; a packager waiting on the store
            # should notice it is back within seconds.
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:  # NoHostAvailable, timeouts, refused connections
            await asyncio.to_thread(cluster.shutdown)
            raise Unavailable(f"{self._where()}: cannot connect: {exc}") from exc
        self._cluster, self._session = cluster, session
        try:
            schema = _schema(self._keyspace, self._ttl_s, self._replication or 1)
            await self._execute(schema[0])
            await self._migrate_replication()
            for ddl in schema[1:]:
                await self._execute(ddl)
            await self._migrate_ttl()
            self._prepared = await asyncio.to_thread(self._prepare_all)
            self._encoders = {name: _row_encoder(statement) for name, statement in self._prepared.items()}
            await self._migrate_legacy_readings()
        except BaseException:
            await self.close()
            raise

    def _prepare_all(self) -> dict[str, PreparedStatement]:
        assert self._session is not None
        try:
            return {
                name: self._session.prepare(cql.format(ks=self._keyspace))
                for name, cql in _STATEMENTS.items()
            }
        except RequestValidationException:
            raise
        except Exception as exc:
            raise Unavailable(f"{self._where()}: cannot prepare statements: {exc}") from exc

    async def _migrate_replication(self) -> None:
        """Give the keyspace the URL's replication when it has another. Rows written before
        reach the new replicas only through a repair (`nodetool repair` on each node), which
        this does not run: it says so."""
        if self._replication is None:
            return
        rows = await self._execute(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = %s", (self._keyspace,)
        )
        wanted = replication_map(self._replication)
        current = dict(rows[0][0]) if rows else {}
        if _replicas_of(current) == self._replication and current.get("class", "").endswith("NetworkTopologyStrategy"):
            return
        await self._execute(f"ALTER KEYSPACE {self._keyspace} WITH replication = {_cql_map(wanted)}")
        log.warning("%s: replication changed from %s to %d replicas; run `nodetool repair %s` on every"
                    " node so rows written before have them all", self._where(), current or "none",
                    self._replication, self._keyspace)

    async def _migrate_ttl(self) -> None:
        rows = await self._execute(
            "SELECT table_name, default_time_to_live FROM system_schema.tables WHERE keyspace_name = %s",
            (self._keyspace,),
        )
        current = dict(rows)
        for table, extra in _TTL_TABLES.items():
            if current.get(table) != self._ttl_s + extra:
                await self._execute(
                    f"ALTER TABLE {self._keyspace}.{table} WITH default_time_to_live = {self._ttl_s + extra}"
                )

    async def _migrate_legacy_readings(self) -> None:
        """Copy a `readings` table of the earlier layout (a row per reading) into `raw_minutes`,
        partition by partition as `series_days` lists them, then drop it. The copy is made of
        upserts, and the table goes only once every partition is copied, so an interrupted
        migration is simply done again at the next start (also when two processes start at
        once). Copied readings get the table's full TTL anew."""
        ks = self._keyspace
        found = await self._execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s AND table_name = 'readings'",
            (ks,),
        )
        if not found:
            return
        log.warning("%s: migrating readings to the minute-row layout (raw_minutes)", self._where())
        assert self._session is not None
        select = await asyncio.to_thread(
            self._session.prepare, f"SELECT ts, value FROM {ks}.readings WHERE server_id = ? AND metric = ? AND day = ?"
        )
        copied = 0
        for server_id, metric, day in await self._execute(f"SELECT server_id, metric, day FROM {ks}.series_days"):
            rows = await self._execute(select, (server_id, metric, day))
            if rows:
                await self._write_encoded("insert_raw", _encode_raw({(server_id, metric, day): dict(rows)}), 1,
                                          _points_in, MAX_BATCH_READINGS)
                copied += len(rows)
        await self._execute(f"DROP TABLE IF EXISTS {ks}.readings")
        log.warning("%s: migrated %d readings; the readings table is dropped", self._where(), copied)

    async def close(self) -> None:
        cluster, self._cluster, self._session = self._cluster, None, None
        self._prepared = {}
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def ping(self) -> None:
        await self._execute("SELECT release_version FROM system.local")

    # --- requests ------------------------------------------------------------------------------

    async def _execute(self, statement: Any, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run one statement through the driver's async API; every page of its rows."""
        session = self._session
        if session is None:
            raise Unavailable(f"{self._where()}: not started")
        async with self._slots:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[list[tuple]] = loop.create_future()
            rows: list[tuple] = []
            try:
                response = session.execute_async(statement, params)
            except Exception as exc:  # e.g. the session was shut down
                raise Unavailable(f"{self._where()}: {exc}") from exc

            def settle(result: list[tuple] | None, error: BaseException | None) -> None:
                if done.done():  # the awaiting task was cancelled
                    return
                if error is None:
                    done.set_result(result or [])
                else:
                    done.set_exception(error)

            # Called on the driver's I/O thread (or here, if already done): hand over to the loop.
            def on_page(page: Any) -> None:
                if page:
                    rows.extend(page)
                if response.has_more_pages:
                    response.start_fetching_next_page()
                else:
                    loop.call_soon_threadsafe(settle, rows, None)

            def on_error(exc: BaseException) -> None:
                loop.call_soon_threadsafe(settle, None, exc)

            response.add_callbacks(on_page, on_error)
            try:
                return await done
            except RequestValidationException:
                raise  # a bug in our CQL, not an outage
            except Exception as exc:
                raise Unavailable(f"{self._where()}: {type(exc).__name__}: {exc}") from exc

    def _statement(self, name: str) -> PreparedStatement:
        if self._session is None or not self._prepared:
            raise Unavailable(f"{self._where()}: not started")
        return self._prepared[name]

    async def _run(self, name: str, params: Sequence[Any]) -> list[tuple]:
        return await self._execute(self._statement(name), params)

    async def _write_rows(self, name: str, by_partition: Collection[Sequence[Sequence[Any]]]) -> None:
        """Rows of plain values of one statement, grouped by partition, in as few requests as
        the batch limits allow (see `pack_partitions`)."""
        encode = self._encoders[name]
        await self._write_encoded(name, (encode(rows) for rows in by_partition), len(by_partition))

    async def _write_encoded(self, name: str, by_partition: Iterable[Sequence[Encoded]], partitions: int,
                             weight: Callable[[Encoded], int] | None = None,
                             max_rows: int = MAX_BATCH_ROWS) -> None:
        """Encoded rows of one statement, grouped by `partitions` partitions, as UNLOGGED
        batches sent while the next ones are built (each row keeps its own USING TIMESTAMP).
        The loop gets a turn between batches, so a write of many thousand rows never holds it
        for long. A small write is spread over at least SPREAD_OVER requests, which Cassandra
        runs side by side (lower latency); a large one packs up to `partitions_per_batch`
        partitions a batch (less CPU per row)."""
        statement = self._statement(name)
        per_batch = min(self.partitions_per_batch, max(MIN_PARTITIONS_PER_BATCH, -(-partitions // SPREAD_OVER)))
        tasks: list[asyncio.Task[list[tuple]]] = []
        try:
            async with asyncio.TaskGroup() as group:
                for rows in pack_partitions(by_partition, max_rows, per_batch, weight):
                    tasks.append(group.create_task(self._execute(_batch_of(statement, rows))))
                    await asyncio.sleep(0)
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None

    async def _all(self, work: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Await coroutines concurrently (the semaphore bounds requests in flight); on the
        first failure cancel the rest and raise that failure itself."""
        tasks: list[asyncio.Task[T]] = []
        try:
            async with asyncio.TaskGroup() as group:
                for coroutine in work:
                    tasks.append(group.create_task(coroutine))
        except BaseExceptionGroup as failed:
            raise failed.exceptions[0] from None
        return [task.result() for task in tasks]

    # --- writes --------------------------------------------------------------------------------

    async def write(self, readings: Sequence[Reading]) -> None:
        """Upsert readings and latest values, then recompute the 60 s and 3600 s rollups they
        touch. Returns once all of it is acknowledged; raises Unavailable otherwise (the caller
        retries the whole batch, which is idempotent), ValueError for a value out of range."""
        await self.write_raw(readings)
        await self.recompute_rollups(minutes_of(readings))

    async def recompute_rollups(self, minutes: Collection[MinuteBucket],
                                hours_of: Collection[MinuteBucket] | None = None) -> None:
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
        await self._recompute_hours(hours)

    async def write_raw(self, readings: Sequence[Reading]) -> None:
        """Upsert readings, latest values and the partition index, leaving the rollups to
        `recompute_rollups`."""
        partitions: dict[tuple[str, str, int], dict[int, float]] = defaultdict(dict)
        if not readings:
            return
        day_ms = ds.DAY_MS
        for start in range(0, len(readings), YIELD_EVERY):
            if start:
                await asyncio.sleep(0)  # a large write must not hold the event loop
            for r in readings[start:start + YIELD_EVERY]:
                value = r.value
                if not -FLOAT32_MAX <= value <= FLOAT32_MAX:
                    raise ValueError(f"reading {r.key}: value {value} is not a finite 32-bit float")
                # ts within the day, as the `readings` table stores it
                partitions[(r.server_id, r.metric, r.ts_ms // day_ms)][r.ts_ms % day_ms] = value

        latest: dict[tuple[str, str], tuple[int, float]] = {}
        for (s, m, day), values in partitions.items():
            ts = max(values)
            if day * day_ms + ts >= latest.get((s, m), (-1, 0.0))[0]:
                latest[(s, m)] = (day * day_ms + ts, values[ts])
        by_server: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for (s, m), (ts, v) in latest.items():
            by_server[s].append((s, m, ts, v, ts * 1_000))

        # Latest values need nothing else; the rollups need the raw rows in place first.
        await self._all([
            self._write_encoded("insert_raw", _encode_raw(partitions), len(partitions),
                                _points_in, MAX_BATCH_READINGS),
            self._write_rows("insert_latest", by_server.values()),
            self._record_days(partitions),
        ])

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
        await self._write_rows("insert_day", by_server.values())
        if len(known) > 100_000:
            known.clear()
        for key in new:
            known[key] = now

    async def _recompute_minutes(self, runs: dict[tuple[str, int, int, int], list[str]]) -> None:
        """Recompute every minute bucket of the runs from the raw rows."""
        await self._all(
            self._recompute_minute_group(metric, day, lo, hi, servers)
            for (metric, day, lo, hi), servers in _read_groups(runs, ds.MINUTE_MS)
        )

    async def _recompute_minute_group(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        """Recompute the minutes [lo, hi) (ms into `day`) of several servers from their raw rows:
        one multi-partition read, then the rollup rows, batched by partition."""
        async with self._rollup_slots:
            await self._recompute_minutes_of(metric, day, lo, hi, servers)

    async def _recompute_minutes_of(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        read_at = _now_us()  # before the read: a later read always carries a later timestamp
        minute_ms = ds.MINUTE_MS
        rows = await self._run("select_raw_in", (servers, metric, day, lo // minute_ms, hi // minute_ms))
        base = day * ds.DAY_MS
        rollups: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        for server_id, minute, points in rows:
            values = [v for _, v in _map_items(points)]
            if values:
                rollups[server_id].append((server_id, metric, day, base + minute * minute_ms,
                                           min(values), max(values), sum(values), len(values), read_at))
        await self._write_rows("insert_r60", rollups.values())

    async def _recompute_hours(self, hours: dict[tuple[str, str, int], set[int]]) -> None:
        """Recompute every touched hour bucket from its 60 s rollups."""
        runs: dict[tuple[str, int, int, int], list[str]] = defaultdict(list)
        for (server_id, metric, day), offsets in hours.items():
            for lo, hi in _runs(sorted(offsets), ds.HOUR_MS):
                runs[(metric, day, lo, hi)].append(server_id)
        await self._all(
            self._recompute_hour_group(metric, day, lo, hi, servers)
            for (metric, day, lo, hi), servers in _read_groups(runs, ds.HOUR_MS)
        )

    async def _recompute_hour_group(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        """Recompute the hours [lo, hi) (ms into `day`) of several servers from their 60 s
        rollups: one multi-partition read, then the rollup rows."""
        async with self._rollup_slots:
            await self._recompute_hours_of(metric, day, lo, hi, servers)

    async def _recompute_hours_of(self, metric: str, day: int, lo: int, hi: int, servers: list[str]) -> None:
        base = day * ds.DAY_MS
        read_at = _now_us()
        rows = await self._run("select_r60_in", (servers, metric, day, base + lo, base + hi))
        minutes: dict[str, list[tuple[int, float, float, float, int]]] = defaultdict(list)
        for server_id, *rollup in rows:
            minutes[server_id].append(tuple(rollup))  # type: ignore[arg-type]
        by_partition: dict[tuple[str, int], list[tuple[Any, ...]]] = defaultdict(list)
        for server_id, found in minutes.items():
            for r in ds.merge(found, ds.HOUR_MS):
                period = r.start_ms // HOUR_PERIOD_MS
                by_partition[(server_id, period)].append(
                    (server_id, metric, period, r.start_ms, r.min, r.max, r.sum, r.count, read_at)
                )
        await self._write_rows("insert_r3600", by_partition.values())

    # --- reads ---------------------------------------------------------------------------------

    async def history(
        self, server_id: str, metric: str, from_ms: int, to_ms: int, max_points: int
    ) -> Series:
        """Downsampled [from_ms, to_ms); see `backend.downsample.choose_resolution`."""
        res = ds.choose_resolution(from_ms, to_ms, max_points)
        if res == 1:
            days = list(_periods(from_ms, to_ms, ds.DAY_MS))
            pages = await self._all(
                self._run("select_raw_all", (server_id, metric, day, *self._minutes_of(day, from_ms, to_ms)))
                for day in days
            )
            rows = sorted(
                (day * ds.DAY_MS + ts, v, v, v, 1)
                for day, page in zip(days, pages) for (points,) in page for ts, v in _map_items(points)
                if from_ms <= day * ds.DAY_MS + ts < to_ms
            )
        else:
            name, span = _ROLLUP_SELECT[res]
            lo = ds.bucket_start(from_ms, res * ds.SECOND_MS)
            pages = await self._all(
                self._run(name, (server_id, metric, period, lo, to_ms)) for period in _periods(lo, to_ms, span)
            )
            rows = [row for page in pages for row in page]
        return ds.downsample(rows, res, from_ms, to_ms, max_points)

    async def raw(
        self,
        server_id: str,
        metric: str,
        from_ms: int,
        to_ms: int,
        limit: int,
        cursor: str | None = None,
    ) -> RawPage:
        """Raw readings in [from_ms, to_ms), newest first, across day partitions; ValueError
        for a garbled cursor."""
        upper = ds.raw_page_upper(from_ms, to_ms, limit, cursor)
        if upper <= from_ms:
            return RawPage([], None)
        days = await self._run("select_days_of", (server_id, metric, ds.day_of(from_ms), ds.day_of(upper - 1)))
        found: list[Reading] = []
        for (day,) in sorted(days, reverse=True):
            base = day * ds.DAY_MS
            first, last = self._minutes_of(day, from_ms, upper)
            # Minute rows newest first, a few at a time: a row holds any number of readings,
            # and only the first and last minute of the range can hold none inside it.
            rows_per_read = 4
            while last >= first and len(found) <= limit:
                rows = await self._run("select_raw", (server_id, metric, day, first, last, rows_per_read))
                for _, points in rows:
                    found.extend(Reading(server_id, metric, base + ts, v)
                                 for ts, v in sorted(_map_items(points), reverse=True)
                                 if from_ms <= base + ts < upper)
                if len(rows) < rows_per_read:
                    break
                last = rows[-1][0] - 1
                rows_per_read = min(rows_per_read * 4, limit + 2)
            if len(found) > limit:
                break
        page = found[:limit]
        return RawPage(page, ds.encode_cursor(page[-1].ts_ms) if len(found) > limit else None)

    @staticmethod
    def _minutes_of(day: int, from_ms: int, to_ms: int) -> tuple[int, int]:
        """First and last minute of `day` (inclusive) that [from_ms, to_ms) overlaps."""
        base = day * ds.DAY_MS
        return (max(from_ms - base, 0) // ds.MINUTE_MS,
                (min(to_ms - base, ds.DAY_MS) - 1) // ds.MINUTE_MS)

    async def latest(self, server_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Latest]:
        """Newest reading per (server, metric), for all servers or the ones given."""
        if server_ids is None:
            rows = await self._run("select_latest_all", ())
        else:
            pages = await self._all(self._run("select_latest_of", (s,)) for s in set(server_ids))
            rows = [row for page in pages for row in page]
        return {(s, m): Latest(ts, v) for s, m, ts, v in rows}

    async def purge(self, server_id: str) -> None:
        """Delete every reading, rollup and latest value of a server. The index of its
        partitions goes last, so a purge interrupted by an outage can simply be repeated."""
        series_days = await self._run("select_days", (server_id,))
        hour_periods = {(m, day * ds.DAY_MS // HOUR_PERIOD_MS) for m, day in series_days}
        await self._all(
            [self._run("delete_raw", (server_id, m, day)) for m, day in series_days]
            + [self._run("delete_r60", (server_id, m, day)) for m, day in series_days]
            + [self._run("delete_r3600", (server_id, m, p)) for m, p in hour_periods]
            # `latest` cells carry their reading's time, which may run ahead of our clock.
            + [self._run("delete_latest", ((now_ms() + 2 * MAX_FUTURE_SKEW_MS) * 1_000, server_id))]
        )
        await self._run("delete_days", (server_id,))
        for key in [k for k in self._known_days if k[0] == server_id]:
            del self._known_days[key]
