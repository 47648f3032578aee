"""Queries: downsampled history, raw readings newest first page by page, latest values.

History of a long range reads the rollup tables, never raw rows: `backend.downsample` picks
the resolution, and only a range short enough for raw points reads `raw_minutes`. Raw paging
asks `series_days` which day partitions exist, and reads minute rows newest first, a few at a
time, until the page is full.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend import downsample as ds
from backend.adapters.cassandra.driver import CassandraSession, all_of, map_items
from backend.adapters.cassandra.schema import HOUR_PERIOD_MS
from backend.ports import Latest, RawPage, Series
from tasker.domain import Reading

_ROLLUP_SELECT = {60: ("select_r60", ds.DAY_MS), 3600: ("select_r3600", HOUR_PERIOD_MS)}


class Reads:
    """The store's queries over a session."""

    def __init__(self, session: CassandraSession) -> None:
        self._session = session

    async def history(self, server_id: str, metric: str, from_ms: int, to_ms: int, max_points: int) -> Series:
        """Downsampled [from_ms, to_ms); see `backend.downsample.choose_resolution`."""
        run = self._session.run
        res = ds.choose_resolution(from_ms, to_ms, max_points)
        if res == 1:
            days = list(_periods(from_ms, to_ms, ds.DAY_MS))
            pages = await all_of(
                run("select_raw_all", (server_id, metric, day, *_minutes_of(day, from_ms, to_ms))) for day in days
            )
            rows = sorted(
                (day * ds.DAY_MS + ts, v, v, v, 1)
                for day, page in zip(days, pages)
                for (points,) in page
                for ts, v in map_items(points)
                if from_ms <= day * ds.DAY_MS + ts < to_ms
            )
        else:
            name, span = _ROLLUP_SELECT[res]
            lo = ds.bucket_start(from_ms, res * ds.SECOND_MS)
            pages = await all_of(
                run(name, (server_id, metric, period, lo, to_ms)) for period in _periods(lo, to_ms, span)
            )
            rows = [row for page in pages for row in page]
        return ds.downsample(rows, res, from_ms, to_ms, max_points)

    async def raw(
        self, server_id: str, metric: str, from_ms: int, to_ms: int, limit: int, cursor: str | None = None
    ) -> RawPage:
        """Raw readings in [from_ms, to_ms), newest first, across day partitions; ValueError
        for a garbled cursor."""
        run = self._session.run
        upper = ds.raw_page_upper(from_ms, to_ms, limit, cursor)
        if upper <= from_ms:
            return RawPage([], None)
        days = await run("select_days_of", (server_id, metric, ds.day_of(from_ms), ds.day_of(upper - 1)))
        found: list[Reading] = []
        for (day,) in sorted(days, reverse=True):
            base = day * ds.DAY_MS
            first, last = _minutes_of(day, from_ms, upper)
            # Minute rows newest first, a few at a time: a row holds any number of readings,
            # and only the first and last minute of the range can hold none inside it.
            rows_per_read = 4
            while last >= first and len(found) <= limit:
                rows = await run("select_raw", (server_id, metric, day, first, last, rows_per_read))
                for _, points in rows:
                    found.extend(
                        Reading(server_id, metric, base + ts, v)
                        for ts, v in sorted(map_items(points), reverse=True)
                        if from_ms <= base + ts < upper
                    )
                if len(rows) < rows_per_read:
                    break
                last = rows[-1][0] - 1
                rows_per_read = min(rows_per_read * 4, limit + 2)
            if len(found) > limit:
                break
        page = found[:limit]
        return RawPage(page, ds.encode_cursor(page[-1].ts_ms) if len(found) > limit else None)

    async def latest(self, server_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Latest]:
        """Newest reading per (server, metric), for all servers or the ones given."""
        if server_ids is None:
            rows = await self._session.run("select_latest_all", ())
        else:
            pages = await all_of(self._session.run("select_latest_of", (s,)) for s in set(server_ids))
            rows = [row for page in pages for row in page]
        return {(s, m): Latest(ts, v) for s, m, ts, v in rows}


def _periods(from_ms: int, to_ms: int, span_ms: int) -> range:
    """Partition numbers of `span_ms`-wide partitions that overlap [from_ms, to_ms)."""
    return range(from_ms // span_ms, (to_ms - 1) // span_ms + 1)


def _minutes_of(day: int, from_ms: int, to_ms: int) -> tuple[int, int]:
    """First and last minute of `day` (inclusive) that [from_ms, to_ms) overlaps."""
    base = day * ds.DAY_MS
    return (max(from_ms - base, 0) // ds.MINUTE_MS, (min(to_ms - base, ds.DAY_MS) - 1) // ds.MINUTE_MS)
