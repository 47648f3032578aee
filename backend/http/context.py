"""What the HTTP handlers of one process can use; services absent when their role is not run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from backend.ports import TimeSeriesStore
from backend.services.agents import AgentService
from backend.services.auth import AuthService
from backend.services.history import HistoryService
from backend.services.ingest import IngestService
from backend.services.live import LiveHub
from backend.services.servers import ServerService
from backend.services.tasks import TaskService
from backend.services.telemetry import Telemetry

Check = Callable[[], Awaitable[None]]


@dataclass(slots=True)
class ApiContext:
    """The services behind the routes. `checks` maps "broker"/"timeseries"/"registry" to pings."""

    telemetry: Telemetry
    checks: dict[str, Check] = field(default_factory=dict)
    auth: AuthService | None = None
    ingest: IngestService | None = None
    servers: ServerService | None = None
    tasks: TaskService | None = None
    agents: AgentService | None = None
    history: HistoryService | None = None
    timeseries: TimeSeriesStore | None = None
    hub: LiveHub | None = None


CONTEXT = web.AppKey("tasker_context", ApiContext)


def context(request: web.Request) -> ApiContext:
    return request.app[CONTEXT]
