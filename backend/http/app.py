"""The aiohttp application of one backend process: the routes of the roles it runs."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from backend.http import (
    agent_routes,
    auth_routes,
    history_routes,
    ingest_routes,
    openapi,
    ops,
    server_routes,
    task_routes,
    ws,
)
from backend.http.context import CONTEXT, ApiContext
from backend.http.errors import BodyTimeout, error_middleware

if TYPE_CHECKING:
    from tasker.config import Settings

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body; a full batch of 10,000 readings is about 1 MB."""
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ClientTimeouts:
    """How long a client may take to send its request, so slow or stalled clients (slowloris)
    cannot hold connections: TASKER_HEADER_TIMEOUT and TASKER_BODY_TIMEOUT."""

    header_s: float = 10.0
    """A connection without a complete request head this long after it opened or after its
    previous answer is closed (so an idle keep-alive lasts as long)."""
    body_s_per_mib: float = 30.0
    """A request body not received within this many seconds per started MiB gets a 408."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ClientTimeouts:
        return cls(settings.header_timeout_s, settings.body_timeout_s)

    def body_s(self, length: int | None, max_body_bytes: int) -> float:
        """Seconds allowed for a body of `length` bytes (None, chunked: the largest allowed)."""
        size = max_body_bytes if length is None else min(length, max_body_bytes)
        return self.body_s_per_mib * max(1, math.ceil(size / MIB))


TIMEOUTS = web.AppKey("tasker_client_timeouts", ClientTimeouts)


@web.middleware
async def body_watchdog(request: web.Request, handler: Any) -> web.StreamResponse:
    """Fail the body's reads with BodyTimeout (408) once its time is up. The handler may not be
    reading yet (checking a token, say): its read then fails at once."""
    payload = request.content
    if not request.body_exists or payload.is_eof():
        return await handler(request)
    allowed_s = request.app[TIMEOUTS].body_s(request.content_length, request.client_max_size)

    def expire() -> None:
        if not payload.is_eof():
            payload.set_exception(BodyTimeout(allowed_s))

    timer = asyncio.get_running_loop().call_later(allowed_s, expire)
    try:
        return await handler(request)
    finally:
        timer.cancel()


def build_app(
    ctx: ApiContext,
    roles: Iterable[str],
    dispatcher: ws.WsDispatcher | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    timeouts: ClientTimeouts | None = None,
) -> web.Application:
    """Routes: always /healthz, /readyz, /metrics and the OpenAPI document; `ingest` adds POST
    readings; `history` the history and raw routes; `api` auth, servers, tasks and the plan, and
    the websocket."""
    roles = set(roles)
    timeouts = timeouts or ClientTimeouts()
    # keepalive_timeout is aiohttp's one timer for a connection without a request in progress:
    # armed when the connection opens and after each answer, it closes the connection if no
    # complete request head has come by then, which is the header timeout.
    app = web.Application(
        middlewares=[error_middleware, body_watchdog],
        client_max_size=max_body_bytes,
        handler_args={"keepalive_timeout": timeouts.header_s},
    )
    app[CONTEXT] = ctx
    app[TIMEOUTS] = timeouts
    ops.add_routes(app)
    openapi.add_routes(app)
    if "ingest" in roles:
        ingest_routes.add_routes(app)
    if "history" in roles:
        history_routes.add_routes(app)
    if "api" in roles:
        auth_routes.add_routes(app)
        server_routes.add_routes(app)
        task_routes.add_routes(app)
        agent_routes.add_routes(app)
        ws.add_routes(app, dispatcher or ws.default_dispatcher())
    return app
