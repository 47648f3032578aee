"""The packager role: consume the metric work queues into the time-series store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.packager import Packager

if TYPE_CHECKING:
    from backend.roles.context import RoleContext

NEEDS = frozenset({"broker", "timeseries"})


async def start(backend: RoleContext) -> None:
    assert backend.broker is not None and backend.timeseries is not None
    backend.packager = Packager(backend.broker, backend.timeseries, backend.telemetry, prefetch=backend.prefetch)
    await backend.packager.start()
