"""Durations and instants as people type them: "2h", "90m", "1h30m"; "18:00", "tomorrow 06:00",
"+2h", RFC 3339.

Shared by the backend's task validation (durations, and RFC 3339 or epoch ms instants) and the
command line (which also reads local clock times and turns them into RFC 3339 before sending).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo

MAX_DURATION_S = 30 * 86_400
"""Longest task run time accepted: 30 days (well beyond the 48 h planning horizon)."""

_PART = re.compile(r"(\d{1,7})\s*(d|h|m|s)")
_UNIT_S = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})")


def parse_duration(text: str) -> int:
    """Seconds of a duration: "2h", "90m", "1h30m", "45s", "1d", or plain seconds ("7200").

    Raises ValueError with a reason naming the accepted forms.
    """
    compact = text.strip().lower().replace(" ", "")
    if compact.isdigit() and len(compact) <= 9:
        seconds = int(compact)
    else:
        parts = _PART.findall(compact)
        if not parts or "".join(n + u for n, u in parts) != compact or len({u for _, u in parts}) != len(parts):
            raise ValueError("must be a duration like 2h, 90m, 1h30m or seconds")
        seconds = sum(int(n) * _UNIT_S[u] for n, u in parts)
    if seconds < 1:
        raise ValueError("must be at least 1 second")
    if seconds > MAX_DURATION_S:
        raise ValueError(f"must be at most {MAX_DURATION_S // 86_400} days")
    return seconds


def format_duration(seconds: int) -> str:
    """The short form of a duration: 5400 -> "1h30m"."""
    if seconds <= 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


def parse_local_time(text: str, now: datetime, zone: tzinfo | None = None) -> datetime:
    """An instant as typed on the command line, in the local zone unless it says otherwise.

    Accepts "18:00" (today, or tomorrow when that has passed), "tomorrow 06:00",
    "today 18:00", "+2h" / "in 90m" (from now), "2026-06-01 18:00" (local), and RFC 3339 with
    a zone. `now` must be timezone-aware. Raises ValueError naming the accepted forms.
    """
    zone = zone or now.astimezone().tzinfo
    local_now = now.astimezone(zone)
    words = text.strip().lower().split()
    if not words:
        raise ValueError("is empty")
    if words[0] in ("in",) and len(words) > 1:
        return now + timedelta(seconds=parse_duration("".join(words[1:])))
    if words[0].startswith("+"):
        return now + timedelta(seconds=parse_duration("".join(words)[1:]))
    if words[0] in ("today", "tomorrow") and len(words) == 2:
        clock = _clock(words[1])
        day = local_now.date() + timedelta(days=1 if words[0] == "tomorrow" else 0)
        return datetime.combine(day, clock, tzinfo=zone)
    if len(words) == 1 and _CLOCK.fullmatch(words[0]):
        at = datetime.combine(local_now.date(), _clock(words[0]), tzinfo=zone)
        return at if at > local_now else at + timedelta(days=1)
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError("must be a time like 18:00, tomorrow 06:00, +2h, 2026-06-01 18:00 or RFC 3339") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=zone)


def _clock(text: str):  # -> datetime.time
    match = _CLOCK.fullmatch(text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{text!r} is not a clock time like 06:00 or 18:30")
    return datetime.strptime(text, "%H:%M").time()


def to_rfc3339(instant: datetime) -> str:
    """UTC RFC 3339 with a Z, to the second."""
    return instant.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
