"""Validation of posted reading batches into typed readings, naming every bad item.

A batch is accepted whole or not at all: `validate_batch` either returns every reading, grouped
by metric, or raises `BatchRejected` listing each bad item with its index, field and reason.

This is the one place that decides which values Tasker holds: between the metric's minimum and
its ceiling for that server (`tasker.domain.value_ceilings`), so whatever ingest accepts every
store can keep as it is, in embedded and distributed mode alike, and aggregates stay finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.services.timestamps import parse_rfc3339_ms
from backend.services.wire import ReadingColumns
from tasker.domain import EARLIEST_TS_MS, MAX_FUTURE_SKEW_MS, METRICS, Reading

ServerCeilings = Mapping[str, Mapping[str, float]]
"""Registered server id -> metric -> the largest value a reading of it may hold."""

MAX_BATCH_READINGS = 10_000
"""Readings one POST may carry; more is refused with 413 (split the batch)."""

_FIELDS = ("server_id", "metric", "ts", "value")
_KNOWN_METRICS = ", ".join(sorted(METRICS))


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one reading of a batch is invalid."""

    index: int | None
    field: str
    reason: str

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field, "reason": self.reason}
        if self.index is not None:
            out = {"index": self.index, **out}
        return out


class BatchRejected(Exception):
    """The batch is refused; `details` names each bad item. `status` is the HTTP status to send."""

    def __init__(self, message: str, details: list[ItemError], status: int = 400) -> None:
        super().__init__(message)
        self.details = details
        self.status = status


@dataclass(slots=True)
class ReadingBatch:
    """A validated batch: readings grouped by metric, in the order they were posted, kept as
    the broker message's columns (ingest publishes them without making a Reading each)."""

    columns: dict[str, ReadingColumns] = field(default_factory=dict)

    @property
    def by_metric(self) -> dict[str, list[Reading]]:
        """The readings of each metric, as Reading objects."""
        return {metric: columns.readings(metric) for metric, columns in self.columns.items()}

    def add(self, reading: Reading) -> None:
        columns = self.columns.get(reading.metric)
        if columns is None:
            columns = self.columns[reading.metric] = ReadingColumns()
        columns.append(reading.server_id, reading.ts_ms, reading.value)

    def __len__(self) -> int:
        return sum(len(c) for c in self.columns.values())


def _check_ts(raw: Any, now: int) -> tuple[int | None, str | None]:
    if type(raw) is int:
        ts = raw
    elif type(raw) is float:
        if not math.isfinite(raw) or not raw.is_integer():
            return None, "must be whole epoch milliseconds or an RFC 3339 string"
        ts = int(raw)
    elif isinstance(raw, str):
        try:
            ts = parse_rfc3339_ms(raw)
        except ValueError as exc:
            return None, str(exc)
    else:
        return None, "must be epoch milliseconds (integer) or an RFC 3339 string"
    if ts < EARLIEST_TS_MS:
        return None, "is before 2000-01-01T00:00:00Z"
    if ts > now + MAX_FUTURE_SKEW_MS:
        return None, f"is more than {MAX_FUTURE_SKEW_MS // 60_000} minutes in the future"
    return ts, None


def _check_item(index: int, item: Any, servers: ServerCeilings, now: int, errors: list[ItemError]) -> Reading | None:
    if not isinstance(item, dict):
        errors.append(ItemError(index, "reading", "must be an object with server_id, metric, ts, value"))
        return None
    before = len(errors)
    for name in _FIELDS:
        if name not in item:
            errors.append(ItemError(index, name, "is required"))

    server_id = item.get("server_id")
    if "server_id" in item:
        if not isinstance(server_id, str):
            errors.append(ItemError(index, "server_id", "must be a string"))
        elif server_id not in servers:
            errors.append(ItemError(index, "server_id", f"unknown server {server_id[:80]!r}"))

    metric_name = item.get("metric")
    metric = None
    if "metric" in item:
        if not isinstance(metric_name, str):
            errors.append(ItemError(index, "metric", "must be a string"))
        else:
            metric = METRICS.get(metric_name)
            if metric is None:
                errors.append(
                    ItemError(index, "metric", f"unknown metric {metric_name[:40]!r} (known: {_KNOWN_METRICS})")
                )

    ts = None
    if "ts" in item:
        ts, reason = _check_ts(item["ts"], now)
        if reason:
            errors.append(ItemError(index, "ts", reason))

    value: Any = item.get("value")
    if "value" in item:
        if type(value) not in (int, float):
            errors.append(ItemError(index, "value", "must be a number"))
            value = None
        elif type(value) is float and not math.isfinite(value):
            errors.append(ItemError(index, "value", "must be finite"))
            value = None
        elif metric is not None and value < metric.minimum:
            errors.append(ItemError(index, "value", f"must be >= {metric.minimum:g} for {metric.name} ({metric.unit})"))
            value = None
        elif metric is not None and isinstance(server_id, str) and server_id in servers:
            ceiling = servers[server_id][metric.name]
            if value > ceiling:
                errors.append(ItemError(index, "value", _over_ceiling(metric.name, ceiling)))
                value = None

    if len(errors) != before:
        return None
    return Reading(server_id, metric_name, ts, float(value))  # type: ignore[arg-type]


