"""Registry routes: list (with each server's latest values), get, create, patch, delete."""

from __future__ import annotations

import logging

from aiohttp import web

from backend.http.auth_routes import caller
from backend.http.context import context
from backend.http.errors import read_json
from backend.http.json_body import json_response
from backend.ports import Unavailable
from backend.services.audit import MAX_PAGE, audit_json
from backend.services.errors import InvalidField
from backend.services.servers import server_json

log = logging.getLogger(__name__)


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "false").lower()
    if value not in ("true", "false", "1", "0", "yes", "no"):
        raise InvalidField(name, "must be true or false")
    return value in ("true", "1", "yes")


async def list_servers(request: web.Request) -> web.Response:
    ctx = context(request)
    # Sensors read the fleet and its specs with their ingest key; they never write it.
    await caller(request, allow_ingest_key=True)
    records = await ctx.servers.list()  # type: ignore[union-attr]
    body: dict[str, object] = {"servers": [server_json(r) for r in records], "latest": {}}
    if ctx.timeseries is not None and records:
        try:
            latest = await ctx.timeseries.latest([r.id for r in records])
        except Unavailable as exc:
            # The fleet stays listable while the store is down; the client shows values missing.
            log.warning("latest values unavailable for the server list: %s", exc)
            body["latest_unavailable"] = f"time-series store unavailable: {exc}"
        else:
            out: dict[str, dict[str, dict[str, float]]] = {}
            for (server_id, metric), value in latest.items():
                out.setdefault(server_id, {})[metric] = {"ts": value.ts_ms, "value": value.value}
            body["latest"] = out
    return json_response(body)


async def get_server(request: web.Request) -> web.Response:
    # Sensors read the fleet and its specs with their ingest key; they never write it.
    await caller(request, allow_ingest_key=True)
    record = await context(request).servers.get(request.match_info["server_id"])  # type: ignore[union-attr]
    return json_response(server_json(record))


async def create_server(request: web.Request) -> web.Response:
    principal = await caller(request)
    principal.require_writer()
    record = await context(request).servers.create(await read_json(request), principal)  # type: ignore[union-attr]
    return json_response(server_json(record), status=201, headers={"Location": f"/api/v1/servers/{record.id}"})


async def patch_server(request: web.Request) -> web.Response:
    principal = await caller(request)
    principal.require_writer()
    record = await context(request).servers.update(  # type: ignore[union-attr]
        request.match_info["server_id"], await read_json(request), principal
    )
    return json_response(server_json(record))


async def delete_server(request: web.Request) -> web.Response:
    principal = await caller(request)
    principal.require_writer()
    if not _flag(request, "confirm"):
        raise InvalidField("confirm", "must be true: deleting a server needs ?confirm=true")
    await context(request).servers.delete(  # type: ignore[union-attr]
        request.match_info["server_id"], principal, purge=_flag(request, "purge")
    )
    return web.Response(status=204)


async def put_owner(request: web.Request) -> web.Response:
    """Hand a server to another sysadmin or admin: `{"owner": "bob"}` (admins only)."""
    principal = await caller(request)
    body = await read_json(request)
    owner = body.get("owner") if isinstance(body, dict) else None
    record = await context(request).servers.transfer(  # type: ignore[union-attr]
        request.match_info["server_id"], owner, principal
    )
    return json_response(server_json(record))


async def list_audit(request: web.Request) -> web.Response:
    """The audit log, newest first: `?limit=` (at most 1,000) and `?before=` an entry id."""
    principal = await caller(request)
    raw = request.query.get("limit", "100")
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidField("limit", f"must be a whole number from 1 to {MAX_PAGE}")
    limit = int(raw)
    entries = await context(request).servers.audit.page(  # type: ignore[union-attr]
        principal, limit, request.query.get("before")
    )
    return json_response(
        {"entries": [audit_json(e) for e in entries], "next_before": entries[-1].id if len(entries) == limit else None}
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/servers", list_servers)
    app.router.add_post("/api/v1/servers", create_server)
    app.router.add_get("/api/v1/servers/{server_id}", get_server)
    app.router.add_patch("/api/v1/servers/{server_id}", patch_server)
    app.router.add_delete("/api/v1/servers/{server_id}", delete_server)
    app.router.add_put("/api/v1/servers/{server_id}/owner", put_owner)
    app.router.add_get("/api/v1/audit", list_audit)
