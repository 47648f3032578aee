"""The api role: auth, the server registry, tasks and the plan, and the websocket with its live
fan-out.

Websocket features register their frame types on `backend.dispatcher` in `start_features`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backend.services.agents import AgentService
from backend.services.chat import ChatService
from backend.services.live import LiveHub
from backend.services.servers import ServerService
from backend.services.tasks import TaskService
from backend.services.wire import LIVE_CHANNEL, PLAN_CHANNEL, REGISTRY_CHANNEL

if TYPE_CHECKING:
    from backend.roles.context import RoleContext

# The time-series store gives the fleet list its latest values and serves `purge`.
NEEDS = frozenset({"broker", "registry", "timeseries"})


async def start(backend: RoleContext) -> None:
    ctx = backend.context
    assert ctx is not None and backend.registry is not None and backend.broker is not None
    ctx.servers = ServerService(backend.registry, backend.broker, backend.timeseries)
    ctx.tasks = TaskService(backend.registry, backend.broker)
    ctx.agents = AgentService(backend.registry, ctx.tasks, backend.agent_settings)
    ctx.timeseries = backend.timeseries
    backend.hub = ctx.hub = LiveHub()
    await backend.broker.subscribe_events(LIVE_CHANNEL, backend.hub.on_readings_event)
    await backend.broker.subscribe_events(REGISTRY_CHANNEL, backend.hub.on_registry_event)
    await backend.broker.subscribe_events(PLAN_CHANNEL, backend.hub.on_plan_event)
    await start_features(backend)


async def start_features(backend: RoleContext) -> None:
    """Websocket features beyond live readings and registry events (chat) are started here:
    each registers its frame types on `backend.dispatcher` and subscribes to its own channel."""
    assert backend.registry is not None and backend.broker is not None
    chat = ChatService(backend.registry, backend.broker)
    chat.register(backend.dispatcher)
    await chat.start()
    # Closed before the registry it reads.
    backend.on_close("chat", chat.close)
