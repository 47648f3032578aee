"""The encoding of readings in broker messages (work queues and live events).

One message carries many readings of one metric, columnar, with each server id written once:

    {"v": 1, "metric": "power", "sent_ms": 1767000000000,
     "servers": ["srv_a...", "srv_b..."],
     "server": [0, 1, 0], "ts": [1767000000000, ...], "value": [212.5, ...]}

JSON keeps it inspectable in the RabbitMQ console and decodes in C; columns and the server
table keep a 2,000-reading message near 40 kB. The same bytes are re-published as the live
event once stored, so the packager never re-encodes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

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


def queue_for(metric: str) -> str:
    """The durable work queue that carries readings of `metric`."""
    return f"readings.{metric}"


@dataclass(frozen=True, slots=True)
class ReadingsMessage:
    metric: str
    sent_ms: int
    readings: list[Reading]


def encode_readings(metric: str, readings: Sequence[Reading], sent_ms: int) -> bytes:
    """One message body for readings that all have `metric`."""
    index: dict[str, int] = {}
    servers: list[str] = []
    column: list[int] = []
    for r in readings:
        i = index.get(r.server_id)
        if i is None:
            i = index[r.server_id] = len(servers)
            servers.append(r.server_id)
        column.append(i)
    body = {
        "v": VERSION,
        "metric": metric,
        "sent_ms": sent_ms,
        "servers": servers,
        "server": column,
        "ts": [r.ts_ms for r in readings],
        "value": [r.value for r in readings],
    }
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()


def chunked(readings: Sequence[Reading], size: int = READINGS_PER_MESSAGE) -> list[Sequence[Reading]]:
    return [readings[i:i + size] for i in range(0, len(readings), size)]


def decode_readings(body: bytes) -> ReadingsMessage:
    """The readings of a message body; raises Undecodable saying what is wrong with it."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
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
    n_servers = len(servers)  # type: ignore[arg-type]
    if not all(type(i) is int and 0 <= i < n_servers for i in column):  # type: ignore[union-attr]
        raise Undecodable("a server index is out of range")
    if not all(type(t) is int for t in stamps):  # type: ignore[union-attr]
        raise Undecodable("a timestamp is not an integer")
    if not all(type(v) in (int, float) and math.isfinite(v) for v in values):  # type: ignore[union-attr]
        raise Undecodable("a value is not a finite number")
    readings = [
        Reading(servers[i], metric, t, float(v))  # type: ignore[index]
        for i, t, v in zip(column, stamps, values)  # type: ignore[arg-type]
    ]
    return ReadingsMessage(metric, sent_ms, readings)
