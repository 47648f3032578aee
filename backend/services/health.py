"""Watching the broker and stores: one log line when one goes away (with the reason) and one when
it is back, and a 0/1 gauge per dependency for /metrics. /readyz asks live; this remembers."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from backend.services.telemetry import Telemetry

log = logging.getLogger(__name__)

Check = Callable[[], Awaitable[None]]
INTERVAL_S = 2.0
CHECK_TIMEOUT_S = 2.0


class HealthWatch:
    """Pings each dependency every `interval_s` and logs only the transitions."""

    def __init__(self, checks: dict[str, Check], telemetry: Telemetry, interval_s: float = INTERVAL_S) -> None:
        self.checks = checks
        self.telemetry = telemetry
        self.interval_s = interval_s
        self.down_since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        for name in self.checks:
            self.telemetry.dependency_up.set(1, dependency=name)
        self._task = asyncio.create_task(self._run(), name="health-watch")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def check_once(self) -> None:
        results = await asyncio.gather(*(self._probe(check) for check in self.checks.values()))
        for name, problem in zip(self.checks, results):
            was_down = name in self.down_since
            if problem is not None and not was_down:
                self.down_since[name] = time.monotonic()
                log.warning("%s unavailable: %s", name, problem)
            elif problem is None and was_down:
                log.info("%s available again after %.1f s", name, time.monotonic() - self.down_since.pop(name))
            self.telemetry.dependency_up.set(0 if problem else 1, dependency=name)

    @staticmethod
    async def _probe(check: Check) -> str | None:
        try:
            await asyncio.wait_for(check(), CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure of a ping means "down", with its reason
            return str(exc) or type(exc).__name__
        return None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            await self.check_once()
