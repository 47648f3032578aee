"""Rows packed into few requests: UNLOGGED batches per group of partitions, bound by hand.

On a small node a request costs Cassandra about as much as a hundred rows in it, so a write
packs rows into UNLOGGED batches of up to MAX_BATCH_ROWS rows (minute rows count their
readings, up to MAX_BATCH_READINGS) spanning up to `partitions_per_batch` partitions
(`pack_partitions`); a partition's rows stay in one batch. Rows are serialized here, straight
to the protocol's bytes, because binding them through the driver's public API cost more client
CPU than everything else in a write.
"""

from __future__ import annotations

import functools
import struct
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from cassandra.query import BatchStatement, BatchType, PreparedStatement

from backend import downsample as ds
from backend.adapters.cassandra.driver import CassandraSession, all_of

# Rows (or readings, for minute rows) per UNLOGGED batch: rollup rows of about 40 bytes each, or
# readings of about 13 bytes each (a map cell), stay well below Cassandra's default
# batch_size_fail_threshold (50 KiB).
MAX_BATCH_ROWS = 500
MAX_BATCH_READINGS = 2_000
# Partitions one batch may span (the default of `partitions_per_batch`). Rollup and latest rows
# are one per partition, so this sets their requests per write: 100 cost Cassandra about a quarter
# less CPU per reading than 10. It is compose/local's unlogged_batch_across_partitions_warn_threshold;
# under Cassandra's own default (10) the node logs a warning about it, at most once a minute.
# On a multi-node cluster such batches make the coordinator fan out: lower it there.
MAX_PARTITIONS_PER_BATCH = 100
MIN_PARTITIONS_PER_BATCH = 10  # Cassandra's own warn threshold: small writes stay below it
SPREAD_OVER = 8  # requests a small write's rows of one statement are spread over (see _write_encoded)

T = TypeVar("T")

Encoded = tuple[bytes, ...]
"""A row of bind values already serialized to the protocol's bytes, in statement order."""

_INT32 = struct.Struct(">i").pack


class BatchWriter:
    """Writes rows of one prepared statement, grouped by partition, in as few requests as the
    batch limits allow."""

    def __init__(self, session: CassandraSession, partitions_per_batch: int = MAX_PARTITIONS_PER_BATCH) -> None:
        self._session = session
        self.partitions_per_batch = partitions_per_batch

    async def write_rows(self, name: str, by_partition: Collection[Sequence[Sequence[Any]]]) -> None:
        """Rows of plain values of the statement `name`, grouped by partition (see
        `pack_partitions`)."""
        encode = _row_encoder(self._session.statement(name))
        await self._write_encoded(name, (encode(rows) for rows in by_partition), len(by_partition))

    async def write_minutes(self, partitions: dict[tuple[str, str, int], dict[int, float]]) -> None:
        """Readings as `raw_minutes` rows, from {(server, metric, day): {ms into the day: value}}:
        a row per touched minute, batches weighed by their readings."""
        await self._write_encoded(
            "insert_raw", _encode_raw(partitions), len(partitions), _points_in, MAX_BATCH_READINGS
        )

    async def _write_encoded(
        self,
        name: str,
        by_partition: Iterable[Sequence[Encoded]],
        partitions: int,
        weight: Callable[[Encoded], int] | None = None,
        max_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        """Encoded rows of one statement, grouped by `partitions` partitions, as UNLOGGED
        batches sent while the next ones are built (each row keeps its own USING TIMESTAMP).
        The loop gets a turn between batches, so a write of many thousand rows never holds it
        for long. A small write is spread over at least SPREAD_OVER requests, which Cassandra
        runs side by side (lower latency); a large one packs up to `partitions_per_batch`
        partitions a batch (less CPU per row)."""
        statement = self._session.statement(name)
        per_batch = min(self.partitions_per_batch, max(MIN_PARTITIONS_PER_BATCH, -(-partitions // SPREAD_OVER)))
        batches = pack_partitions(by_partition, max_rows, per_batch, weight)
        await all_of((self._session.execute(_batch_of(statement, rows)) for rows in batches), paced=True)


def pack_partitions(
    by_partition: Iterable[Sequence[T]],
    max_rows: int,
    max_partitions: int,
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


@functools.lru_cache(maxsize=64)  # a store's few statements, kept across a reconnect or two
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