def _repeats(items: list[Any], batch: ReadingBatch) -> list[ItemError]:
    """A batch saying two things of one instant (server, metric, ts) is refused rather than
    counted twice and stored once (which value would win?). Checked on the columns, in C, and
    only when there is a repeat are the items walked to name each."""
    if all(len(set(zip(c.server, c.ts))) == len(c) for c in batch.columns.values()):
        return []
    # Every item is valid here, so the k-th reading of a metric's columns is its k-th item.
    errors: list[ItemError] = []
    first: dict[tuple[str, str, int], int] = {}
    position: dict[str, int] = {}
    for index, item in enumerate(items):
        name = item["metric"]
        k = position[name] = position.get(name, -1) + 1
        columns = batch.columns[name]
        key = (columns.servers[columns.server[k]], name, columns.ts[k])
        earlier = first.setdefault(key, index)
        if earlier != index:
            errors.append(ItemError(index, "ts", f"repeats reading {earlier} (same server, metric and ts)"))
    return errors


def _over_ceiling(metric_name: str, ceiling: float) -> str:
    metric = METRICS[metric_name]
    why = ""
    if ceiling < metric.maximum and metric.per_max_watts is not None:
        why = f" ({metric.per_max_watts:g} x its max_watts)"
    return f"must be <= {ceiling:g} {metric.unit} for {metric.name} on this server{why}"


def validate_batch(
    payload: Any, servers: ServerCeilings, now: int, max_readings: int = MAX_BATCH_READINGS
) -> ReadingBatch:
    """Check a decoded POST body `{"readings": [...]}` against the registered `servers` (each
    with its ceilings per metric).

    Returns the readings grouped by metric, or raises BatchRejected naming every bad item
    (status 413 when the batch holds more than `max_readings`).
    """
    if not isinstance(payload, dict) or "readings" not in payload:
        raise BatchRejected(
            'body must be a JSON object with a "readings" list',
            [ItemError(None, "readings", "is required")],
        )
    items = payload["readings"]
    if not isinstance(items, list):
        raise BatchRejected('"readings" must be a list', [ItemError(None, "readings", "must be a list")])
    if len(items) > max_readings:
        raise BatchRejected(
            f"batch of {len(items)} readings is over the limit of {max_readings}; split it",
            [ItemError(None, "readings", f"at most {max_readings} per request")],
            status=413,
        )
    errors: list[ItemError] = []
    batch = ReadingBatch()
    latest = now + MAX_FUTURE_SKEW_MS
    isfinite = math.isfinite
    server_id: Any
    name: Any
    for index, item in enumerate(items):
        # Fast path for the common well-formed item (ingest runs this for every reading); anything
        # unusual goes through _check_item, which names each problem.
        if type(item) is dict and len(item) == 4:
            server_id, name, ts, value = item.get("server_id"), item.get("metric"), item.get("ts"), item.get("value")
            metric = METRICS.get(name) if type(name) is str else None
            ceilings = servers.get(server_id) if type(server_id) is str else None
            if (
                metric is not None
                and ceilings is not None
                and type(ts) is int
                and EARLIEST_TS_MS <= ts <= latest
                and (type(value) is int or type(value) is float and isfinite(value))
                and metric.minimum <= value <= ceilings[name]  # exact for ints beyond any float too
            ):
                columns = batch.columns.get(name)
                if columns is None:
                    columns = batch.columns[name] = ReadingColumns()
                columns.append(server_id, ts, float(value))
                continue
        reading = _check_item(index, item, servers, now, errors)
        if reading is not None:
            batch.add(reading)
    if not errors:
        errors = _repeats(items, batch)
    if errors:
        bad = len({e.index for e in errors})
        raise BatchRejected(f"{bad} of {len(items)} readings are invalid; nothing was accepted", errors)
    return batch
