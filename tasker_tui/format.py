"""How numbers, times and recent series are written in the TUI: units, sparklines, ages.

Pure functions; no Textual, no I/O.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone

SPARK_CHARS = "▁▂▃▄▅▆▇█"
# Shown where a sparkline bucket has no reading (a gap, not a zero).
SPARK_GAP = " "


def watts(value: float | None) -> str:
    """Power for a table cell: `1234 W`-style without the unit, `—` when unknown."""
    if value is None:
        return "—"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def grams_per_hour(value: float | None) -> str:
    """CO2 emission rate (g/h) for a table cell."""
    if value is None:
        return "—"
    if value >= 100_000:
        return f"{value / 1000:.0f}k"
    if value >= 10_000:
        return f"{value / 1000:.1f}k"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def quantity(value: float | None, unit: str, digits: int = 1) -> str:
    """A value with its unit, e.g. `12.3 kWh`; `—` when unknown."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:,.{digits}f} {unit}"


def fleet_power(total_w: float) -> str:
    """Fleet total power, scaled to W or kW."""
    if total_w >= 10_000:
        return f"{total_w / 1000:,.1f} kW"
    return f"{total_w:,.0f} W"


def sparkline(
    samples: Sequence[tuple[int, float]], now_ms: int, width: int, span_s: int
) -> str:
    """A `width`-character sparkline of the last `span_s` seconds ending at `now_ms`.

    `samples` are (ts_ms, value) oldest first. Each character is the mean of its time bucket,
    scaled between the min and max of the visible buckets; empty buckets are blanks, so a
    sensor that went quiet shows as a gap rather than a drop to zero.
    """
    if width <= 0:
        return ""
    start_ms = now_ms - span_s * 1000
    bucket_ms = span_s * 1000 / width
    sums = [0.0] * width
    counts = [0] * width
    # Walk newest to oldest and stop at the window's start: the deque may hold more.
    for ts, value in reversed(samples):
        if ts < start_ms:
            break
        index = int((ts - start_ms) / bucket_ms)
        if index >= width:
            index = width - 1
        sums[index] += value
        counts[index] += 1
    means = [s / c if c else None for s, c in zip(sums, counts)]
    present = [m for m in means if m is not None]
    if not present:
        return SPARK_GAP * width
    low, high = min(present), max(present)
    span = high - low
    top = len(SPARK_CHARS) - 1
    chars = []
    for mean in means:
        if mean is None:
            chars.append(SPARK_GAP)
        elif span <= 1e-9:
            chars.append(SPARK_CHARS[top // 2])
        else:
            chars.append(SPARK_CHARS[round((mean - low) / span * top)])
    return "".join(chars)


def mean_since(samples: Iterable[tuple[int, float]], since_ms: int) -> float | None:
    """Mean of the values at or after `since_ms`, or None when there are none."""
    total = 0.0
    count = 0
    for ts, value in samples:
        if ts >= since_ms:
            total += value
            count += 1
    return total / count if count else None


def age(seconds: float) -> str:
    """A short age such as `4s`, `3m`, `2h`, `5d`."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def timestamp(ts_ms: int, *, with_ms: bool = False) -> str:
    """UTC timestamp for tables: `2026-11-28 04:00:00Z` (with `.123` when asked)."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if with_ms:
        text += f".{ts_ms % 1000:03d}"
    return text + "Z"


def iso(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as written to CSV."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def now_ms() -> int:
    """Wall-clock now in epoch milliseconds."""
    return int(time.time() * 1000)


def span_label(start_ms: int, end_ms: int) -> str:
    """A UTC time span, the date said once when both ends fall on the same day."""
    start, end = timestamp(start_ms), timestamp(end_ms)
    if start[:10] == end[:10]:
        return f"{start[:-1]}–{end[11:]}"
    return f"{start} – {end}"
