"""The aiohttp application of one backend process: the routes of the roles it runs."""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web

from backend.http import agent_routes, auth_routes, history_routes, ingest_routes, ops, server_routes, task_routes, ws
from backend.http.context import CONTEXT, ApiContext
from backend.http.errors import error_middleware

MAX_BODY_BYTES = 4 * 1024 * 1024
"""Largest request body; a full batch of 10,000 readings is about 1 MB."""


def build_app(ctx: ApiContext, roles: Iterable[str], dispatcher: ws.WsDispatcher | None = None,
              max_body_bytes: int = MAX_BODY_BYTES) -> web.Application:
    """Routes: always /healthz, /readyz, /metrics; `ingest` adds POST readings; `history` the
    history and raw routes; `api` auth, servers, tasks and the plan, and the websocket."""
    roles = set(roles)
    app = web.Application(middlewares=[error_middleware], client_max_size=max_body_bytes)
    app[CONTEXT] = ctx
    ops.add_routes(app)
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
