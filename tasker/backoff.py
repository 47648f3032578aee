"""Exponential backoff for retries: a delay that doubles per consecutive failure, up to a bound."""

from __future__ import annotations

import random

# Doubling stops counting here: 2**32 times any sensible initial delay is past every maximum,
# and a float would overflow long before an unbounded exponent stopped growing.
_MAX_DOUBLINGS = 32


class RetryBackoff:
    """Delay before the next attempt, doubling per consecutive failure up to `maximum`.

    A broker consumer uses it before giving a failed message back: without it a handler whose
    store is down would receive the same message again at once, in a tight loop; with it the
    consumer slows to one attempt per `maximum` seconds per slot.

    `jitter` (0 by default) spreads each delay at random over ±that fraction, so that many
    clients that lost the same server do not all come back in the same instant.
    """

    def __init__(self, initial: float, maximum: float, *, jitter: float = 0.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self._failures = 0

    @property
    def failures(self) -> int:
        """Consecutive failures since the last success (what a status line calls the attempt)."""
        return self._failures

    def failed(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        doublings = min(self._failures, _MAX_DOUBLINGS)
        delay = min(self.maximum, self.initial * 2**doublings) if self.initial > 0 else 0.0
        self._failures += 1
        if self.jitter:
            delay *= random.uniform(1 - self.jitter, 1 + self.jitter)
        return delay

    def succeeded(self) -> None:
        self._failures = 0
