"""Time-series arithmetic shared by the time-series adapters: buckets, rollups, the choice of
resolution for a history query, server-side downsampling and the raw-page cursor.

Pure functions, no I/O: the SQLite and Cassandra adapters fetch rows, these turn them into
answers, so both stores answer the same query the same way.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable
from typing import NamedTuple

from backend.ports import Series

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000

# What the stores keep: raw readings (1 s nominal) plus 60 s and 3600 s rollups.
RESOLUTIONS_S: tuple[int, ...] = (1, 60, 3600)
ROLLUP_RESOLUTIONS_S: tuple[int, ...] = (60, 3600)

# A history query reads raw rows only for ranges this short ("never scans raw rows for ranges
# over a few hours"), and never reads more than MAX_SCAN_BUCKETS rollup rows: beyond that a
# coarser rollup answers, even if it gives fewer points than asked for.
RAW_HISTORY_MAX_MS = 6 * HOUR_MS
MAX_SCAN_BUCKETS = 50_000

_CURSOR_PREFIX = b"tasker-raw-v1:"


class Rollup(NamedTuple):
    """The aggregate of one bucket: its start and the min, max, sum and number `n` of its values.

    A plain tuple underneath, so rows fetched as (start_ms, min, max, sum, count) tuples can be
    used as they are, and a raw reading is the one-value bucket (ts_ms, v, v, v, 1).
    """

    start_ms: int
    min: float
    max: float
    sum: float
    n: int

    @property
    def avg(self) -> float:
        return self.sum / self.n


def bucket_start(ts_ms: int, width_ms: int) -> int:
    """Start of the bucket of `width_ms` (aligned on the epoch) that holds `ts_ms`."""
    return ts_ms - ts_ms % width_ms


def day_of(ts_ms: int) -> int:
    """UTC day number (days since the epoch) of an instant: the Cassandra raw partition key."""
    return ts_ms // DAY_MS


def rollup(points: Iterable[tuple[int, float]], width_ms: int) -> list[Rollup]:
    """Aggregate raw (ts_ms, value) points into buckets of `width_ms`, sorted by start."""
    acc: dict[int, list[float]] = {}
    for ts_ms, value in points:
        start = ts_ms - ts_ms % width_ms
        a = acc.get(start)
        if a is None:
            acc[start] = [value, value, value, 1]
        else:
            if value < a[0]:
                a[0] = value
            if value > a[1]:
                a[1] = value
            a[2] += value
            a[3] += 1
    return [Rollup(s, a[0], a[1], a[2], int(a[3])) for s, a in sorted(acc.items())]


def merge(
    rollups: Iterable[tuple[int, float, float, float, int]],
    width_ms: int,
    lo: int | None = None,
    hi: int | None = None,
) -> list[Rollup]:
    """Combine finer rollups (Rollup or plain tuples) into buckets of `width_ms` (a multiple of
    theirs), sorted by start; with `lo`/`hi`, only those starting in [lo, hi). Hot path of
    every history query: plain loops over tuples."""
    acc: dict[int, list[float]] = {}
    for start, lo_v, hi_v, total, n in rollups:
        if lo is not None and start < lo or hi is not None and start >= hi:
            continue
        bucket = start - start % width_ms
        a = acc.get(bucket)
        if a is None:
            acc[bucket] = [lo_v, hi_v, total, n]
        else:
            if lo_v < a[0]:
                a[0] = lo_v
            if hi_v > a[1]:
                a[1] = hi_v
            a[2] += total
            a[3] += n
    return [Rollup(b, a[0], a[1], a[2], int(a[3])) for b, a in sorted(acc.items())]


def bucket_count(from_ms: int, to_ms: int, width_ms: int) -> int:
    """How many epoch-aligned buckets of `width_ms` overlap [from_ms, to_ms)."""
    if to_ms <= from_ms:
        return 0
    return (bucket_start(to_ms - 1, width_ms) - bucket_start(from_ms, width_ms)) // width_ms + 1


def check_range(from_ms: int, to_ms: int) -> None:
    """Raise ValueError unless [from_ms, to_ms) is a non-empty range."""
    if to_ms <= from_ms:
        raise ValueError(f"time range is empty: to ({to_ms}) must be after from ({from_ms})")


def choose_resolution(from_ms: int, to_ms: int, max_points: int) -> int:
    """Stored resolution (seconds) to answer a history query from.

    The coarsest of RESOLUTIONS_S that still yields at least `max_points` buckets over the
    range (so downsampling loses nothing the chart could show); when none does, the finest
    allowed. Raw rows are allowed only for ranges up to RAW_HISTORY_MAX_MS, and rollups only
    while they need at most MAX_SCAN_BUCKETS rows; the coarsest rollup is always allowed.
    """
    check_range(from_ms, to_ms)
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    allowed = []
    for res in RESOLUTIONS_S:
        width = res * SECOND_MS
        if res == RESOLUTIONS_S[0]:
            ok = to_ms - from_ms <= RAW_HISTORY_MAX_MS
        else:
            ok = res == RESOLUTIONS_S[-1] or bucket_count(from_ms, to_ms, width) <= MAX_SCAN_BUCKETS
        if ok:
            allowed.append(res)
    for res in reversed(allowed):
        if bucket_count(from_ms, to_ms, res * SECOND_MS) >= max_points:
            return res
    return allowed[0]


def output_width_ms(from_ms: int, to_ms: int, resolution_s: int, max_points: int) -> int:
    """Width of the output buckets: the smallest multiple of the stored resolution whose
    epoch-aligned buckets over the range number at most `max_points` (epoch-aligned so a live
    chart's buckets stay put as the range slides)."""
    res_ms = resolution_s * SECOND_MS
    n = bucket_count(from_ms, to_ms, res_ms)
    k = max(1, math.ceil(n / max_points))
    while bucket_count(from_ms, to_ms, res_ms * k) > max_points:
        k += 1
    return res_ms * k


def downsample(
    rows: Iterable[tuple[int, float, float, float, int]], resolution_s: int, from_ms: int, to_ms: int, max_points: int
) -> Series:
    """Downsample stored rows (rollups, or raw readings as one-value rollups) of `resolution_s`
    over [from_ms, to_ms) into at most `max_points` buckets.

    Each output point is (start_ms, min, avg, max) with avg weighted by count; empty buckets
    are left out. A stored bucket belongs to the range when its start
    lies in [start of the bucket holding from_ms, to_ms).
    """
    check_range(from_ms, to_ms)
    if max_points < 1:
        raise ValueError(f"max_points must be at least 1, got {max_points}")
    lo = bucket_start(from_ms, resolution_s * SECOND_MS)
    width = output_width_ms(from_ms, to_ms, resolution_s, max_points)
    merged = merge(rows, width, lo, to_ms)
    return Series(width // SECOND_MS, [(b, lo_v, total / n, hi_v) for b, lo_v, hi_v, total, n in merged])


def raw_page_upper(from_ms: int, to_ms: int, limit: int, cursor: str | None) -> int:
    """Validate a raw-page request; the exclusive upper bound of the readings it asks for
    (`to_ms`, or the cursor's timestamp when paging on). ValueError names what is wrong."""
    check_range(from_ms, to_ms)
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    return to_ms if cursor is None else min(to_ms, decode_cursor(cursor))


def encode_cursor(ts_ms: int) -> str:
    """Opaque cursor of a raw page: the next page holds readings strictly older than `ts_ms`."""
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(ts_ms).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The timestamp a cursor from `encode_cursor` carries; ValueError for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    digits = raw[len(_CURSOR_PREFIX) :]
    if not raw.startswith(_CURSOR_PREFIX) or not digits.isdigit():
        raise ValueError(f"invalid cursor {cursor[:40]!r}: pass back the next_cursor of a previous page unchanged")
    return int(digits)
