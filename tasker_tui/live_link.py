"""The TUI's live connection: websocket frames into `FleetState`, reconnecting with backoff.

Run by the app as one worker. It subscribes to every server's power and CO2, reloads the
registry (and each server's latest values) on every (re)connect so nothing missed while away is
lost, and reports its state through a callback so the banner can say what is happening.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tasker.backoff import RetryBackoff
from tasker_tui.fleet_state import FleetState

if TYPE_CHECKING:
    from tasker.client import TaskerClient
    from tasker_tui.chat import ChatState

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
# Each delay is spread over ±20 %, so that many TUIs do not reconnect in lockstep.
BACKOFF_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """Where the live connection stands; `retry_at` is a `time.monotonic()` instant."""

    state: str  # idle (not logged in yet) | connecting | live | down | unauthorized
    message: str = ""
    attempt: int = 0
    retry_at: float | None = None

    @property
    def live(self) -> bool:
        return self.state == "live"


class LiveLink:
    """Keeps one websocket open to the backend for as long as `run` runs."""

    def __init__(
        self,
        client: TaskerClient,
        fleet: FleetState,
        chat: ChatState,
        on_status: Callable[[LinkStatus], None],
        on_registry: Callable[[], None] | None = None,
        on_plan: Callable[[Mapping[str, Any] | None], None] | None = None,
    ) -> None:
        self.client = client
        self.fleet = fleet
        self.chat = chat
        self.on_status = on_status
        self.on_registry = on_registry or (lambda: None)
        # Called with each `plan` frame, and with None on every (re)connect: frames missed while
        # away are not replayed, so the tasks and the plan must be read again.
        self.on_plan = on_plan or (lambda frame: None)
        self.backoff = RetryBackoff(BACKOFF_FIRST_S, BACKOFF_MAX_S, jitter=BACKOFF_JITTER)
        self.frames = 0
        # Bumped on every (re)connect and on every "lagging" notice: screens that keep their
        # own series refetch history when it changes, to fill what live delivery missed.
        self.epoch = 0

    async def run(self) -> None:
        """Connect, follow, and reconnect forever; returns only when the token is refused."""
        from tasker.client import ApiError, Unauthorized

        while True:
            self.on_status(LinkStatus("connecting", f"connecting to {self.client.base_url}", self.backoff.failures))
            try:
                await self._follow()
            except Unauthorized as exc:
                self._disconnected()
                self.on_status(LinkStatus("unauthorized", exc.message))
                return
            except (ApiError, OSError) as exc:
                message = exc.message if isinstance(exc, ApiError) else str(exc)
                self._disconnected()
                delay = self.backoff.failed()
                self.on_status(LinkStatus("down", message, self.backoff.failures, time.monotonic() + delay))
                await asyncio.sleep(delay)

    def _disconnected(self) -> None:
        self.fleet.connected = False
        self.fleet.readings_version += 1
        self.chat.attach_sender(None)

    async def _follow(self) -> None:
        from tasker.client import BackendUnavailable

        async with self.client.live() as live:
            # Subscribe before reloading: frames that arrive meanwhile wait in the socket and are
            # applied on top of the reload, so nothing between the two is lost.
            await live.subscribe("*", ["power", "co2"])
            fleet = await self.client.read_servers()
            self.fleet.set_fleet(fleet.servers, fleet.latest)
            self.fleet.connected = True
            self.epoch += 1
            self.backoff.succeeded()
            self.chat.attach_sender(live.send)
            self.on_registry()
            self.on_plan(None)
            self.on_status(LinkStatus("live", f"live from {self.client.base_url}"))
            async for frame in live:
                self.frames += 1
                self.dispatch(frame)
        raise BackendUnavailable(0, "the websocket ended", unreachable=True)

    def dispatch(self, frame: Mapping[str, Any]) -> None:
        """Apply one server frame to the TUI's state (no drawing happens here)."""
        kind = frame.get("type")
        if kind == "readings":
            self.fleet.apply_readings(frame.get("readings") or ())
        elif kind == "registry":
            server = frame.get("server")
            if isinstance(server, dict):
                self.fleet.apply_registry(str(frame.get("event")), server)
                self.on_registry()
        elif kind == "plan":
            self.on_plan(frame)
        elif kind == "error" and frame.get("code") == "lagging":
            self.epoch += 1
            self.on_plan(None)  # plan frames may be among those dropped
        elif isinstance(kind, str) and kind.startswith("chat."):
            self.chat.handle_frame(frame)
