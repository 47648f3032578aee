"""The scheduler role: plans every task onto a server and time window, one process at a time
(by the registry lease), re-planning on task and server changes; the same process queues again
the tasks of servers whose agent went silent and measures the CO2 of tasks that ended."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.scheduler import Scheduler
from backend.services.task_meter import TaskMeter

if TYPE_CHECKING:
    from backend.roles.context import RoleContext

# The time-series store tells which servers went stale (no readings for 2 minutes) and holds
# the readings tasks are measured from.
NEEDS = frozenset({"broker", "registry", "timeseries"})


async def start(backend: RoleContext) -> None:
    assert backend.registry is not None and backend.broker is not None
    scheduler = Scheduler(backend.registry, backend.broker, backend.timeseries, backend.scheduler_settings)
    await scheduler.start()
    # Closed before the registry, in which it releases its lease.
    backend.on_close("scheduler", scheduler.close)
    if backend.timeseries is not None:
        settings = scheduler.settings
        meter = TaskMeter(
            backend.registry,
            backend.timeseries,
            backend.broker,
            scheduler.holds_lease,
            every_s=settings.measure_every_s,
            settle_s=settings.measure_settle_s,
        )
        await meter.start()
        backend.on_close("task meter", meter.close)
