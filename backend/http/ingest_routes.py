"""POST /api/v1/readings: validate the whole batch, publish it, answer 202 once confirmed."""

from __future__ import annotations

from aiohttp import web

from backend.http.auth_routes import caller
from backend.http.context import context
from backend.http.errors import read_json
from backend.http.json_body import json_response
from backend.ports import Unavailable
from backend.services.auth import INGEST_ROLE
from backend.services.errors import Forbidden
from backend.services.readings import BatchRejected


async def post_readings(request: web.Request) -> web.Response:
    ctx = context(request)
    principal = await caller(request, allow_ingest_key=True)
    if principal.role != INGEST_ROLE and not principal.can_write:
        raise Forbidden(f"role {principal.role!r} may not post readings; use an ingest key or a sysadmin")
    ingest = ctx.ingest
    assert ingest is not None
    try:
        batch = await ingest.validate(await read_json(request))
    except BatchRejected as rejected:
        ctx.telemetry.batches_rejected.inc(status=str(rejected.status))
        ctx.telemetry.readings_rejected.inc(len({d.index for d in rejected.details if d.index is not None}))
        raise
    if principal.server_id is not None:
        others = sorted({s for c in batch.columns.values() for s in c.servers} - {principal.server_id})
        if others:
            raise Forbidden(
                f"this ingest key posts readings only for server {principal.server_id!r}, not for {others[0]!r}"
            )
    try:
        accepted = await ingest.publish(batch)
    except Unavailable as exc:
        ctx.telemetry.batches_rejected.inc(status="503")
        raise Unavailable(f"broker unavailable: {exc}") from None
    return json_response({"accepted": accepted}, status=202)


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/readings", post_readings)
