"""Slowing password guessing without locking real users out.

Two parts, both in memory per api process (with N processes behind a balancer an attacker
gets N times the allowance):

- `LoginThrottle`: failures are counted per (username, client address) pair. A pair's first
  `FREE_FAILURES` cost nothing; then it waits before trying again, 1 s, and twice as long after
  each further failure (2 s, 4 s ... at most `MAX_DELAY_S`). Nobody is locked out by someone else: wrong
  passwords for alice from one address do not slow alice at another, nor bob behind the same
  NAT. Attempts are marked *suspect* when their pair, address or username failed lately; while
  the whole process sees more than `GLOBAL_FAILURES` failures a minute, suspect attempts are
  refused at once (429) and clean ones still go through.
- `PasswordGate`: at most `slots` password hashes at once (scrypt costs ~16 MiB and tens of ms
  of a core each); attempts are served least suspect first, and no more than
  `max_suspect_waiting` suspect attempts queue, so a flood of wrong logins cannot make a real
  login wait behind it.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

FREE_FAILURES = 3
"""Failures one (username, address) pair may make in a row without waiting; then it waits 1 s,
and twice as long after each further failure."""
FIRST_DELAY_S = 1.0
MAX_DELAY_S = 300.0
FORGET_AFTER_S = 900.0
"""A pair, address or username with no failure for this long starts afresh."""
SUSPECT_ADDRESS_FAILURES = 10
"""Failures from one address (any usernames) that make its attempts suspect."""
SUSPECT_USER_FAILURES = 10
"""Failures for one username (any addresses) that make attempts at it suspect."""
GLOBAL_FAILURES = 300
"""Failures a minute in this process above which suspect attempts are refused outright."""
GLOBAL_WINDOW_S = 60.0
HASH_SLOTS = 2
MAX_SUSPECT_WAITING = 32


class TooManyAttempts(Exception):
    """Too many failed logins lately (HTTP 429); `retry_after_s` says when to try again."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Attempt:
    """How much is known against a login attempt: `suspect` past the thresholds above, and a
    `score` (failures and attempts in flight of its pair, username and address) that orders
    password checks, least suspect first."""

    suspect: bool
    score: int


@dataclass(slots=True)
class _Record:
    failures: int = 0
    last: float = 0.0
    pending: int = 0


class LoginThrottle:
    """Growing delays per (username, address), suspicion per address and username, and a global
    bound on failures; see the module docstring."""

    def __init__(
        self,
        free_failures: int = FREE_FAILURES,
        first_delay_s: float = FIRST_DELAY_S,
        max_delay_s: float = MAX_DELAY_S,
        forget_after_s: float = FORGET_AFTER_S,
        global_failures: int = GLOBAL_FAILURES,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free_failures = free_failures
        self.first_delay_s = first_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.global_failures = global_failures
        self.max_keys = max_keys
        self._clock = clock
        self._records: dict[tuple[str, ...], _Record] = {}
        self._recent: deque[float] = deque()  # every failure of the last GLOBAL_WINDOW_S

    def _get(self, key: tuple[str, ...], now: float) -> _Record:
        record = self._records.get(key)
        if record is not None and record.pending == 0 and now - record.last > self.forget_after_s:
            del self._records[key]
            record = None
        if record is None:
            # Bounded memory: past max_keys the longest-known keys go (insertion order), in O(1)
            # per attempt even when an attacker sprays names and addresses.
            while len(self._records) >= self.max_keys:
                del self._records[next(iter(self._records))]
            record = self._records[key] = _Record()
        return record

    def _wait_s(self, record: _Record, now: float) -> float:
        over = record.failures - self.free_failures
        if over < 0:
            return 0.0
        delay = min(self.max_delay_s, self.first_delay_s * 2 ** min(over, 32))
        return record.last + delay - now

    def begin(self, username: str, address: str | None) -> Attempt:
        """Count an attempt in and say how suspect it is; raise TooManyAttempts when its pair
        must still wait, or when it is suspect while failures run over the global bound."""
        now = self._clock()
        pair = self._get(("pair", username, address or ""), now)
        wait = self._wait_s(pair, now)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyAttempts(
                f"too many failed logins for user {username!r} from this address "
                f"({pair.failures} lately); try again in {seconds} s",
                seconds,
            )
        if pair.pending and pair.failures + pair.pending >= self.free_failures:
            raise TooManyAttempts(
                f"a login for user {username!r} from this address is still being checked; try again in 1 s", 1
            )
        user = self._get(("user", username), now)
        by_address = self._get(("address", address or ""), now)
        # Attempts still being checked count as failures, so a burst is suspect before it fails.
        against_user = user.failures + user.pending
        against_address = by_address.failures + by_address.pending
        suspect = (
            pair.failures > 0 or against_user >= SUSPECT_USER_FAILURES or against_address >= SUSPECT_ADDRESS_FAILURES
        )
        while self._recent and self._recent[0] <= now - GLOBAL_WINDOW_S:
            self._recent.popleft()
        if suspect and len(self._recent) >= self.global_failures:
            raise TooManyAttempts("too many failed logins on this server right now; try again in 5 s", 5)
        for record in (pair, user, by_address):
            record.pending += 1
        return Attempt(suspect, pair.failures + against_user + against_address)

    def end(self, username: str, address: str | None, succeeded: bool | None) -> None:
        """The attempt begun for (username, address) is over: True when the password was right,
        False when not, None when it could not be checked (a registry outage counts for nobody)."""
        now = self._clock()
        keys = (("pair", username, address or ""), ("user", username), ("address", address or ""))
        for key in keys:
            record = self._records.get(key)
            if record is None:
                continue
            record.pending = max(0, record.pending - 1)
            if succeeded is False:
                record.failures += 1
                record.last = now
            elif succeeded and key[0] != "address":
                # Not the address's: one valid account must not whitewash an address guessing others.
                record.failures = 0
        if succeeded is False:
            self._recent.append(now)


class PasswordGate:
    """At most `slots` password checks at once; clean attempts first, the least suspect of them
    first, then in arrival order."""

    def __init__(self, slots: int = HASH_SLOTS, max_suspect_waiting: int = MAX_SUSPECT_WAITING) -> None:
        self.slots = slots
        self.max_suspect_waiting = max_suspect_waiting
        self._busy = 0
        self._waiting: list[tuple[bool, int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._suspect_waiting = 0

    @asynccontextmanager
    async def slot(self, attempt: Attempt) -> AsyncIterator[None]:
        """Hold a hashing slot for the block; TooManyAttempts when too many suspect attempts wait."""
        suspect = attempt.suspect
        if self._busy >= self.slots or self._waiting:
            if suspect and self._suspect_waiting >= self.max_suspect_waiting:
                raise TooManyAttempts("too many logins being checked right now; try again in 1 s", 1)
            ticket: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (suspect, attempt.score, next(self._order), ticket))
            self._suspect_waiting += suspect
            try:
                await ticket
            except asyncio.CancelledError:
                if ticket.done() and not ticket.cancelled():
                    self._release()  # granted just as we left: pass the slot on
                else:
                    self._waiting = [w for w in self._waiting if w[3] is not ticket]
                    heapq.heapify(self._waiting)
                raise
            finally:
                self._suspect_waiting -= suspect
        else:
            self._busy += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            ticket = heapq.heappop(self._waiting)[3]
            if not ticket.done():
                ticket.set_result(None)  # the slot passes straight to it
                return
        self._busy -= 1
