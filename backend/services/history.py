"""History and raw readings: query parameters checked into typed queries, answers as in docs/api.md."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from backend.ports import TimeSeriesStore
from backend.services.errors import InvalidField
from backend.services.servers import check_server_id
from backend.services.timestamps import parse_instant
from tasker.domain import EARLIEST_TS_MS, METRICS

DEFAULT_RANGE_MS = 3_600_000
DEFAULT_POINTS = 500
MAX_POINTS = 10_000
DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
MAX_CURSOR = 1_024
MAX_AHEAD_MS = 86_400_000
"""How far after now a range may end."""


@dataclass(frozen=True, slots=True)
class RangeQuery:
    """A server's metric over [from_ms, to_ms)."""

    server_id: str
    metric: str
    from_ms: int
    to_ms: int


def _count(params: Mapping[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= maximum:
        raise InvalidField(name, f"must be a whole number from 1 to {maximum}")
    return int(raw)


def parse_range(server_id: str, params: Mapping[str, str], now: int) -> RangeQuery:
    """metric (default power), to (default now) and from (default to - 1 h); InvalidField otherwise.

    An unknown-looking server id raises NotFound: it cannot name a stored series.
    """
    check_server_id(server_id)
    metric = params.get("metric") or "power"
    if metric not in METRICS:
        raise InvalidField("metric", f"must be one of {', '.join(sorted(METRICS))}")
    try:
        to_ms = parse_instant(params["to"], now) if params.get("to") else now
    except ValueError as exc:
        raise InvalidField("to", str(exc)) from None
    try:
        from_ms = parse_instant(params["from"], now) if params.get("from") else to_ms - DEFAULT_RANGE_MS
    except ValueError as exc:
        raise InvalidField("from", str(exc)) from None
    if from_ms >= to_ms:
        raise InvalidField("from", "must be before to")
    # Bounded so that the buckets of any range are cheap to work out: a range across the epoch,
    # or millennia long, kept the downsampling looping for minutes on the event loop.
    if from_ms < EARLIEST_TS_MS:
        raise InvalidField("from", "must be 2000-01-01T00:00:00Z or later (no reading is older)")
    if to_ms > now + MAX_AHEAD_MS:
        raise InvalidField("to", "must be at most a day from now")
    return RangeQuery(server_id, metric, from_ms, to_ms)


class HistoryService:
    """Answers the history and raw readings routes from the time-series store."""

    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store

    async def history(self, server_id: str, params: Mapping[str, str], now: int) -> dict[str, Any]:
        query = parse_range(server_id, params, now)
        points = _count(params, "points", DEFAULT_POINTS, MAX_POINTS)
        series = await self.store.history(query.server_id, query.metric, query.from_ms, query.to_ms, points)
        return {
            "metric": query.metric,
            "unit": METRICS[query.metric].unit,
            "resolution_s": series.resolution_s,
            "points": [list(p) for p in series.points],
        }

    async def raw(self, server_id: str, params: Mapping[str, str], now: int) -> dict[str, Any]:
        query = parse_range(server_id, params, now)
        limit = _count(params, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        cursor = params.get("cursor") or None
        if cursor is not None and len(cursor) > MAX_CURSOR:
            raise InvalidField("cursor", "is not a cursor this server gave out")
        try:
            page = await self.store.raw(query.server_id, query.metric, query.from_ms, query.to_ms, limit, cursor)
        except ValueError:
            raise InvalidField("cursor", "is not a cursor this server gave out") from None
        return {
            "metric": query.metric,
            "unit": METRICS[query.metric].unit,
            "readings": [{"ts": r.ts_ms, "value": r.value} for r in page.readings],
            "next_cursor": page.next_cursor,
        }
