"""Task routes (submit, list, show, cancel), the plan (timeline, savings) and grid traces."""

from __future__ import annotations

from aiohttp import web

from backend.http.auth_routes import caller
from backend.http.context import context
from backend.http.errors import read_json
from backend.http.json_body import json_response
from backend.ports import TASK_STATES
from backend.services.errors import InvalidField
from backend.services.grid_traces import import_trace
from backend.services.plan_view import savings, timeline
from backend.services.tasks import TaskService, task_json
from backend.services.timestamps import now_ms, parse_instant


def _tasks(request: web.Request) -> TaskService:
    service = context(request).tasks
    assert service is not None, "task routes are only mounted with the task service"
    return service


def _states(request: web.Request) -> list[str] | None:
    """?state=planned&state=running (or comma-separated) -> those states; None for all."""
    given = [s for value in request.query.getall("state", []) for s in value.split(",") if s]
    unknown = [s for s in given if s not in TASK_STATES]
    if unknown:
        raise InvalidField("state", f"{unknown[0][:32]!r} is not a task state; states are {', '.join(TASK_STATES)}")
    return given or None


def _finished_since(request: web.Request) -> int | None:
    """?finished_since=-24h (or epoch ms, RFC 3339): leave out tasks that finished before it."""
    text = request.query.get("finished_since")
    if not text:
        return None
    try:
        return parse_instant(text[:64], now_ms())
    except ValueError as exc:
        raise InvalidField("finished_since", str(exc)) from None


def _server(request: web.Request) -> str | None:
    """?server=srv_... -> the tasks placed on that server (planned, running or run there)."""
    text = request.query.get("server")
    if text is None:
        return None
    if not text or len(text) > 64:
        raise InvalidField("server", "must be a server id (1-64 characters)")
    return text


async def list_tasks(request: web.Request) -> web.Response:
    principal = await caller(request)
    tasks = await _tasks(request).list(principal, _states(request), _finished_since(request))
    if (server := _server(request)) is not None:
        tasks = [t for t in tasks if t.server_id == server]
    return json_response({"tasks": [task_json(t) for t in tasks]})


async def submit_task(request: web.Request) -> web.Response:
    principal = await caller(request)
    task = await _tasks(request).submit(await read_json(request), principal)
    return json_response(task_json(task), status=201, headers={"Location": f"/api/v1/tasks/{task.id}"})


async def get_task(request: web.Request) -> web.Response:
    principal = await caller(request)
    task = await _tasks(request).get(request.match_info["task_id"], principal)
    return json_response(task_json(task))


async def cancel_task(request: web.Request) -> web.Response:
    principal = await caller(request)
    task = await _tasks(request).cancel(request.match_info["task_id"], principal)
    return json_response(task_json(task))


async def get_plan(request: web.Request) -> web.Response:
    principal = await caller(request)
    return json_response(await timeline(_tasks(request).registry, principal, now_ms()))


async def get_savings(request: web.Request) -> web.Response:
    principal = await caller(request)
    tasks = await _tasks(request).list(principal, finished_since_ms=_finished_since(request))
    return json_response(savings(tasks, now_ms()))


async def put_grid_traces(request: web.Request) -> web.Response:
    principal = await caller(request)
    raw = await request.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidField("body", "is not UTF-8 text") from None
    regions = await import_trace(_tasks(request).registry, text, principal)
    return json_response({"regions": regions, "rows": sum(regions.values())})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/tasks", list_tasks)
    app.router.add_post("/api/v1/tasks", submit_task)
    app.router.add_get("/api/v1/tasks/{task_id}", get_task)
    app.router.add_delete("/api/v1/tasks/{task_id}", cancel_task)
    app.router.add_get("/api/v1/plan", get_plan)
    app.router.add_get("/api/v1/plan/savings", get_savings)
    app.router.add_put("/api/v1/grid/traces", put_grid_traces)
