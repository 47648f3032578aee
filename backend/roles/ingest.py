"""The ingest role: validated batches to the broker, answered 202 once confirmed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.ingest import IngestService, ServerDirectory
from backend.services.wire import REGISTRY_CHANNEL

if TYPE_CHECKING:
    from backend.roles.context import RoleContext

NEEDS = frozenset({"broker", "registry"})


async def start(backend: RoleContext) -> None:
    assert backend.broker is not None and backend.registry is not None and backend.context is not None
    directory = ServerDirectory(backend.registry)
    backend.context.ingest = IngestService(backend.broker, directory, backend.telemetry)
    # Its background refresh stops before the registry it reads closes.
    backend.on_close("server directory", directory.close)

    async def on_registry_change(body: bytes) -> None:
        directory.on_registry_event(body)

    # A server added on any api process is known to this ingest before its sensor posts.
    await backend.broker.subscribe_events(REGISTRY_CHANNEL, on_registry_change)
