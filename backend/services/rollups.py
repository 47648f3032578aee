"""Rollups recomputed per dirty minute, debounced: many writes into a minute, one recomputation.

The packager writes raw rows (`TimeSeriesStore.write_raw`), then marks the 60 s buckets they
touched here (`DirtyMinutes.mark`) and acks its messages only once the recomputation covering
them has returned. Recomputations run one at a time, each beginning at least `interval_s` after
the previous one began, and each takes every minute marked since: with the fleet reporting at
1 Hz a minute bucket is recomputed about once per interval, where recomputing per write re-read
it up to 60 times a minute at light load (and cost Cassandra 2-4x the raw write, BENCHMARKS.md).
A write after a quiet spell is recomputed at once, so sporadic writes wait for no timer.

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


class DirtyMinutes:
    """Minute buckets waiting for their rollups, recomputed together by `recompute`.

    `recompute(minutes)` must return only once the rollups are durable, retrying outages itself
    (the packager's backoff); an exception it raises reaches every caller waiting on that round.
    """

    def __init__(self, recompute: Callable[[Collection[MinuteBucket]], Awaitable[None]],
                 interval_s: float = INTERVAL_S) -> None:
        if interval_s < 0:
            raise ValueError(f"interval_s must be at least 0, got {interval_s}")
        self._recompute = recompute
        self.interval_s = interval_s
        self._dirty: set[MinuteBucket] = set()
        self._round: asyncio.Future[None] | None = None  # settles when `_dirty` is recomputed
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._last_start = float("-inf")
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
        if self._round is not None:
            self._round.cancel()
            self._round = None
        self._dirty.clear()

    def mark(self, minutes: Collection[MinuteBucket]) -> asyncio.Future[None]:
        """Note minutes whose raw rows were just written; the future settles once a
        recomputation that began after this call has covered all of them. Await it shielded
        (`asyncio.shield`): other callers share it."""
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
            await self._wake.wait()
            wait = self._last_start + self.interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the debounce: minutes marked meanwhile join this round
            self._wake.clear()
            minutes, self._dirty = self._dirty, set()
            round_, self._round = self._round, None
            if round_ is None:
                continue
            self._last_start = time.monotonic()
            try:
                await self._recompute(minutes)
            except asyncio.CancelledError:
                round_.cancel()
                raise
            except Exception as exc:  # noqa: BLE001 - the waiting messages are nacked and redelivered
                log.warning("rollup recomputation of %d minutes failed: %r", len(minutes), exc)
                round_.set_exception(exc)
                round_.exception()  # retrieved: a round nobody awaits any more must not log it again
                continue
            self.rounds += 1
            self.minutes_recomputed += len(minutes)
            log.debug("rollups of %d minutes recomputed in %.3f s", len(minutes),
                      time.monotonic() - self._last_start)
            round_.set_result(None)
