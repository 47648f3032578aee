"""The agent protocol over HTTP: heartbeats and run events (docs/agents.md)."""

from __future__ import annotations

from aiohttp import web

from backend.http.auth_routes import caller
from backend.http.context import context
from backend.http.errors import read_json
from backend.http.json_body import json_response
from backend.services.agents import AgentService
from backend.services.tasks import task_json


def _agents(request: web.Request) -> AgentService:
    service = context(request).agents
    assert service is not None, "agent routes are only mounted with the agent service"
    return service


async def heartbeat(request: web.Request) -> web.Response:
    principal = await caller(request, allow_ingest_key=True)
    answer = await _agents(request).heartbeat(request.match_info["server_id"], await read_json(request), principal)
    return json_response(answer)


async def task_event(request: web.Request) -> web.Response:
    principal = await caller(request, allow_ingest_key=True)
    task = await _agents(request).report(request.match_info["task_id"], await read_json(request), principal)
    return json_response(task_json(task))


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/agents/{server_id}/heartbeat", heartbeat)
    app.router.add_post("/api/v1/tasks/{task_id}/events", task_event)
