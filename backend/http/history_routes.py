"""History (downsampled) and raw readings (paged newest first) of one server's metric."""

from __future__ import annotations

from aiohttp import web

from backend.http.auth_routes import caller
from backend.http.context import context
from backend.http.json_body import json_response
from backend.services.timestamps import now_ms


async def history(request: web.Request) -> web.Response:
    await caller(request)
    body = await context(request).history.history(  # type: ignore[union-attr]
        request.match_info["server_id"], request.query, now_ms()
    )
    return json_response(body)


async def raw_readings(request: web.Request) -> web.Response:
    await caller(request)
    body = await context(request).history.raw(  # type: ignore[union-attr]
        request.match_info["server_id"], request.query, now_ms()
    )
    return json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/servers/{server_id}/history", history)
    app.router.add_get("/api/v1/servers/{server_id}/readings", raw_readings)
