"""How numbers, times and recent series are written in the TUI: units, sparklines, ages.

Pure functions; no Textual, no I/O. Every one takes whatever the backend sent: NaN and
infinities read as "n/a" (or a gap in a sparkline), absurd finite values such as 1e308 or
1e-300 come out in compact scientific notation, and nothing overflows while summing them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import TypeGuard

SPARK_CHARS = "▁▂▃▄▅▆▇█"
# Shown where a sparkline bucket has no reading (a gap, not a zero).
SPARK_GAP = " "
# Shown for a value that is not a finite number (NaN, +/-inf, or null on the wire).
NOT_A_NUMBER = "n/a"
# From this magnitude on, values are written as 1.5e12 rather than in digits.
SCIENTIFIC_FROM = 1e9
# ... and below this one (a reading of 1e-300 W is not 0).
TINY = 1e-6


def as_value(raw: object) -> float:
    """A reading's value off the wire as a float; NaN for null or anything not a number, so
    the rest of the TUI handles one kind of "no value" (drawn as a gap, written as n/a)."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return math.nan
    try:
        return float(raw)
    except OverflowError:  # an integer beyond float range
        return math.copysign(math.inf, raw)


def is_number(value: float | None) -> TypeGuard[float]:
    """True for a finite float (not None, NaN or an infinity)."""
    return value is not None and math.isfinite(value)


def scientific(value: float) -> str:
    """Compact scientific notation: `1e308`, `-2.5e12`, `1e-300`."""
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def number(value: float) -> str:
    """A registered figure (PUE, watts, intensity) as short as it goes: `1.5`, `350`, `1e308`."""
    if not math.isfinite(value):
        return NOT_A_NUMBER
    text = f"{value:g}"
    return scientific(value) if "e" in text else text


def finite_mean(values: Sequence[float]) -> float | None:
    """Mean of the finite values, without overflow (1e308 twice averages to 1e308, not inf)."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return None
    count = len(finite)
    return sum(v / count for v in finite)


def _cell(value: float | None) -> str | None:
    """What every table cell says for no value, a non-number or a huge one; None otherwise."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return NOT_A_NUMBER
    if abs(value) >= 1e6:  # a 6-character cell: `1.5e6`, `1e308`
        return scientific(value)
    return None


def watts(value: float | None) -> str:
    """Power for a table cell: `1234 W`-style without the unit, `—` when unknown."""
    if (special := _cell(value)) is not None:
        return special
    assert value is not None
    if abs(value) >= 100_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    return f"{value:.0f}"


def grams_per_hour(value: float | None) -> str:
    """CO2 emission rate (g/h) for a table cell."""
    if (special := _cell(value)) is not None:
        return special
    assert value is not None
    if abs(value) >= 100_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 10_000:
        return f"{value / 1000:.1f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def quantity(value: float | None, unit: str, digits: int = 1) -> str:
    """A value with its unit, e.g. `12.3 kWh`; `—` when unknown, `n/a` when not a number, and
    scientific notation for absurd magnitudes (`1e308 W`, `1e-300 W`)."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return NOT_A_NUMBER
    if abs(value) >= SCIENTIFIC_FROM or (value and abs(value) < TINY):
        return f"{scientific(value)} {unit}"
    return f"{value:,.{digits}f} {unit}"


def reading(value: float) -> str:
    """A raw reading's value as the readings table shows it: two decimals, or scientific."""
    if not math.isfinite(value):
        return NOT_A_NUMBER
    if abs(value) >= SCIENTIFIC_FROM or (value and abs(value) < TINY):
        return scientific(value)
    return f"{value:.2f}"


def fleet_power(total_w: float) -> str:
    """Fleet total power, scaled to W or kW."""
    if not math.isfinite(total_w):
        return NOT_A_NUMBER
    if abs(total_w) >= SCIENTIFIC_FROM:
        return f"{scientific(total_w / 1000)} kW"
    if abs(total_w) >= 10_000:
        return f"{total_w / 1000:,.1f} kW"
    return f"{total_w:,.0f} W"


