"""Figures over a chart's time range: min/avg/max, energy (kWh) and emissions (kg CO2).

Works on history buckets `[ts_ms, min, avg, max]` of `resolution_s` seconds, the shape
`GET /servers/{id}/history` returns, extended live by `LiveSeries`. Pure; no I/O.

A bucket field that is not a finite number (null on the wire, NaN, inf) is no data: left out
of min/max, and its time not counted as covered. Sums are taken as weighted means, so values
near the float limit (1e308) do not overflow on the way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tasker_tui.format import as_value

Bucket = tuple[int, float, float, float]  # start ms, min, avg, max


@dataclass(frozen=True, slots=True)
class RangeFigures:
    minimum: float | None
    average: float | None
    maximum: float | None
    # Integral of the average over covered time, in value x hours (W -> Wh, g/h -> g).
    value_hours: float
    covered_s: float


def range_figures(
    points: Sequence[Bucket],
    resolution_s: float,
    to_ms: int | None = None,
    data_from_ms: int | None = None,
    data_to_ms: int | None = None,
) -> RangeFigures:
    """Min, time-weighted average, max and integral over the buckets.

    Each bucket covers `resolution_s` seconds, except at the edges: the oldest covers time only
    from `data_from_ms` (when readings started inside it) and the newest only up to `to_ms` and
    `data_to_ms` (now, and the last reading). Gaps between buckets count as no data: energy is not
    invented for a time when no sensor reported. (Gaps inside one bucket cannot be seen at that
    resolution.)
    """
    lows = [p[1] for p in points if math.isfinite(p[1])]
    highs = [p[3] for p in points if math.isfinite(p[3])]
    resolution_ms = float(resolution_s) * 1000
    ends = [e for e in (to_ms, data_to_ms) if e is not None]
    spans: list[tuple[float, float]] = []  # (avg, seconds covered) of each bucket with data
    last = len(points) - 1
    for index, (ts, _low, avg, _high) in enumerate(points):
        if not math.isfinite(avg):
            continue
        start, end = float(ts), ts + resolution_ms
        if index == 0 and data_from_ms is not None:
            start = max(start, float(data_from_ms))
        if index == last and ends:
            end = min(end, float(min(ends)))
        span = (end - start) / 1000
        if span <= 0:
            span = min(float(resolution_s), 1.0)  # a reading right at the edge still counts a moment
        spans.append((avg, span))
    covered = sum((span for _avg, span in spans), 0.0)
    average = sum(avg * (span / covered) for avg, span in spans) if covered else None
    value_hours = average * (covered / 3600.0) if average is not None else 0.0
    return RangeFigures(min(lows, default=None), average, max(highs, default=None), value_hours, covered)


class LiveSeries:
    """A chart's series: history buckets plus live readings folded into the newest bucket.

    Live readings land in the bucket of their timestamp at the history's resolution, so the line
    extends at the same granularity as the history it continues; buckets older than the range
    start slide out.
    """

    def __init__(self, points: Sequence[Sequence[Any]], resolution_s: int, span_ms: int) -> None:
        self.resolution_ms = max(1, int(resolution_s)) * 1000
        self.span_ms = span_ms
        self.buckets: list[list[float]] = [
            [int(p[0]), as_value(p[1]), as_value(p[2]), as_value(p[3]), 1] for p in points
        ]
        # Per bucket we keep [start, min, avg, max, count]; history buckets count as one sample
        # of weight 1 only for folding, which keeps their avg dominant until live data fills in.
        self.last_ts_ms = int(points[-1][0]) if points else 0
        # When readings really start inside the oldest bucket (found at a finer resolution);
        # None means the bucket is taken as covered from its start.
        self.data_from_ms: int | None = None

    def add(self, ts_ms: int, value: float) -> bool:
        """Fold one live reading in; False when it is older than what we already have, or not a
        number (a gap, as in the history)."""
        if not math.isfinite(value):
            return False
        if ts_ms <= self.last_ts_ms and self.buckets and ts_ms < self.buckets[-1][0]:
            return False
        start = ts_ms - ts_ms % self.resolution_ms
        if self.buckets and self.buckets[-1][0] == start:
            bucket = self.buckets[-1]
            count = bucket[4]
            if not all(math.isfinite(v) for v in bucket[1:4]):
                bucket[1:4] = [value, value, value]  # a history bucket without data: start it over
            bucket[1] = min(bucket[1], value)
            bucket[3] = max(bucket[3], value)
            bucket[2] = bucket[2] * (count / (count + 1)) + value / (count + 1)  # no overflow near 1e308
            bucket[4] = count + 1
        elif not self.buckets or start > self.buckets[-1][0]:
            self.buckets.append([start, value, value, value, 1])
        else:
            return False
        self.last_ts_ms = max(self.last_ts_ms, ts_ms)
        horizon = ts_ms - self.span_ms
        while self.buckets and self.buckets[0][0] + self.resolution_ms <= horizon:
            self.buckets.pop(0)
        return True

    def points(self) -> list[Bucket]:
        return [(int(b[0]), b[1], b[2], b[3]) for b in self.buckets]

    def figures(self, to_ms: int, data_to_ms: int | None = None) -> RangeFigures:
        """Figures up to `to_ms` (now), counting the newest bucket only up to the last reading."""
        data_from = self.data_from_ms
        if data_from is not None and self.buckets and data_from < self.buckets[0][0]:
            data_from = None  # that bucket slid out of the range
        return range_figures(self.points(), self.resolution_ms / 1000, to_ms, data_from, data_to_ms)
