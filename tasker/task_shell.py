"""Tasks and the plan from the shell: `tasker tasks submit/list/show/cancel`, `tasker plan`,
`tasker grid import FILE`.

Times are read as people type them (`18:00`, `tomorrow 06:00`, `+2h`, RFC 3339) in the local
zone and sent as RFC 3339; durations as `2h`, `90m`, `1h30m`. Errors print one line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from tasker.domain import REGIONS, SERVER_ID
from tasker.models import RECENT_FINISHED, PlanTimeline, Savings, Server, Task
from tasker.shell import JSON_OPTION, URL_OPTION, UsageError, _with_client, fail, parse_when, print_json, print_table
from tasker.when import format_duration, parse_duration, parse_local_time, to_rfc3339

if TYPE_CHECKING:
    from tasker.client import TaskerClient

tasks_app = typer.Typer(help="Compute tasks: submit, list, show, cancel.", no_args_is_help=True)
grid_app = typer.Typer(help="Grid carbon-intensity traces for the planner.", no_args_is_help=True)


def _when(text: str | None, option: str) -> str | None:
    if text is None:
        return None
    try:
        return to_rfc3339(parse_local_time(text, datetime.now(timezone.utc)))
    except ValueError as exc:
        fail(f"{option} {text!r}: {exc}", 2)


def _local(ts_ms: int | None) -> str:
    """An instant (epoch ms) shown in the local zone, to the minute."""
    if ts_ms is None:
        return "-"
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M")


def _grams(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f} g"


@tasks_app.command("submit")
def tasks_submit(
    name: str = typer.Argument(..., help="Task name: 1-64 of A-Z a-z 0-9 . _ -"),
    command: list[str] | None = typer.Argument(None, help="The program and its arguments, after --."),
    cores: int = typer.Option(..., "--cores", help="Cores the task uses."),
    duration: str = typer.Option(..., "--duration", help="Run time at full use of its cores: 2h, 90m, 1h30m."),
    deadline: str | None = typer.Option(
        None, "--deadline", help="Latest finish: 18:00, tomorrow 06:00, +6h, RFC 3339 (default: start + 24h)."
    ),
    earliest: str | None = typer.Option(None, "--earliest", help="Earliest start, same forms (default: now)."),
    interruptible: bool = typer.Option(False, "--interruptible", help="May be split into pieces on one server."),
    regions: list[str] | None = typer.Option(
        None, "--region", help=f"Allowed region (repeatable): {', '.join(REGIONS)}."
    ),
    tags: list[str] | None = typer.Option(None, "--tag", help="Required server tag (repeatable)."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Submit a task; the scheduler places it where and when it emits least CO2."""
    try:
        parse_duration(duration)
    except ValueError as exc:
        fail(f"--duration {duration!r}: {exc}", 2)
    body: dict[str, Any] = {"name": name, "cores": cores, "duration": duration, "interruptible": interruptible}
    for key, value in (("deadline", _when(deadline, "--deadline")), ("earliest_start", _when(earliest, "--earliest"))):
        if value is not None:
            body[key] = value
    if regions:
        body["regions"] = [r for item in regions for r in item.split(",") if r]
    if tags:
        body["tags"] = [t for item in tags for t in item.split(",") if t]
    if command:
        body["command"] = list(command)
    answer = _with_client(url, lambda api: api.submit_task(body))
    if as_json:
        print_json(answer)
    else:
        task = Task.from_json(answer)
        typer.echo(f"submitted {task.name} ({task.id}), {task.state}; due by {_local(task.deadline_ms)}")


async def _server_names(api: TaskerClient) -> dict[str, str]:
    """Server id -> name, for tables people read (a removed server keeps its id)."""
    return {s.id: s.name for s in (await api.read_servers()).servers}


def _server_id(ref: str | None, servers: Iterable[Server]) -> str | None:
    """The id of the server `--server` names among `servers` (None without it). An id is taken
    as it is: tasks keep the id of a server since removed, and list it in place of a name. A
    name no server has is NotFoundError."""
    from tasker.client import match_server

    if ref is None or SERVER_ID.fullmatch(ref):
        return ref
    return match_server(servers, ref).id


def _plan_cell(task: Task, names: dict[str, str]) -> tuple[str, str, str]:
    plan = task.plan
    if plan is None:
        return "-", "-", "-"
    return _name(names, plan.server_id), _local(plan.start_ms), _grams(plan.co2_g)


def _name(names: dict[str, str], server_id: str | None) -> str:
    return "-" if not server_id else names.get(server_id, server_id)


def _finished_since(since: str, every: bool) -> int | None:
    """`--since` read as `tasker history` reads it (epoch ms), None for `--all`."""
    if every:
        return None
    try:
        return parse_when(since, int(time.time() * 1000), "--since")
    except UsageError as exc:
        fail(str(exc), 2)


