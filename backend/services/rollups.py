"""Rollups recomputed per dirty minute, debounced: many writes into a minute, one recomputation.

The packager writes raw rows (`TimeSeriesStore.write_raw`), then marks the 60 s buckets they
touched here (`DirtyMinutes.mark`) and acks its messages only once the recomputation covering
them has returned. Recomputations run one at a time, each beginning at least `interval_s` after
the previous one began, and each takes every minute marked since: with the fleet reporting at
1 Hz a minute bucket is recomputed about once per interval rather than at every write (which
would re-read it up to 60 times a minute).
A write after a quiet spell is recomputed at once, so sporadic writes wait for no timer.

Hours are recomputed less often: a round recomputes the 3600 s buckets (each re-read from its
sixty 60 s rollups) only when `hour_interval_s` has passed since the last round that did, and
then those of every minute recomputed since (at 1 reading per series per second, re-reading an
hour's sixty rollup rows every round would be the costliest part of the round). A
message is acked only once a round has also recomputed its hours, so the guarantee below holds
for hours too; the price is acks (and the newest hour of history) up to `hour_interval_s` later.

Correctness (DESIGN.md section 7) is the store's recompute-from-raw rule plus the late ack:
- a packager that crashes before the recomputation never acked its messages, so they are
  redelivered, written again and their minutes recomputed (by this or another packager);
- two packagers each recompute after their own raw rows are in, and the recomputation that
  began last wins, so the rollups converge to an aggregate of the raw rows.
The price: a message stays unacked up to one interval plus a recomputation longer, and history
of the newest minutes lags raw data by as much (raw readings, `latest` and live are not delayed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection

from backend.ports import MinuteBucket

log = logging.getLogger(__name__)

INTERVAL_S = 1.0
"""Least time between the starts of two recomputations. Longer saves more store work (a minute is
re-read at most 60 / interval times) but delays acks and the newest history by as much."""
HOUR_INTERVAL_S = 5.0
"""Least time between the starts of two recomputations that include the hours."""


class DirtyMinutes:
    """Minute buckets waiting for their rollups, recomputed together by `recompute`.

    `recompute(minutes, hours_of)` recomputes the 60 s buckets `minutes`, then the 3600 s
    buckets holding `hours_of`, and must return only once the rollups are durable, retrying
    outages itself (the packager's backoff); an exception it raises reaches every caller
    waiting on that round.
    """

    def __init__(
        self,
        recompute: Callable[[Collection[MinuteBucket], Collection[MinuteBucket]], Awaitable[None]],
        interval_s: float = INTERVAL_S,
        hour_interval_s: float = HOUR_INTERVAL_S,
    ) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be at least 0, got {interval_s}")
        if hour_interval_s < interval_s:
            raise ValueError(f"hour_interval_s must be at least interval_s ({interval_s}), got {hour_interval_s}")
        self._recompute = recompute
        self.interval_s = interval_s
        self.hour_interval_s = hour_interval_s
        self._dirty: set[MinuteBucket] = set()
        self._round: asyncio.Future[None] | None = None  # settles when `_dirty` is recomputed
        # Minutes recomputed whose hours are not yet, and the rounds waiting for those hours.
        self._hours_owed: set[MinuteBucket] = set()
        self._hour_waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_start = float("-inf")
        self._last_hours_start = float("-inf")
        self.rounds = 0
        """Recomputations that returned (how many times the store was asked)."""
        self.minutes_recomputed = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="rollup-recompute")

    async def close(self) -> None:
        """Stop; callers still waiting see CancelledError (their messages stay unacked)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for waiter in [self._round, *self._hour_waiters]:
            if waiter is not None:
                waiter.cancel()
        self._round = None
        self._hour_waiters.clear()
        self._dirty.clear()
        self._hours_owed.clear()

    def mark(self, minutes: Collection[MinuteBucket]) -> asyncio.Future[None]:
        """Note minutes whose raw rows were just written; the future settles once
        recomputations that began after this call have covered all of them and their hours.
        Await it shielded (`asyncio.shield`): other callers share it."""
        if self._task is None:
            raise RuntimeError("start the rollup recomputation first")
        loop = asyncio.get_running_loop()
        if not minutes:
            nothing: asyncio.Future[None] = loop.create_future()
            nothing.set_result(None)
            return nothing
        if self._round is None:
            self._round = loop.create_future()
        self._dirty.update(minutes)
        self._wake.set()
        return self._round

    async def _run(self) -> None:
        while True:
            hours_due_in = None
            if self._hours_owed:  # no new minutes must not leave hours owed
                hours_due_in = max(0.0, self._last_hours_start + self.hour_interval_s - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), hours_due_in)
            except TimeoutError:
                pass
            wait = self._last_start + self.interval_s - time.monotonic()
            if wait > 0 and self._round is not None:
                await asyncio.sleep(wait)  # the debounce: minutes marked meanwhile join this round
            self._wake.clear()
            minutes, self._dirty = self._dirty, set()
            round_, self._round = self._round, None
            if round_ is None and not self._hours_owed:
                continue
            now = time.monotonic()
            self._last_start = now
            with_hours = now - self._last_hours_start >= self.hour_interval_s
            if with_hours:
                self._last_hours_start = now
                hours_of, self._hours_owed = self._hours_owed | minutes, set()
                waiters, self._hour_waiters = self._hour_waiters, []
            else:
                hours_of, waiters = set(), []
            if round_ is not None:
                waiters.append(round_)
            try:
                await self._recompute(minutes, hours_of)
            except asyncio.CancelledError:
                for waiter in waiters:
                    waiter.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the waiting messages are nacked and redelivered
                log.warning(
                    "rollup recomputation of %d minutes (%d for hours) failed: %r", len(minutes), len(hours_of), exc
                )
                for waiter in waiters:
                    waiter.set_exception(exc)
                    waiter.exception()  # retrieved: a round nobody awaits any more must not log it again
                if with_hours:
                    self._last_hours_start = float("-inf")  # the redelivered messages' hours: at once
                continue
            self.rounds += 1
            self.minutes_recomputed += len(minutes)
            log.debug(
                "rollups of %d minutes (%d for hours) recomputed in %.3f s",
                len(minutes),
                len(hours_of),
                time.monotonic() - now,
            )
            if with_hours:
                for waiter in waiters:
                    waiter.set_result(None)
            else:
                self._hours_owed |= minutes
                self._hour_waiters.extend(waiters)
