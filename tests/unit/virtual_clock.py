"""A clock whose time moves only when a test says so, for code that waits (resyncs, ticks).

`time()` reads it and `sleep()` waits on it; `advance(seconds)` moves it forward, waking each
sleeper in the order its time comes and letting the event loop run what that wakes.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools


class VirtualClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, waking sleepers one instant at a time."""
        until = self.now + seconds
        await settle()
        while self._sleepers and self._sleepers[0][0] <= until:
            wake_at, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, wake_at)
            if not future.done():
                future.set_result(None)
            await settle()
        self.now = until


async def settle(rounds: int = 20) -> None:
    """Let the event loop run what is ready (callbacks chain over a few iterations)."""
    for _ in range(rounds):
        await asyncio.sleep(0)
