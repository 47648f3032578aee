"""Exponential backoff for retries: a delay that doubles per consecutive failure, up to a bound."""

from __future__ import annotations


class RetryBackoff:
    """Delay before the next attempt, doubling per consecutive failure up to `maximum`.

    A broker consumer uses it before giving a failed message back: without it a handler whose
    store is down would receive the same message again at once, in a tight loop; with it the
    consumer slows to one attempt per `maximum` seconds per slot.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._failures = 0

    def failed(self) -> float:
        """Record a failure and return how long to wait before the next attempt."""
        delay = min(self.maximum, self.initial * 2**self._failures) if self.initial > 0 else 0.0
        self._failures = min(self._failures + 1, 32)
        return delay

    def succeeded(self) -> None:
        self._failures = 0