@tasks_app.command("list")
def tasks_list(
    states: list[str] | None = typer.Option(None, "--state", help="Only tasks in this state (repeatable)."),
    since: str = typer.Option(
        "24h", "--since", help="Finished tasks only if they finished since: a duration ago (7d) or a time."
    ),
    every: bool = typer.Option(False, "--all", help="Every finished task, however old."),
    server: str | None = typer.Option(
        None, "--server", help="Only tasks placed on this server (name or id): planned, running or run there."
    ),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """List the tasks you may see, oldest first: those not finished, and those finished in the last 24 h."""
    finished_since = _finished_since(since, every)
    if as_json:

        async def raw(api: TaskerClient) -> list[dict[str, Any]]:
            on = _server_id(server, (await api.read_servers()).servers if server else ())
            return await api.list_tasks(states or (), finished_since, on)

        print_json(_with_client(url, raw))
        return

    async def read(api: TaskerClient) -> tuple[list[Task], dict[str, str]]:
        servers = (await api.read_servers()).servers  # once: for --server and for the names
        listed = await api.read_tasks(states or (), finished_since, _server_id(server, servers))
        return listed, {s.id: s.name for s in servers}

    tasks, names = _with_client(url, read)
    rows = []
    for t in tasks:
        server, start, co2 = _plan_cell(t, names)
        rows.append(
            [
                t.id,
                t.name,
                t.owner,
                t.state,
                t.cores,
                format_duration(t.duration_s),
                _local(t.deadline_ms),
                server,
                start,
                co2,
            ]
        )
    print_table(
        ["ID", "NAME", "OWNER", "STATE", "CORES", "DURATION", "DEADLINE", "SERVER", "START", "CO2"], rows, right={4, 9}
    )
    if not rows:
        typer.echo("(no tasks)")


@tasks_app.command("show")
def tasks_show(
    task_id: str = typer.Argument(..., help="Task id (tsk_...)."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """One task with its plan and why it sits there."""
    if as_json:
        print_json(_with_client(url, lambda api: api.get_task(task_id)))
        return

    async def read(api: TaskerClient) -> tuple[Task, dict[str, str]]:
        return await api.read_task(task_id), await _server_names(api)

    task, names = _with_client(url, read)
    lines = [
        ("id", task.id),
        ("name", task.name),
        ("owner", task.owner),
        ("state", task.state + (f" ({task.reason})" if task.reason else "")),
        ("cores", str(task.cores)),
        ("duration", format_duration(task.duration_s)),
        ("window", f"{_local(task.earliest_start_ms)} .. {_local(task.deadline_ms)}"),
        ("interruptible", "yes" if task.interruptible else "no"),
        ("regions", ", ".join(task.regions) or "any"),
        ("tags", ", ".join(task.tags) or "-"),
        ("command", " ".join(task.command) if task.command else "-"),
    ]
    plan = task.plan
    if plan is not None:
        pieces = ", ".join(f"{_local(a)}..{_local(b)[-5:]}" for a, b in plan.pieces)
        lines += [
            ("server", _name(names, plan.server_id)),
            ("runs", pieces),
            ("CO2 planned", _grams(plan.co2_g)),
            ("CO2 if run now", f"{_grams(plan.run_now_co2_g)} on {_name(names, plan.run_now_server_id)}"),
            ("saving", _grams(plan.saving_g)),
            ("why", plan.explanation),
        ]
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


@tasks_app.command("cancel")
def tasks_cancel(
    task_id: str = typer.Argument(..., help="Task id (tsk_...)."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Cancel a task that has not finished."""
    answer = _with_client(url, lambda api: api.cancel_task(task_id))
    if as_json:
        print_json(answer)
    else:
        task = Task.from_json(answer)
        typer.echo(f"cancelled {task.name} ({task.id})")


def plan(as_json: bool = JSON_OPTION, url: str | None = URL_OPTION) -> None:
    """Each server's planned tasks over the horizon, and CO2 planned against running now."""

    async def wire(api: TaskerClient) -> tuple[dict[str, Any], dict[str, Any]]:
        return await api.plan(), await api.plan_savings(RECENT_FINISHED)

    if as_json:
        timeline_json, saved_json = _with_client(url, wire)
        print_json({"plan": timeline_json, "savings": saved_json})
        return

    async def work(api: TaskerClient) -> tuple[PlanTimeline, Savings]:
        return await api.read_plan(), await api.read_savings(RECENT_FINISHED)

    timeline, saved = _with_client(url, work)
    rows = []
    for server in timeline.servers:
        for p in server.placements:
            rows.append(
                [
                    server.name,
                    server.region,
                    server.energy_source,
                    p.name or "(other owner)",
                    p.cores,
                    _local(p.pieces[0][0]),
                    _local(p.pieces[-1][1]),
                    len(p.pieces),
                    _grams(p.co2_g),
                ]
            )
    typer.echo(f"plan from {_local(timeline.start_ms)} to {_local(timeline.end_ms)}")
    print_table(["SERVER", "REGION", "SOURCE", "TASK", "CORES", "START", "END", "PIECES", "CO2"], rows, right={4, 7, 8})
    if not rows:
        typer.echo("(nothing planned)")
    total = saved.totals
    pct = "" if total.saving_pct is None else f" ({total.saving_pct:.1f}%)"
    typer.echo(
        f"CO2 planned {total.planned_co2_g:.1f} g vs {total.run_now_co2_g:.1f} g if run now: "
        f"saving {total.saving_g:.1f} g{pct} over {total.compared} tasks"
    )


@grid_app.command("import")
def grid_import(
    file: Path = typer.Argument(..., help="CSV with header region,ts,g_per_kwh."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Load carbon-intensity traces; each region in the file replaces its previous trace."""
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"cannot read {file}: {getattr(exc, 'strerror', None) or exc}", 2)
    result = _with_client(url, lambda api: api.import_grid_traces(text))
    if as_json:
        print_json(result)
    else:
        regions = ", ".join(f"{r} ({n})" for r, n in result["regions"].items())
        typer.echo(f"imported {result['rows']} rows: {regions}")


def register(app: typer.Typer) -> None:
    """Add `tasks ...`, `plan` and `grid import` to the root `tasker` app."""
    app.add_typer(tasks_app, name="tasks")
    app.command("plan")(plan)
    app.add_typer(grid_app, name="grid")
