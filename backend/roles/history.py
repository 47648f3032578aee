"""The history role: downsampled history and raw readings from the time-series store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.history import HistoryService

if TYPE_CHECKING:
    from backend.roles.context import RoleContext

NEEDS = frozenset({"timeseries", "registry"})


async def start(backend: RoleContext) -> None:
    assert backend.timeseries is not None and backend.context is not None
    backend.context.history = HistoryService(backend.timeseries)