def sparkline(
    samples: Sequence[tuple[int, float]], now_ms: int, width: int, span_s: int, *, ceiling: float | None = None
) -> str:
    """A `width`-character sparkline of the last `span_s` seconds ending at `now_ms`.

    `samples` are (ts_ms, value) oldest first. Each character is the mean of its time bucket,
    scaled between the min and max of the visible buckets, or, given a `ceiling`, between zero and
    the ceiling (or the highest value, when one goes above it): then a steady 220 W of 400 reads
    as a steady half, not as noise blown up to full height, and rows compare. Empty buckets are
    blanks, so a sensor that went quiet shows as a gap rather than a drop to zero.
    """
    if width <= 0:
        return ""
    start_ms = now_ms - span_s * 1000
    bucket_ms = span_s * 1000 / width
    buckets: list[list[float]] = [[] for _ in range(width)]
    # Walk newest to oldest and stop at the window's start: the deque may hold more.
    for ts, value in reversed(samples):
        if ts < start_ms:
            break
        if math.isfinite(value):  # a reading that is not a number is a gap, like a missing one
            buckets[min(width - 1, int((ts - start_ms) / bucket_ms))].append(value)
    means = [finite_mean(bucket) for bucket in buckets]
    present = [m for m in means if m is not None]
    if not present:
        return SPARK_GAP * width
    # Halves: the span of -1e308 .. 1e308 would overflow to inf.
    low, high = min(present) / 2, max(present) / 2
    if ceiling is not None and is_number(ceiling) and ceiling > 0 and low >= 0:
        low, high = 0.0, max(high, ceiling / 2)
    half_span = high - low
    top = len(SPARK_CHARS) - 1
    chars = []
    for mean in means:
        if mean is None:
            chars.append(SPARK_GAP)
        elif half_span <= 0.5e-9:
            chars.append(SPARK_CHARS[top // 2])
        else:
            chars.append(SPARK_CHARS[round((mean / 2 - low) / half_span * top)])
    return "".join(chars)


def mean_since(samples: Iterable[tuple[int, float]], since_ms: int) -> float | None:
    """Mean of the finite values at or after `since_ms`, or None when there are none."""
    return finite_mean([value for ts, value in samples if ts >= since_ms])


def age(seconds: float) -> str:
    """A short age such as `4s`, `3m`, `2h`, `5d`."""
    if not math.isfinite(seconds):
        return NOT_A_NUMBER
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
    try:
        moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):  # beyond the calendar: say the number
        return f"{ts_ms} ms"
    text = moment.strftime("%Y-%m-%d %H:%M:%S")
    if with_ms:
        text += f".{ts_ms % 1000:03d}"
    return text + "Z"


def iso(ts_ms: int) -> str:
    """RFC 3339 UTC with milliseconds, as written to CSV."""
    try:
        moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return str(ts_ms)
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


def co2_mass(grams: float | None) -> str:
    """An amount of CO2e with the unit that reads best: `350 g CO2e`, `1.2 kg CO2e`, `3.4 t CO2e`."""
    if grams is None:
        return "—"
    if not math.isfinite(grams):
        return NOT_A_NUMBER
    size = abs(grams)
    if size >= 1e9:
        return f"{scientific(grams / 1e6)} t CO2e"
    if size >= 1e6:
        return f"{grams / 1e6:.1f} t CO2e"
    if size >= 1000:
        return f"{grams / 1000:.1f} kg CO2e"
    if 0 < size < 10:
        return f"{grams:.1f} g CO2e"
    return f"{grams:.0f} g CO2e"


def grams(value: float | None) -> str:
    """Grams of CO2e for a table cell: `12.3`, `850`, `1.2k`; `—` unknown, `n/a` not a number."""
    if (special := _cell(value)) is not None:
        return special
    assert value is not None
    if abs(value) >= 10_000:
        return f"{value / 1000:.0f}k"
    if abs(value) >= 1000:
        return f"{value / 1000:.1f}k"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def clock(ts_ms: int | None, now_ms: int) -> str:
    """A UTC instant for a table cell: `18:30` today, `Thu 06:00` within a week, `07 Dec` this
    year, else the date."""
    if ts_ms is None:
        return "—"
    try:
        moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
        today = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return f"{ts_ms} ms"
    if moment.date() == today.date():
        return moment.strftime("%H:%M")
    if abs((moment.date() - today.date()).days) < 7:
        return moment.strftime("%a %H:%M")
    return moment.strftime("%d %b" if moment.year == today.year else "%Y-%m-%d")


def share(value: float | None) -> str:
    """A share (0..1) as a whole percentage; `—` when unknown."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return NOT_A_NUMBER
    return f"{value * 100:.0f}%"
