"""Axis ticks a reader can trust: round values evenly spaced, and times on round minutes, hours
or days, with the date where a range crosses midnight. Pure; no plotting library in sight.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

NICE_MULTIPLES = (1, 2, 5)
# Time steps in seconds, finest first; every step under a day divides a day, so a range that
# crosses midnight always has a tick there to carry the date.
TIME_STEPS_S = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
    2 * 86400,
    7 * 86400,
    14 * 86400,
)
DAY_S = 86400
WEEK_ALIGN_S = 4 * DAY_S  # the epoch began on a Thursday: weekly ticks fall on Mondays


# Room each time label needs: its width and half again. A chart library that places labels
# around ones already drawn moves a label that comes closer, and then where it lands depends on
# the order they were drawn in.
def label_room(width: int) -> int:
    return width + (width + 1) // 2 + 1


def nice_step(rough: float) -> float:
    """The smallest 1, 2 or 5 x 10^n at or above `rough` (> 0)."""
    power = 10.0 ** math.floor(math.log10(rough))
    for multiple in (*NICE_MULTIPLES, 10):
        if multiple * power >= rough * (1 - 1e-9):
            return multiple * power
    return 10 * power  # not reached: 10 x power is always >= rough


def value_ticks(low: float, high: float, max_count: int) -> list[float]:
    """At most `max_count` (>= 2) round, evenly spaced ticks from at or below `low` to at or above
    `high`: `[0, 50, 100, 150]` rather than `[3.1, 52.7, 102.3]`. The axis is meant to run from
    the first tick to the last."""
    max_count = max(2, max_count)
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high < low:
        low, high = high, low
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = (low - pad, high + pad) if low < 0 else (max(0.0, low - pad), high + pad)
    step = nice_step((high - low) / (max_count - 1))
    while True:
        first = math.floor(low / step + 1e-9)
        last = math.ceil(high / step - 1e-9)
        if last - first + 1 <= max_count:
            break
        step = nice_step(step * 1.01)
    # Multiples of the step, computed from integers so 0.1 steps do not drift to 0.30000000000000004.
    return [round(i * step, 12) for i in range(first, last + 1)]


def value_label(value: float, step: float) -> str:
    """A tick value with just the decimals its step needs: `250`, `2.5`, `0.05`."""
    decimals = max(0, -math.floor(math.log10(step) + 1e-9)) if step > 0 else 0
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text  # never `-0`


def _label(moment: datetime, step_s: int, crosses_midnight: bool) -> str:
    if step_s >= DAY_S:
        return moment.strftime("%b %d")
    if crosses_midnight and moment.hour == moment.minute == moment.second == 0:
        return moment.strftime("%b %d")  # the date, where the day changes
    return moment.strftime("%H:%M:%S" if step_s < 60 else "%H:%M")


def time_ticks(start_ms: int, end_ms: int, width: int) -> list[tuple[int, str]]:
    """(epoch ms, label) ticks for a UTC time axis `width` cells wide: the finest round step whose
    labels fit side by side. Each tick sits on a round second, minute, hour or day (weeks start
    on Monday); a tick at midnight is labelled with the date when the range crosses one."""
    if end_ms <= start_ms:
        end_ms = start_ms + 1000
    try:
        crosses = (
            datetime.fromtimestamp(start_ms / 1000, tz=timezone.utc).date()
            != datetime.fromtimestamp(end_ms / 1000, tz=timezone.utc).date()
        )
    except (ValueError, OverflowError, OSError):  # beyond the calendar: no axis to label
        return []
    ticks: list[tuple[int, str]] = []
    for step_s in TIME_STEPS_S:
        candidate = _ticks_at(start_ms, end_ms, step_s, crosses)
        if candidate is None:
            continue
        ticks = candidate
        widest = max((len(label) for _, label in ticks), default=0)
        if len(ticks) * label_room(widest) <= width:
            break
    return ticks  # when none fits, the coarsest step's


def _ticks_at(start_ms: int, end_ms: int, step_s: int, crosses: bool) -> list[tuple[int, str]] | None:
    step_ms = step_s * 1000
    if (end_ms - start_ms) / step_ms > 500:
        return None  # far too many: a coarser step is needed anyway
    offset_ms = WEEK_ALIGN_S * 1000 if step_s % (7 * DAY_S) == 0 else 0
    first = math.ceil((start_ms - offset_ms) / step_ms) * step_ms + offset_ms
    out = []
    for ts in range(first, end_ms + 1, step_ms):
        moment = datetime.fromtimestamp(ts / 1000, tz=timezone.utc)
        out.append((ts, _label(moment, step_s, crosses)))
    return out
