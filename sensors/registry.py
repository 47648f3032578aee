"""Following the backend's registry: which servers exist right now, with their specs.

The follower listens to the websocket's registry events (added/updated/removed arrive at once)
and re-lists the servers whenever it (re)connects and every `resync_s`, so a missed event
heals itself. Where the websocket is refused, it polls the server list every `poll_s` seconds
instead. Either way a server added or removed is noticed within one emulation interval.
Through a backend outage it keeps the last known fleet and retries with backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from sensors.model import ServerSpec
from sensors.sender import sensor_backoff
from tasker.backoff import RetryBackoff
from tasker.client import ApiError, BackendUnavailable, Forbidden, NotFoundError, TaskerClient, Unauthorized
from tasker.models import ModelError, Server

log = logging.getLogger("tasker.sensors")


class RegistryRefused(Exception):
    """The credentials given cannot read the server list; the message says what to do."""

    user_facing = True  # shown to the user as one line by the CLI


class RegistryFollower:
    """Keeps `specs` (server id -> ServerSpec) in step with the backend's registry.

    `version` increases on every change so a reader can cheaply tell whether to re-sync.
    """

    REFUSED_RETRY_S = 30.0
    """How often to try again when the registry refused credentials that worked before."""

    def __init__(
        self,
        client: TaskerClient,
        *,
        poll_s: float = 1.0,
        resync_s: float = 60.0,
        use_websocket: bool = True,
        backoff: RetryBackoff | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self.client = client
        self.poll_s = poll_s
        self.resync_s = resync_s
        self.use_websocket = use_websocket
        self.backoff = backoff or sensor_backoff(0.5, 10.0)
        # Every wait (resync, poll, retry) goes through it, so a test can run them on a fake clock.
        self._sleep = sleep
        self.specs: dict[str, ServerSpec] = {}
        self.version = 0
        self.loaded = asyncio.Event()
        self.mode = "starting"
        self.last_error = ""

    # --- applying changes ---------------------------------------------------------------------

    def _replace(self, servers: Iterable[Server]) -> None:
        specs = {server.id: ServerSpec.of(server) for server in servers}
        if specs != self.specs:
            self.specs = specs
            self.version += 1
        self.loaded.set()

    def apply_event(self, frame: Mapping[str, Any]) -> None:
        """Apply one websocket `registry` frame; a frame whose server does not parse is skipped."""
        raw = frame.get("server")
        if frame.get("event") == "removed":
            # A removal may carry no more than the id.
            sid = raw.get("id") if isinstance(raw, Mapping) else None
            if isinstance(sid, str) and self.specs.pop(sid, None) is not None:
                self.version += 1
            return
        try:
            spec = ServerSpec.of(Server.from_json(raw))
        except ModelError:
            return
        sid = spec.id
        if self.specs.get(sid) != spec:
            self.specs[sid] = spec
            self.version += 1

    async def refresh(self) -> None:
        """Re-list every server from the backend."""
        try:
            fleet = await self.client.read_servers()
        except ModelError as exc:
            # A garbled list: keep the last known fleet and retry as after an outage.
            raise ApiError(0, f"the server list cannot be read: {exc}") from None
        except (Unauthorized, Forbidden) as exc:
            raise RegistryRefused(
                f"cannot read the server list ({exc.message}): log in with `tasker login` or set TASKER_TOKEN"
            ) from None
        except NotFoundError:
            raise RegistryRefused(
                f"{self.client.base_url} does not serve the server list (404): point --url at a backend process"
                " that runs the api role (readings may go to an ingest-only process with --ingest-url)"
            ) from None
        self._replace(fleet.servers)

    # --- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Follow the registry until cancelled.

        Raises RegistryRefused when the credentials cannot read the server list at the start.
        Once the fleet is known, a refusal (e.g. the session expired) leaves the last known fleet
        in place, shows the error, and retries slowly: the readings keep flowing.
        """
        while True:
            try:
                if self.use_websocket:
                    await self._follow_websocket()
                else:
                    await self._poll()
            except RegistryRefused as exc:
                if not self.loaded.is_set():
                    raise
                self.mode = "refused"
                self.last_error = str(exc)
                await self._sleep(self.REFUSED_RETRY_S)
            except Unauthorized:
                # The websocket did not take these credentials (e.g. an ingest key): poll instead.
                log.info("websocket refused the credentials; polling the server list instead")
                self.use_websocket = False
            except NotFoundError:
                # No websocket on this process (not an api role): polling says whether it lists servers.
                log.info("no websocket at %s; polling the server list instead", self.client.base_url)
                self.use_websocket = False
            except (BackendUnavailable, ApiError) as exc:
                self.mode = "retrying"
                self.last_error = exc.message
                await self._sleep(self.backoff.failed())

    async def _follow_websocket(self) -> None:
        async with self.client.live() as live:
            # List after connecting, so no change falls between the list and the first event.
            await self.refresh()
            self.mode = "websocket"
            self.backoff.succeeded()
            frames = aiter(live)
            # One pending read at a time, never cancelled by the resync timer: cancelling
            # `anext` (as wait_for does) closes the frame iterator for good.
            pending: asyncio.Future[Any] | None = None
            try:
                while True:
                    if pending is None:
                        pending = asyncio.ensure_future(anext(frames))
                    resync = asyncio.ensure_future(self._sleep(self.resync_s))
                    try:
                        done, _ = await asyncio.wait({pending, resync}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        resync.cancel()
                    if pending not in done:
                        await self.refresh()
                        continue
                    try:
                        frame = pending.result()
                    except StopAsyncIteration:
                        raise BackendUnavailable(0, "the websocket closed", unreachable=True) from None
                    finally:
                        pending = None
                    if frame.get("type") == "registry":
                        self.apply_event(frame)
            finally:
                if pending is not None:
                    pending.cancel()

    async def _poll(self) -> None:
        while True:
            await self.refresh()
            self.mode = "polling"
            self.backoff.succeeded()
            await self._sleep(self.poll_s)
