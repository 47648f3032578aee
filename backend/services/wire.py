"""The encoding of readings in broker messages (work queues and live events).

One message carries many readings of one metric, columnar, with each server id written once:

    {"v": 1, "metric": "power", "sent_ms": 1767000000000,
     "servers": ["srv_a...", "srv_b..."],
     "server": [0, 1, 0], "ts": [1767000000000, ...], "value": [212.5, ...]}

JSON keeps it inspectable in the RabbitMQ console; orjson encodes and decodes it about five
times faster than the standard library (it is on the path of every reading, twice). Columns and
the server table keep a 2,000-reading message near 40 kB. The same bytes are re-published as the
live event once stored, so the packager never re-encodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from backend.ports import Undecodable
from tasker.domain import METRICS, Reading

VERSION = 1
READINGS_PER_MESSAGE = 2_000
"""Readings per broker message: large enough to amortise a publish confirm and a store batch,
small enough that a redelivery after a crash re-writes little."""

LIVE_CHANNEL = "live.readings"
"""Broker event channel of readings once stored; every api process relays them to websockets."""
REGISTRY_CHANNEL = "registry.changes"
"""Broker event channel of server added/updated/removed events."""
PLAN_CHANNEL = "plan.changes"
"""Broker event channel of task and plan events: `submitted` and `cancelled` (from the api,
waking the scheduler), `replanned` and `requeued` (from the scheduler), `running`, `paused`,
`resumed`, `done` and `failed` (agents' reports) and `measured` (the task meter); every api
process relays them to its websocket clients as `plan` frames."""


def queue_for(metric: str) -> str:
    """The durable work queue that carries readings of `metric`."""
    return f"readings.{metric}"


@dataclass(frozen=True, slots=True)
class ReadingsMessage:
    metric: str
    sent_ms: int
    readings: list[Reading]


@dataclass(slots=True)
class ReadingColumns:
    """Readings of one metric as the message's columns: each server id once in `servers`,
    then per reading its index there, its ts and its value. Ingest validates straight into
    this form, so no Reading object is made between the POST body and the message."""

    servers: list[str] = field(default_factory=list)
    server: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def append(self, server_id: str, ts_ms: int, value: float) -> None:
        i = self._index.get(server_id)
        if i is None:
            i = self._index[server_id] = len(self.servers)
            self.servers.append(server_id)
        self.server.append(i)
        self.ts.append(ts_ms)
        self.value.append(value)

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def merged(cls, parts: Sequence[ReadingColumns]) -> ReadingColumns:
        """One set of columns holding every part's readings, in order."""
        out = cls()
        index, servers = out._index, out.servers
        for part in parts:
            mapping = []
            for server_id in part.servers:
                i = index.get(server_id)
                if i is None:
                    i = index[server_id] = len(servers)
                    servers.append(server_id)
                mapping.append(i)
            out.server.extend([mapping[i] for i in part.server])
            out.ts.extend(part.ts)
            out.value.extend(part.value)
        return out

    def readings(self, metric: str) -> list[Reading]:
        return make_readings(metric, self.servers, self.server, self.ts, self.value)

    def chunks(self, size: int = READINGS_PER_MESSAGE) -> list[ReadingColumns]:
        """Consecutive pieces of at most `size` readings, each with its own server table."""
        if len(self) <= size:
            return [self]
        pieces = []
        for start in range(0, len(self), size):
            piece = ReadingColumns()
            for i, t, v in zip(
                self.server[start : start + size], self.ts[start : start + size], self.value[start : start + size]
            ):
                piece.append(self.servers[i], t, v)
            pieces.append(piece)
        return pieces


def encode_columns(metric: str, columns: ReadingColumns, sent_ms: int) -> bytes:
    """One message body for the readings of `columns`, which all have `metric`."""
    return orjson.dumps(
        {
            "v": VERSION,
            "metric": metric,
            "sent_ms": sent_ms,
            "servers": columns.servers,
            "server": columns.server,
            "ts": columns.ts,
            "value": columns.value,
        }
    )


def encode_readings(metric: str, readings: Sequence[Reading], sent_ms: int) -> bytes:
    """One message body for readings that all have `metric`."""
    columns = ReadingColumns()
    for r in readings:
        columns.append(r.server_id, r.ts_ms, r.value)
    return encode_columns(metric, columns, sent_ms)


def decode_readings(body: bytes) -> ReadingsMessage:
    """The readings of a message body; raises Undecodable saying what is wrong with it."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:  # also bad UTF-8, NaN and numbers beyond a double
        raise Undecodable(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise Undecodable("not a JSON object")
    if data.get("v") != VERSION:
        raise Undecodable(f"unknown message version {data.get('v')!r}")
    metric = data.get("metric")
    if not isinstance(metric, str) or metric not in METRICS:
        raise Undecodable(f"unknown metric {metric!r}")
    sent_ms = data.get("sent_ms")
    servers, column, stamps, values = (data.get(k) for k in ("servers", "server", "ts", "value"))
    if type(sent_ms) is not int:
        raise Undecodable("sent_ms is not an integer")
    if not all(isinstance(c, list) for c in (servers, column, stamps, values)):
        raise Undecodable("servers/server/ts/value must be lists")
    if not len(column) == len(stamps) == len(values):  # type: ignore[arg-type]
        raise Undecodable("server/ts/value columns differ in length")
    if not all(isinstance(s, str) for s in servers):  # type: ignore[union-attr]
        raise Undecodable("a server id is not a string")
    if column and not _columns_look_right(len(servers), column, stamps, values):  # type: ignore[arg-type]
        _name_the_bad_column(len(servers), column, stamps, values)  # type: ignore[arg-type]
    if not all(type(v) is float for v in values):  # type: ignore[union-attr]
        values = [float(v) for v in values]  # type: ignore[union-attr]
    return ReadingsMessage(metric, sent_ms, make_readings(metric, servers, column, stamps, values))  # type: ignore[arg-type]


def _slot_setters() -> tuple[Any, ...] | None:
    """The slot descriptors of Reading's fields, when Reading is a plain slotted dataclass."""
    names = ("server_id", "metric", "ts_ms", "value")
    if getattr(Reading, "__post_init__", None) is not None or not all(
        hasattr(Reading.__dict__.get(n), "__set__") for n in names
    ):
        return None
    return tuple(Reading.__dict__[n].__set__ for n in names)


_SETTERS = _slot_setters()


def make_readings(
    metric: str, servers: Sequence[str], column: Sequence[int], stamps: Sequence[int], values: Sequence[float]
) -> list[Reading]:
    """Readings from message columns. Every reading of the pipeline goes through here (twice in
    embedded mode), and a frozen dataclass's __init__ (an object.__setattr__ per field) costs
    more than all the rest of decoding; filling the slots directly, as that __init__ does,
    costs less than half. Falls back to the constructor if Reading ever stops being a plain
    slotted dataclass."""
    if _SETTERS is None:
        return [Reading(servers[i], metric, t, v) for i, t, v in zip(column, stamps, values)]
    set_server, set_metric, set_ts, set_value = _SETTERS
    new = object.__new__
    out: list[Reading] = []
    append = out.append
    for i, t, v in zip(column, stamps, values):
        r = new(Reading)
        set_server(r, servers[i])
        set_metric(r, metric)
        set_ts(r, t)
        set_value(r, v)
        append(r)
    return out


def _columns_look_right(n_servers: int, column: list[Any], stamps: list[Any], values: list[Any]) -> bool:
    """The common case, checked at C speed: the sums of int columns are ints (a float, None or
    string anywhere changes the type or raises), indexes lie within the server table, and the
    sum of the values is finite (so is every value). False sends a column to the slow check."""
    try:
        return (
            type(sum(column)) is int
            and min(column) >= 0
            and max(column) < n_servers
            and type(sum(stamps)) is int
            and math.isfinite(sum(values))
        )
    except TypeError:
        return False


def _name_the_bad_column(n_servers: int, column: list[Any], stamps: list[Any], values: list[Any]) -> None:
    """Raise Undecodable naming what is wrong, item by item. Returns if nothing is (the sum of
    the values overflowed although each is finite)."""
    if not all(type(i) is int and 0 <= i < n_servers for i in column):
        raise Undecodable("a server index is out of range")
    if not all(type(t) is int for t in stamps):
        raise Undecodable("a timestamp is not an integer")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in values):
        raise Undecodable("a value is not a finite number")
