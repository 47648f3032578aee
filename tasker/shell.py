"""Tasker from the shell: `tasker login`, `tasker passwd`, `tasker servers add/list/show/edit/rm`,
`tasker history`.

Every command talks to the backend through `TaskerClient` only. The backend is chosen by
`--url`, else `TASKER_URL`, else the config file; the token by `TASKER_TOKEN`, else the session
stored by `tasker login` for that URL. Errors print one line on stderr and exit non-zero;
`--json` output is meant for scripts, tables for people.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from tasker.config import ConfigError, load_settings
from tasker.domain import METRICS, REGIONS
from tasker.models import LatestReading, Server, format_instant

if TYPE_CHECKING:
    from tasker.client import TaskerClient

# tasker.client (aiohttp) is imported inside the commands: `tasker --help` and the TUI's start
# should not pay for it.

T = TypeVar("T")

URL_OPTION = typer.Option(None, "--url", help="Backend URL (default: TASKER_URL, else http://127.0.0.1:8470).")
JSON_OPTION = typer.Option(False, "--json", help="Print JSON (for scripts) instead of a table.")


class UsageError(Exception):
    """A command-line value is wrong; the message names it."""


# --- running a command: one line per error, never a traceback ----------------------------------


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `tasker: <message>` on stderr and exit with `code`."""
    typer.echo(f"tasker: {message}", err=True)
    raise typer.Exit(code)


def explain(exc: BaseException, url: str = "") -> str:
    """The one line a user sees for an exception raised while running a command."""
    from tasker.client import ApiError, BackendUnavailable, Forbidden, Unauthorized, ValidationFailed

    if isinstance(exc, BackendUnavailable):
        hint = " — is `tasker backend` running?" if exc.unreachable else ""
        return exc.message + hint
    if isinstance(exc, Unauthorized):
        where = f" --url {url}" if url else ""
        return f"{exc.message}: log in with `tasker login{where}` (or set TASKER_TOKEN)"
    if isinstance(exc, Forbidden):
        return f"not allowed: {exc.message}"
    if isinstance(exc, ValidationFailed):
        return exc.describe()
    if isinstance(exc, ApiError):
        return exc.describe()
    text = str(exc) or type(exc).__name__
    return text


def _unwrap(exc: BaseException) -> BaseException:
    """The first real error inside (possibly nested) exception groups from task groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _expected(exc: BaseException) -> bool:
    """Errors of the user's or the environment's making (API errors, bad settings, bad values,
    and exceptions marked `user_facing`); anything else is a bug, still shown as one line."""
    from tasker.client import ApiError

    return isinstance(exc, (ApiError, ConfigError, UsageError, OSError)) or getattr(exc, "user_facing", False)


def run_cli(main: Callable[[], Awaitable[T]], *, url: str = "", interrupted_ok: bool = False) -> T:
    """Run the coroutine `main()`; SIGINT/SIGTERM cancel it cleanly.

    On cancellation by a signal, exits 0 when `interrupted_ok` (sensors are stopped that way)
    and 130 otherwise. Any error exits 1 with one line from `explain` (TASKER_DEBUG=1 shows
    the traceback instead).
    """
    stopped_by_signal = False

    async def guarded() -> T:
        nonlocal stopped_by_signal
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()

        def stop() -> None:
            nonlocal stopped_by_signal
            stopped_by_signal = True
            assert task is not None
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop)
        try:
            return await main()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        return asyncio.run(guarded())
    except typer.Exit:
        raise
    except (asyncio.CancelledError, KeyboardInterrupt):
        if stopped_by_signal and interrupted_ok:
            raise typer.Exit(0) from None
        fail("interrupted", 130)
    except BaseException as exc:  # noqa: BLE001 - the one place that turns errors into a line
        real = _unwrap(exc)
        if isinstance(real, typer.Exit):
            raise real from None
        if isinstance(real, (asyncio.CancelledError, KeyboardInterrupt)) and stopped_by_signal and interrupted_ok:
            raise typer.Exit(0) from None
        if os.environ.get("TASKER_DEBUG"):
            raise
        if _expected(real):
            fail(explain(real, url))
        fail(f"unexpected error ({type(real).__name__}): {real}")


def backend_url(url: str | None) -> str:
    """The backend URL from `--url`, TASKER_URL or the config file; one line if malformed."""
    try:
        return load_settings(url=url).url.rstrip("/")
    except ConfigError as exc:
        fail(str(exc), 2)


def session_token(url: str, required: bool = True) -> str | None:
    """The token for `url` (TASKER_TOKEN or the stored session); fails when required and absent."""
    from tasker.session import resolve_token

    token = resolve_token(url)
    if token is None and required:
        unreachable = _unreachable(url)
        if unreachable:
            fail(f"cannot reach the backend at {url}: {unreachable} — is `tasker backend` running?")
        fail(f"not logged in to {url} (or the session expired): run `tasker login --url {url}` or set TASKER_TOKEN")
    return token


def _unreachable(url: str) -> str | None:
    """Why the backend at `url` does not answer, or None when it does: "not logged in" would
    send the user to log in to a backend that is not there."""
    import urllib.error
    import urllib.request

    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # as the client: no proxy
    try:
        with direct.open(f"{url}/healthz", timeout=3):
            return None
    except urllib.error.HTTPError:
        return None  # something answers HTTP there
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(getattr(reason, "strerror", None) or reason).lower()


# --- formatting ---------------------------------------------------------------------------------


def print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Collection[int] = frozenset()) -> None:
    """A plain aligned table: readable in a terminal, greppable in a pipe."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        parts = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        typer.echo("  ".join(parts).rstrip())


