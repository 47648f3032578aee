"""The scheduler role: plans every task onto a server and time window, one process at a time
(by the registry lease), re-planning on task and server changes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.scheduler import Scheduler

if TYPE_CHECKING:
    from backend.bootstrap import Backend

# The time-series store tells which servers went stale (no readings for 2 minutes).
NEEDS = frozenset({"broker", "registry", "timeseries"})


async def start(backend: Backend) -> None:
    assert backend.registry is not None and backend.broker is not None
    scheduler = Scheduler(backend.registry, backend.broker, backend.timeseries)
    await scheduler.start()
    # Closed with the adapters (before the registry it releases its lease in), on shutdown.
    backend._started.append(("scheduler", scheduler))
