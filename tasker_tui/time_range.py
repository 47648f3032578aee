"""Time ranges the user picks for raw readings: the presets `t` steps through, and ranges typed
as `now`, `-15m`, epoch ms or an ISO date. Pure logic: no widgets, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from tasker.domain import EARLIEST_TS_MS
from tasker_tui import format as fmt


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A resolved range [from_ms, to_ms) and how to call it."""

    label: str
    from_ms: int
    to_ms: int


# (label, span in seconds back from now); None spans every reading there is.
PRESETS: tuple[tuple[str, int | None], ...] = (
    ("last 5m", 300),
    ("last 1h", 3600),
    ("last 24h", 86400),
    ("last 7d", 7 * 86400),
    ("last 30d", 30 * 86400),
    ("everything", None),
)

# What an empty `from` field means.
DEFAULT_FROM = "-1h"


def preset_range(index: int, now_ms: int) -> TimeRange:
    """Preset `index` (wrapping around) as a range ending just after `now_ms`."""
    label, span = PRESETS[index % len(PRESETS)]
    return TimeRange(label, EARLIEST_TS_MS if span is None else now_ms - span * 1000, now_ms + 1)


def parse_time(text: str, now_ms: int) -> int:
    """A time typed by the user: `now`, `-15m`/`-2h`/`-3d`, epoch ms, or an ISO/RFC 3339 date."""
    text = text.strip()
    if not text or text == "now":
        return now_ms
    if text[0] == "-" and text[-1] in "smhd" and text[1:-1].replace(".", "", 1).isdigit():
        seconds = float(text[1:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[text[-1]]
        return now_ms - int(seconds * 1000)
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r}: use now, -15m, -2h, -3d, epoch ms or 2026-11-28T04:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def typed_range(raw_from: str, raw_to: str, now_ms: int) -> TimeRange:
    """The range typed into the `from` and `to` fields (an empty `from` is `-1h`, an empty `to`
    is now). Raises ValueError, with a sentence to show, when a time is not understood or `from`
    is not before `to`."""
    start = parse_time(raw_from or DEFAULT_FROM, now_ms)
    end = parse_time(raw_to, now_ms)
    if start >= end:
        raise ValueError("'from' must be before 'to'")
    # A range up to now includes a reading stamped this very millisecond.
    to_now = raw_to.strip() in ("", "now")
    return TimeRange(fmt.span_label(start, end), start, end + (1 if to_now else 0))