def iso(ts_ms: int) -> str:
    """Epoch ms as `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{float(value):.{digits}f}"


# --- login ---------------------------------------------------------------------------------------


def login(
    url: str | None = URL_OPTION,
    username: str | None = typer.Option(None, "--username", "-u", help="Your Tasker user name (asked if absent)."),
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin (for scripts)."),
) -> None:
    """Log in to the backend and keep the session (private file, reused until it expires)."""
    from tasker.client import TaskerClient, Unauthorized
    from tasker.session import save_session, session_file

    base = backend_url(url)
    user = username or typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)

    async def main() -> dict[str, Any]:
        async with TaskerClient(base) as api:
            try:
                return await api.login(user, password)
            except Unauthorized as exc:
                fail(f"login refused by {base}: {exc.message}")

    answer = run_cli(main, url=base)
    save_session(base, answer)
    expires = answer.get("expires_at")
    who = answer.get("username", user)
    typer.echo(
        f"logged in to {base} as {who} ({answer.get('role', '?')})"
        + (f", session valid until {expires}" if expires else "")
        + f"; kept in {session_file()}"
    )
    if not answer.get("must_change_password"):
        return
    reason = answer.get("password_change_reason") or "the password must be changed before first use"
    where = f" --url {base}" if url else ""
    if password_stdin or not sys.stdin.isatty():
        typer.echo(
            f"tasker: {who} must choose a new password before anything else ({reason}): run "
            f"`tasker passwd{where}` (for scripts: --password-stdin with the current and the new "
            "password on two lines)",
            err=True,
        )
        return
    typer.echo(f"{who} must choose a new password before anything else: {reason}.")
    ended = run_cli(lambda: _change_password_interactively(base, answer["token"], who, password), url=base)
    typer.echo(f"password of {who} changed" + (f"; {ended} other session(s) ended" if ended else ""))


_NEW_PASSWORD_RULES = (
    "at least 10 characters; not the username, not a common password (even with "
    "digits or symbols added), not a keyboard run or a repeated piece"
)


async def _ask_hidden(prompt: str) -> str:
    return await asyncio.to_thread(typer.prompt, prompt, hide_input=True)


def _refusal(exc: Any) -> str:
    """A refused password change as "field reason; ..." (each named once)."""
    reasons = [f"{d.get('field')} {d.get('reason')}" for d in exc.details if d.get("field")]
    return "; ".join(reasons) or exc.message


async def _change_password_interactively(base: str, token: str, who: str, current: str | None) -> int:
    """Ask for the new password twice (and the current one unless known) until the backend takes
    it; returns how many other sessions ended. Refusals of the new password are said and asked
    again; anything else stops the command."""
    from tasker.client import TaskerClient, ValidationFailed

    if current is None:
        current = await _ask_hidden("Current password")
    typer.echo(f"The new password needs {_NEW_PASSWORD_RULES}.")
    async with TaskerClient(base, token) as api:
        while True:
            new = await _ask_hidden("New password")
            if await _ask_hidden("Repeat it") != new:
                typer.echo("The two did not match; again.")
                continue
            try:
                answer = await api.change_password(current, new)
            except ValidationFailed as exc:
                if any(d.get("field") == "new_password" for d in exc.details):
                    typer.echo(f"Refused: {_refusal(exc)}; try another.")
                    continue
                raise UsageError(_refusal(exc)) from None
            return int((answer or {}).get("other_sessions_ended", 0))


def passwd(
    url: str | None = URL_OPTION,
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="Read the current password and the new one from the first two "
        "lines of stdin (for scripts); otherwise they are asked at the terminal.",
    ),
) -> None:
    """Change your own password (with the current one); your other sessions end."""
    from tasker.client import TaskerClient

    base = backend_url(url)
    token = session_token(base)

    async def who() -> str:
        async with TaskerClient(base, token) as api:
            return (await api.me()).username

    if password_stdin:
        current = sys.stdin.readline().rstrip("\r\n")
        new = sys.stdin.readline().rstrip("\r\n")

        async def main() -> tuple[str, int]:
            from tasker.client import ValidationFailed

            async with TaskerClient(base, token) as api:
                name = (await api.me()).username
                try:
                    answer = await api.change_password(current, new)
                except ValidationFailed as exc:
                    raise UsageError(_refusal(exc)) from None
                return name, int((answer or {}).get("other_sessions_ended", 0))

        name, ended = run_cli(main, url=base)
    else:
        if not sys.stdin.isatty():
            fail(
                "no terminal to ask for the passwords on: pass --password-stdin (current and new "
                "password on two lines)",
                2,
            )
        name = run_cli(who, url=base)
        typer.echo(f"Changing the password of {name} on {base}.")
        assert token is not None
        ended = run_cli(lambda: _change_password_interactively(base, token, name, None), url=base)
    typer.echo(f"password of {name} changed" + (f"; {ended} other session(s) ended" if ended else ""))


def logout(url: str | None = URL_OPTION) -> None:
    """Revoke the stored session on the backend and forget it here."""
    from tasker.client import BackendUnavailable, TaskerClient, Unauthorized
    from tasker.session import forget_session, load_session

    base = backend_url(url)
    stored = load_session(base)
    if stored is not None:

        async def main() -> None:
            async with TaskerClient(base, stored.token) as api:
                try:
                    await api.logout()
                except (Unauthorized, BackendUnavailable):
                    pass  # already expired, or unreachable: forgetting it locally is what matters

        run_cli(main, url=base)
    typer.echo(f"logged out of {base}" if forget_session(base) else f"no session stored for {base}")


# --- servers -------------------------------------------------------------------------------------

servers_app = typer.Typer(help="The server registry: add, list, show, edit, rm, transfer.", no_args_is_help=True)


def _with_client(url: str | None, work: Callable[[TaskerClient], Awaitable[T]]) -> T:
    from tasker.client import TaskerClient

    base = backend_url(url)
    token = session_token(base)

    async def main() -> T:
        async with TaskerClient(base, token) as api:
            return await work(api)

    return run_cli(main, url=base)


def _server_fields(
    name: str | None,
    region: str | None,
    site: str | None,
    source: str | None,
    intensity: float | None,
    pue: float | None,
    idle: float | None,
    max_watts: float | None,
    cores: int | None,
    tags: list[str] | None,
) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    if name is not None:
        fields["name"] = name
    if region is not None or site is not None:
        fields["location"] = {k: v for k, v in (("region", region), ("site", site)) if v is not None}
    for key, value in (
        ("energy_source", source),
        ("carbon_intensity_g_per_kwh", intensity),
        ("pue", pue),
        ("idle_watts", idle),
        ("max_watts", max_watts),
        ("cores", cores),
    ):
        if value is not None:
            fields[key] = value
    if tags is not None:
        fields["tags"] = [t for tag in tags for t in tag.split(",") if t]
    return fields


def _spec_lines(server: Server, latest: Mapping[str, LatestReading]) -> list[tuple[str, str]]:
    loc = server.location
    created = "" if server.created_at_ms is None else format_instant(server.created_at_ms)
    lines = [
        ("id", server.id),
        ("name", server.name),
        ("location", " / ".join(x for x in (loc.region, loc.site) if x)),
        ("energy source", server.energy_source),
        (
            "carbon intensity",
            f"{_num(server.carbon_intensity_g_per_kwh)} g/kWh"
            + (f" ({server.carbon_intensity_source})" if server.carbon_intensity_source else ""),
        ),
        ("PUE", "" if server.pue is None else str(server.pue)),
        ("power range", f"{_num(server.idle_watts, 0)}..{_num(server.max_watts, 0)} W"),
        ("cores", "" if server.cores is None else str(server.cores)),
        ("tags", ", ".join(server.tags)),
        ("owner", server.owner),
        ("created", f"{created} by {server.created_by or '?'}"),
    ]
    for metric in ("power", "co2"):
        point = latest.get(metric)
        if point:
            lines.append((f"latest {metric}", f"{_num(point.value)} {METRICS[metric].unit} at {iso(point.ts_ms)}"))
    return lines


def _latest_json(latest: Mapping[str, LatestReading]) -> dict[str, Any]:
    return {metric: point.to_json() for metric, point in latest.items()}


def _print_server(server: Server, latest: Mapping[str, LatestReading]) -> None:
    lines = _spec_lines(server, latest)
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


HELP = {
    "region": f"Region code: {', '.join(REGIONS)}.",
    "site": "Site or city, e.g. Dublin.",
    "source": "Energy source: coal, gas, oil, nuclear, hydro, wind, solar, grid-mix.",
    "intensity": "Carbon intensity, g/kWh",
    "pue": "Power usage effectiveness, >= 1",
    "idle": "Idle power, W.",
    "max": "Maximum power, W.",
    "cores": "CPU cores.",
}
"""Help of the server fields, the same for `add` and `edit` (and named as the TUI's form names them)."""


@servers_app.command("add")
def servers_add(
    name: str = typer.Argument(..., help="Unique name: 1-64 of A-Z a-z 0-9 . _ -"),
    region: str = typer.Option(..., "--region", help=HELP["region"]),
    site: str | None = typer.Option(None, "--site", help=HELP["site"]),
    source: str = typer.Option("grid-mix", "--source", "--energy-source", help=HELP["source"]),
    intensity: float | None = typer.Option(
        None, "--intensity", help=HELP["intensity"] + " (default: from source and region)."
    ),
    pue: float | None = typer.Option(None, "--pue", help=HELP["pue"] + " (default 1.5)."),
    idle: float = typer.Option(..., "--idle", help=HELP["idle"]),
    max_watts: float = typer.Option(..., "--max", help=HELP["max"]),
    cores: int = typer.Option(..., "--cores", help=HELP["cores"]),
    tags: list[str] | None = typer.Option(None, "--tag", help="A tag (repeatable, or comma-separated)."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Register a server."""
    body = _server_fields(name, region, site, source, intensity, pue, idle, max_watts, cores, tags)
    server = _with_client(url, lambda api: api.register_server(body))
    if as_json:
        print_json(server.to_json())
    else:
        typer.echo(f"added {server.name} ({server.id})")


@servers_app.command("list")
def servers_list(as_json: bool = JSON_OPTION, url: str | None = URL_OPTION) -> None:
    """List every server with its cores, latest power and CO2."""
    fleet = _with_client(url, lambda api: api.read_servers())
    servers = sorted(fleet.servers, key=lambda s: s.name.lower())
    if as_json:
        print_json([dict(s.to_json(), latest=_latest_json(fleet.latest_of(s.id))) for s in servers])
        return
    rows = []
    for s in servers:
        now = fleet.latest_of(s.id)
        power, co2 = now.get("power"), now.get("co2")
        rows.append(
            [
                s.id,
                s.name,
                s.location.region,
                s.energy_source,
                "-" if s.cores is None else s.cores,
                _num(power.value if power else None),
                _num(co2.value if co2 else None),
                f"{_num(s.idle_watts, 0)}..{_num(s.max_watts, 0)}",
                s.pue,
                ",".join(s.tags),
            ]
        )
    print_table(
        ["ID", "NAME", "REGION", "SOURCE", "CORES", "POWER W", "CO2 g/h", "IDLE..MAX W", "PUE", "TAGS"],
        rows,
        right={4, 5, 6, 7, 8},
    )
    if not rows:
        typer.echo("(no servers registered: add one with `tasker servers add`)")


@servers_app.command("show")
def servers_show(
    server: str = typer.Argument(..., help="Server id or name."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Show one server's spec and latest readings."""

    from tasker.client import match_server

    async def work(api: TaskerClient) -> tuple[Server, Mapping[str, LatestReading]]:
        fleet = await api.read_servers()
        found = match_server(fleet.servers, server)
        return found, fleet.latest_of(found.id)

    found, latest = _with_client(url, work)
    if as_json:
        print_json(dict(found.to_json(), latest=_latest_json(latest)))
    else:
        _print_server(found, latest)


@servers_app.command("edit")
def servers_edit(
    server: str = typer.Argument(..., help="Server id or name."),
    name: str | None = typer.Option(None, "--name", help="New name."),
    region: str | None = typer.Option(None, "--region", help=HELP["region"]),
    site: str | None = typer.Option(None, "--site", help=HELP["site"]),
    source: str | None = typer.Option(None, "--source", "--energy-source", help=HELP["source"]),
    intensity: float | None = typer.Option(None, "--intensity", help=HELP["intensity"] + "."),
    pue: float | None = typer.Option(None, "--pue", help=HELP["pue"] + "."),
    idle: float | None = typer.Option(None, "--idle", help=HELP["idle"]),
    max_watts: float | None = typer.Option(None, "--max", help=HELP["max"]),
    cores: int | None = typer.Option(None, "--cores", help=HELP["cores"]),
    tags: list[str] | None = typer.Option(None, "--tag", help="Replaces the tags (repeatable)."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Change some fields of a server; the others are kept."""
    changes = _server_fields(name, region, site, source, intensity, pue, idle, max_watts, cores, tags)
    if not changes:
        fail("nothing to change: give at least one option, e.g. --pue 1.3", 2)

    async def work(api: TaskerClient) -> Server:
        found = await api.find_server(server)
        if "location" in changes and "region" not in changes["location"]:
            changes["location"] = {**found.to_json()["location"], **changes["location"]}
        return await api.change_server(found.id, changes)

    updated = _with_client(url, work)
    if as_json:
        print_json(updated.to_json())
    else:
        typer.echo(f"updated {updated.name} ({updated.id}): {', '.join(sorted(changes))}")


@servers_app.command("delete", hidden=True)  # the words a user may try first
@servers_app.command("remove", hidden=True)
@servers_app.command("rm")
def servers_rm(
    server: str = typer.Argument(..., help="Server id or name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    purge: bool = typer.Option(
        False, "--purge", help="Also delete its readings now (otherwise kept until they expire)."
    ),
    url: str | None = URL_OPTION,
) -> None:
    """Remove a server from the registry (asks first)."""
    from tasker.client import TaskerClient

    base = backend_url(url)
    token = session_token(base)

    async def main() -> str:
        async with TaskerClient(base, token) as api:
            found = await api.find_server(server)
            label = f"{found.name} ({found.id})"
            if not yes:
                what = "and delete all its readings" if purge else "(its readings are kept until they expire)"
                if not sys.stdin.isatty():
                    raise UsageError(f"not removing {label} without confirmation: pass --yes")
                if not await asyncio.to_thread(typer.confirm, f"Remove server {label} {what}?", default=False):
                    return f"kept {label}"
            await api.delete_server(found.id, purge=purge)
            return f"removed {label}" + (" and its readings" if purge else "")

    typer.echo(run_cli(main, url=base))


@servers_app.command("transfer")
def servers_transfer(
    server: str = typer.Argument(..., help="Server id or name."),
    owner: str = typer.Argument(..., help="Username of the sysadmin or admin who will own it."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Hand a server to another owner (admins only): only its owner or an admin may change it."""

    async def work(api: TaskerClient) -> Server:
        return await api.transfer_server((await api.find_server(server)).id, owner)

    moved = _with_client(url, work)
    if as_json:
        print_json(moved.to_json())
    else:
        typer.echo(f"{moved.name} ({moved.id}) now belongs to {moved.owner}")


def audit(
    limit: int = typer.Option(50, "--limit", "-n", help="Entries to show, newest first (at most 1,000)."),
    before: str | None = typer.Option(None, "--before", help="Only entries older than this entry id."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """Who changed what in the registry, newest first (admins only)."""
    page = _with_client(url, lambda api: api.audit(limit, before))
    if as_json:
        print_json(page)
        return
    rows = [[e["at"], e["actor"], e["action"], e["target"], e["detail"]] for e in page["entries"]]
    print_table(["WHEN", "WHO", "WHAT", "TARGET", "DETAIL"], rows)
    if not rows:
        typer.echo("(no changes recorded)")
    elif page.get("next_before"):
        typer.echo(f"older entries: tasker audit --before {page['next_before']}")


# --- history -------------------------------------------------------------------------------------

_SPAN = re.compile(r"-?(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, now_ms: int, option: str) -> int:
    """`1h`/`-30m`/`7d` (that long ago), epoch ms, or RFC 3339, as epoch ms."""
    value = text.strip()
    if m := _SPAN.fullmatch(value):
        return now_ms - int(float(m.group(1)) * _UNIT_S[m.group(2)] * 1000)
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: expected a duration such as 15m, 1h, 7d, or a time such as 2026-11-28T04:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def history(
    server: str = typer.Argument(..., help="Server id or name."),
    metric: str = typer.Option("power", "--metric", "-m", help="power (W) or co2 (g/h)."),
    since: str = typer.Option("1h", "--since", help="Start: a duration ago (15m, 1h, 7d) or a time (RFC 3339)."),
    until: str | None = typer.Option(None, "--until", help="End (default now): a duration ago or a time."),
    points: int = typer.Option(60, "--points", help="At most this many points (buckets) in the range."),
    as_csv: bool = typer.Option(False, "--csv", help="Print CSV: ts_ms,time,min,avg,max."),
    as_json: bool = JSON_OPTION,
    url: str | None = URL_OPTION,
) -> None:
    """A server's history of one metric, downsampled to at most --points buckets (min/avg/max)."""
    metric = metric.strip().lower()  # `--metric CO2` means co2
    if metric not in METRICS:
        fail(f"--metric {metric!r}: expected one of {', '.join(METRICS)}", 2)
    if points < 1:
        fail("--points must be at least 1", 2)
    now = int(time.time() * 1000)
    try:
        start = parse_when(since, now, "--since")
        end = parse_when(until, now, "--until") if until else now
    except UsageError as exc:
        fail(str(exc), 2)
    if start >= end:
        fail(f"--since ({iso(start)}) must be before --until ({iso(end)})", 2)

    async def work(api: TaskerClient) -> tuple[Server, dict[str, Any]]:
        found = await api.find_server(server)
        return found, await api.history(found.id, metric, start=start, end=end, points=points)

    found, series = _with_client(url, work)
    rows = series.get("points") or []
    if as_json:
        print_json(dict(series, server_id=found.id, server_name=found.name))
    elif as_csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["ts_ms", "time", "min", "avg", "max"])
        for ts, low, avg, high in rows:
            out.writerow([ts, iso(ts), low, avg, high])
    else:
        unit = series.get("unit") or METRICS[metric].unit
        typer.echo(
            f"{found.name} ({found.id}) {metric} in {unit}, {iso(start)} .. {iso(end)},"
            f" {series.get('resolution_s', '?')} s per point"
        )
        print_table(
            ["TIME", "MIN", "AVG", "MAX"],
            [[iso(ts), _num(lo), _num(av), _num(hi)] for ts, lo, av, hi in rows],
            right={1, 2, 3},
        )
        if not rows:
            typer.echo("(no readings in this range)")


def register(app: typer.Typer) -> None:
    """Add login/logout/passwd, `servers ...` and `history` to the root `tasker` app."""
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("passwd")(passwd)
    app.add_typer(servers_app, name="servers")
    app.command("history")(history)
    app.command("audit")(audit)
