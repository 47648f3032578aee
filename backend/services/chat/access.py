"""Who may see and write which chat conversation, how often, and the checks on chat frame fields.

One conversation per sysadmin, keyed by the sysadmin's username. Support staff (engineers and
admins) see and answer every conversation; a sysadmin sees and writes only their own.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

from backend.services.auth import Principal

SUPPORT_ROLES = frozenset({"engineer", "admin"})
"""Roles that see and answer every conversation."""
HISTORY_PAGE_MAX = 100
"""Most messages one `chat.history` answer holds."""
HISTORY_PAGE_DEFAULT = 50
RATE_BURST = 10
"""Messages a user may send at once before the rate limit applies..."""
RATE_PER_S = 1.0
"""...and how many per second they regain (per api process)."""
MAX_SINCE_ENTRIES = 10_000

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CLIENT_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class ChatRefused(Exception):
    """A chat frame that is refused; answered with a `chat.error` frame, the socket stays open."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields

    def frame(self, client_key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "chat.error", "code": self.code, "message": self.message}
        if client_key is not None:
            out["client_key"] = client_key
        out.update(self.fields)
        return out


def is_support(principal: Principal) -> bool:
    return principal.role in SUPPORT_ROLES


def can_see(principal: Principal, conversation: str) -> bool:
    """Support staff see every conversation; a sysadmin only their own."""
    return is_support(principal) or (principal.role == "sysadmin" and conversation == principal.name)


def conversation_of(principal: Principal, frame: dict[str, Any]) -> str:
    """The conversation a frame is about: a sysadmin's own (the field may be left out), or the
    one a support user names. ChatRefused when it is malformed or not theirs to see."""
    named = frame.get("conversation")
    if named is None:
        if principal.role == "sysadmin":
            return principal.name
        raise ChatRefused("bad_request", "conversation is required: the sysadmin's username")
    if not isinstance(named, str) or not _NAME.fullmatch(named):
        raise ChatRefused("bad_request", "conversation must be a username (1-64 of A-Z a-z 0-9 . _ -)")
    if not can_see(principal, named):
        raise ChatRefused("forbidden", "a sysadmin can only use their own conversation")
    return named


def client_key_of(frame: dict[str, Any]) -> str | None:
    """The frame's idempotency key when it is well formed (else None)."""
    key = frame.get("client_key")
    return key if isinstance(key, str) and _CLIENT_KEY.fullmatch(key) else None


def require_client_key(frame: dict[str, Any]) -> str:
    key = client_key_of(frame)
    if key is None:
        raise ChatRefused(
            "bad_request",
            "client_key is required: 1-64 of A-Z a-z 0-9 _ . : - "
            "(a random id the client keeps until the message is acknowledged)",
        )
    return key


def optional_count(frame: dict[str, Any], field: str, minimum: int = 0) -> int | None:
    value = frame.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value < 2**63:
        raise ChatRefused("bad_request", f"{field} must be an integer of at least {minimum}")
    return value


def page_limit(frame: dict[str, Any]) -> int:
    limit = optional_count(frame, "limit", 1)
    if limit is None:
        return HISTORY_PAGE_DEFAULT
    if limit > HISTORY_PAGE_MAX:
        raise ChatRefused(
            "bad_request",
            f"limit must be 1 to {HISTORY_PAGE_MAX} (the largest history page); page back with before=<oldest id>",
        )
    return limit


def since_of(frame: dict[str, Any]) -> dict[str, int]:
    """`since` of a `chat.join`: conversation -> last id the client has (missing = {})."""
    since = frame.get("since")
    if since is None:
        return {}
    if (
        not isinstance(since, dict)
        or len(since) > MAX_SINCE_ENTRIES
        or not all(isinstance(k, str) and _NAME.fullmatch(k) for k in since)
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in since.values())
    ):
        raise ChatRefused("bad_request", 'since must map conversations to the last message id seen, e.g. {"alice": 17}')
    return dict(since)


class RateLimit:
    """A token bucket per user: `burst` messages at once, then `per_s` a second."""

    def __init__(
        self, burst: int = RATE_BURST, per_s: float = RATE_PER_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.burst = burst
        self.per_s = per_s
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # user -> (tokens, at)

    def take(self, user: str) -> None:
        """Spend one message of `user`'s allowance; ChatRefused("rate_limited") when none is left."""
        now = self._clock()
        tokens, at = self._buckets.get(user, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.per_s)
        if tokens < 1.0:
            wait_ms = math.ceil((1.0 - tokens) / self.per_s * 1000)
            self._buckets[user] = (tokens, now)
            raise ChatRefused(
                "rate_limited",
                f"too many messages: at most {self.burst} at once and {self.per_s * 60:g} a minute; "
                f"retry in {wait_ms / 1000:.1f} s",
                retry_after_ms=wait_ms,
            )
        self._buckets[user] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # forget users whose bucket has long been full again
            horizon = now - self.burst / self.per_s
            self._buckets = {u: b for u, b in self._buckets.items() if b[1] >= horizon}
