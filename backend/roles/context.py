"""What a role may use of the process it is wired into, and what it hands back.

`backend.bootstrap.Backend` is the implementation; roles see only this Protocol, so the
composition root imports the roles and never the other way round.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from backend.http.context import ApiContext
    from backend.http.ws import WsDispatcher
    from backend.ports import Broker, Registry, TimeSeriesStore
    from backend.services.agents import AgentSettings
    from backend.services.live import LiveHub
    from backend.services.packager import Packager
    from backend.services.scheduler import SchedulerSettings
    from backend.services.telemetry import Telemetry


class RoleContext(Protocol):
    """One backend process while its roles start: its adapters (started, or None when no
    chosen role needs them), settings and shared parts."""

    broker: Broker | None
    timeseries: TimeSeriesStore | None
    registry: Registry | None
    context: ApiContext | None
    """The HTTP app's services; each role fills in its own."""
    dispatcher: WsDispatcher
    telemetry: Telemetry
    prefetch: int
    scheduler_settings: SchedulerSettings | None
    agent_settings: AgentSettings | None
    packager: Packager | None
    """Set by the packager role: the process stops it right after the broker, before the rest."""
    hub: LiveHub | None
    """Set by the api role: the websockets' live fan-out."""

    def on_close(self, name: str, close: Callable[[], Awaitable[object]]) -> None:
        """Have `close()` run when the process closes; see `backend.bootstrap.Backend.close`."""
