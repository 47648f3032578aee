"""Instants on the wire: integer epoch milliseconds, RFC 3339 strings, relative "-1h" offsets."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def parse_rfc3339_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 timestamp with a zone ("2026-01-02T03:04:05.678Z").

    Raises ValueError with a short reason when it is not one.
    """
    if len(text) > 40:
        raise ValueError("is not an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("is not an RFC 3339 timestamp (e.g. 2026-01-02T03:04:05Z)") from None
    if parsed.tzinfo is None:
        raise ValueError("RFC 3339 timestamp lacks a zone (add Z or +00:00)")
    return int(parsed.timestamp() * 1000)


def format_rfc3339(ms: int) -> str:
    """The UTC RFC 3339 form of epoch milliseconds, with a Z."""
    instant = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return instant.isoformat(timespec="milliseconds").replace("+00:00", "Z")


_RELATIVE = re.compile(r"-(\d{1,6})(s|m|h|d|w)")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 7 * 86_400_000}


def parse_instant(text: str, now: int) -> int:
    """An instant given as epoch ms digits, RFC 3339, "now", or relative to `now` ("-1h", "-30d").

    Raises ValueError with a reason naming the accepted forms.
    """
    text = text.strip()
    if text == "now":
        return now
    if text.isascii() and text.isdigit() and len(text) <= 15:
        return int(text)
    match = _RELATIVE.fullmatch(text)
    if match:
        return now - int(match.group(1)) * _UNIT_MS[match.group(2)]
    try:
        return parse_rfc3339_ms(text)
    except ValueError:
        raise ValueError("must be epoch milliseconds, an RFC 3339 timestamp, or relative like -1h / -30d") from None
