"""Shell commands of the backend: `tasker backend`, `tasker users ...`, `tasker keys ...`.

`users` and `keys` act directly on the registry named by TASKER_REGISTRY_URL (they are how the
first accounts and sensor keys come to exist), so they need no running backend; every change is
in the audit log as done by `shell:<local account>`. A session they end stops working within
`auth.CACHE_TTL_S` (5 s) in every running api process, and its websocket closes within
`ws.SESSION_CHECK_S` (5 s). See docs/accounts.md.
"""

from __future__ import annotations

import asyncio
import faulthandler
import json
import logging
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import typer

T = TypeVar("T")

DEFAULT_STARTUP_TIMEOUT_S = 60.0
"""How long `tasker backend` waits for a broker or store that does not answer at startup."""
SHUTDOWN_LIMIT_S = 30.0
"""How long a stopping backend may take before it dumps its threads' stacks and exits anyway."""

users_app = typer.Typer(help="User accounts (acts on TASKER_REGISTRY_URL directly).", no_args_is_help=True)
keys_app = typer.Typer(help="Ingest keys for sensors (acts on TASKER_REGISTRY_URL directly).", no_args_is_help=True)


def _shell_actor() -> str:
    """Who acts from the shell on the registry directly: the local account, for the audit log."""
    import getpass

    return f"shell:{getpass.getuser()}"


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"tasker: {message}", err=True)
    raise typer.Exit(code)


def _settings(**overrides: Any):  # type: ignore[no-untyped-def]
    from tasker.config import ConfigError, load_settings

    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        _fail(str(exc), 2)


def _with_registry(work: Callable[[Any], Awaitable[T]]) -> T:
    """Run `work(registry)` against TASKER_REGISTRY_URL, with one-line errors."""
    from backend.bootstrap import StartupError, open_registry
    from backend.ports import Conflict, NotFound, Unavailable
    from backend.services.errors import Forbidden, InvalidField

    settings = _settings()

    async def run() -> T:
        registry = open_registry(settings.registry_url)
        await registry.start()
        try:
            return await work(registry)
        finally:
            await registry.close()

    try:
        return asyncio.run(run())
    except StartupError as exc:
        _fail(str(exc), 2)
    except Unavailable as exc:
        _fail(f"registry unavailable (TASKER_REGISTRY_URL): {exc}")
    except InvalidField as exc:
        _fail(f"{exc.field} {exc.reason}", 2)
    except (Conflict, NotFound) as exc:
        _fail(str(exc))
    except Forbidden as exc:
        _fail(str(exc))
    raise AssertionError("unreachable")


class _OneLine(logging.Filter):
    """Drivers log lost connections with a traceback; an outage is expected, so keep one line
    (the exception's text) and drop the stack. Our own HealthWatch reports state changes."""

    DRIVERS = ("aiormq", "aio_pika", "cassandra", "pymongo")
    # A failed connection attempt: the backend's own retry line already names the setting and
    # the reason, so the driver's copy of it is dropped.
    REPEATS = (
        ("aiormq.connection", "error when creating transport"),
        ("cassandra.cluster", "Control connection failed to connect"),
    )

    def filter(self, record: logging.LogRecord) -> bool:
        if any(record.name == name and str(record.msg).startswith(text) for name, text in self.REPEATS):
            return False
        if record.name.startswith(self.DRIVERS) and record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def _setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    one_line = _OneLine()
    for handler in logging.getLogger().handlers:
        handler.addFilter(one_line)
    # Drivers say a lot while reconnecting; HealthWatch gives one line per outage instead.
    for noisy, level in (
        ("aiormq", logging.ERROR),
        ("aio_pika", logging.ERROR),
        ("cassandra", logging.ERROR),
        ("pymongo", logging.ERROR),
    ):
        logging.getLogger(noisy).setLevel(level)


def backend_command(
    role: list[str] = typer.Option(
        None,
        "--role",
        "-r",
        help="Role to run: ingest, packager, history, api, scheduler. Repeatable; all when omitted. "
        "Roles in separate processes need RabbitMQ (TASKER_BROKER_URL=amqp://...).",
    ),
    listen: str = typer.Option(None, "--listen", help="host:port for HTTP (overrides TASKER_LISTEN)."),
    queue_prefix: str = typer.Option(
        "tasker",
        "--queue-prefix",
        envvar="TASKER_QUEUE_PREFIX",
        help="First part of every RabbitMQ queue and exchange name (to share one RabbitMQ).",
    ),
    startup_timeout: float = typer.Option(
        DEFAULT_STARTUP_TIMEOUT_S,
        "--startup-timeout",
        envvar="TASKER_STARTUP_TIMEOUT",
        min=0,
        help="Seconds to keep retrying a broker or store that does not answer at startup before "
        "giving up with an error (0: retry forever). Once running, outages are always retried.",
    ),
) -> None:
    """Run backend roles (all by default): api (HTTP and websocket), ingest, packager, history, scheduler."""
    from backend.bootstrap import Backend, StartupError, serving
    from backend.ports import Unavailable

    settings = _settings(listen=listen)
    _setup_logging()
    try:
        backend = Backend.create(settings, role or (), queue_prefix=queue_prefix)
        host, port = settings.listen_host_port
    except StartupError as exc:
        _fail(str(exc), 2)
    listen_label = f"--listen {listen!r}" if listen else f"TASKER_LISTEN={settings.listen!r}"
    stopped_by: list[str] = []

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def stop_on(sig: signal.Signals) -> None:
            stopped_by.append(sig.name)
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_on, sig)
        starting = asyncio.create_task(backend.start(give_up_after_s=startup_timeout or None))
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                await asyncio.gather(starting, return_exceptions=True)
                return
            starting.result()
            # Bind first: a port in use must fail before a first admin is made and its
            # one-time password shown in a run that then stops.
            async with serving(backend, host, port, listen_label) as url:
                if backend.auth is not None and "api" in backend.roles:
                    password = await backend.auth.ensure_first_admin()
                    if password is not None:
                        print("Created the first user: admin (role admin)", flush=True)
                        print(f"One-time password, shown only now: {password}", flush=True)
                        print(
                            "It must be changed at the first login: `tasker login` asks for a new "
                            "one, as does the TUI.",
                            flush=True,
                        )
                print(f"Tasker backend ({', '.join(sorted(backend.roles))}) listening on {url}", flush=True)
                await stopping
        finally:
            stopping.cancel()
            # A part that never stops must not keep a backend its supervisor thinks is gone:
            # past the limit every thread's stack goes to stderr and the process exits (code 1).
            faulthandler.dump_traceback_later(SHUTDOWN_LIMIT_S, exit=True)
            await backend.close()
            how = f" by {stopped_by[0]}" if stopped_by else ""
            logging.getLogger("backend").info("backend stopped%s", how)

    try:
        asyncio.run(run())  # its end waits for the threads of the default executor too
    except StartupError as exc:
        _fail(str(exc), 2)
    except Unavailable as exc:
        # A service dropped away while the roles were being wired; the supervisor restarts us.
        _fail(f"could not start: {exc}")
    finally:
        faulthandler.cancel_dump_traceback_later()


def _read_password_line() -> str:
    """The first line of stdin, without its line ending."""
    return sys.stdin.readline().rstrip("\r\n")


def _ask_new_password(username: str) -> str:
    """A new password typed twice at the terminal (hidden); refused at once if the policy says so."""
    from backend.services.password_policy import RULES, problem

    if not sys.stdin.isatty():
        _fail("no terminal to ask for the password on: pass --password-stdin and give it on stdin", 2)
    typer.echo(f"New password for {username} ({RULES}).", err=True)
    while True:
        password = typer.prompt("New password", hide_input=True, err=True)
        wrong = problem(password, username)
        if wrong is not None:
            typer.echo(f"That password {wrong}; try another.", err=True)
            continue
        if typer.prompt("Repeat it", hide_input=True, err=True) == password:
            return password
        typer.echo("The two did not match; again.", err=True)


def _sessions_note(ended: int) -> str:
    return f"; {ended} session(s) ended" if ended else ""


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="1-64 characters of A-Z a-z 0-9 . _ -"),
    role: str = typer.Option(..., "--role", help="admin, sysadmin or engineer"),
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="Read the password from the first line of stdin "
        "(otherwise one is generated, printed once, and must be changed at the first login).",
    ),
    must_change: bool = typer.Option(
        False,
        "--must-change",
        help="The user must choose another password at the first login (always so for a generated one).",
    ),
) -> None:
    """Create a user account."""
    from backend.services.audit import AuditLog
    from backend.services.auth import AuthService

    password = None
    if password_stdin:
        password = _read_password_line()

    async def work(registry: Any) -> str:
        created = await AuthService(registry).add_user(
            username, role, password, must_change_password=must_change or password is None
        )
        await AuditLog(registry).record(_shell_actor(), "user.added", username, f"role {role}")
        return created

    created = _with_registry(work)
    typer.echo(f"Created user {username} ({role}).")
    if not password_stdin:
        typer.echo(f"Password, shown only now: {created}")
    if must_change or not password_stdin:
        typer.echo("It must be changed at the first login (tasker login or the TUI ask for a new one).")


@users_app.command("list")
def users_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List users: role, whether disabled or due a password change, live sessions."""
    from backend.services.auth import AuthService

    async def work(registry: Any) -> list[Any]:
        return await AuthService(registry).accounts.list_users()

    rows = [summary.as_json() for summary in _with_registry(work)]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo(
            "No users. The first `tasker backend` makes `admin`; add more with: tasker users add NAME --role sysadmin"
        )
        return

    def status(row: dict[str, Any]) -> str:
        if row["disabled"]:
            return f"disabled {row['disabled_at']}"
        return "must change password" if row["must_change_password"] else "active"

    _print_table(
        ("USER", "ROLE", "STATUS", "SESSIONS", "CREATED AT", "PASSWORD CHANGED"),
        [
            (
                r["username"],
                r["role"],
                status(r),
                str(r["sessions"]),
                r["created_at"],
                r["password_changed_at"] or "never",
            )
            for r in rows
        ],
    )


def _print_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@users_app.command("passwd")
def users_passwd(
    username: str = typer.Argument(..., help="Whose password to set."),
    password_stdin: bool = typer.Option(
        False,
        "--password-stdin",
        help="Read the new password from the first line of stdin (for "
        "scripts); otherwise it is asked twice at the terminal.",
    ),
    must_change: bool = typer.Option(
        False, "--must-change", help="The user must choose another password at the next login."
    ),
) -> None:
    """Set a user's password (the policy applies); every session of the user ends."""
    from backend.services.auth import AuthService

    if not password_stdin:

        async def exists(registry: Any) -> None:
            await AuthService(registry).accounts.require_user(username)

        _with_registry(exists)  # before asking for a password it could not be given
    password = _read_password_line() if password_stdin else _ask_new_password(username)

    async def work(registry: Any) -> int:
        return await AuthService(registry).accounts.set_password(_shell_actor(), username, password, must_change)

    ended = _with_registry(work)
    typer.echo(
        f"Password of {username} set{_sessions_note(ended)}."
        + (" It must be changed at the next login." if must_change else "")
    )


@users_app.command("disable")
def users_disable(username: str = typer.Argument(..., help="The user to lock out.")) -> None:
    """Disable a user: its logins are refused and its sessions end (websockets close)."""
    from backend.services.auth import AuthService

    async def work(registry: Any) -> int:
        return await AuthService(registry).accounts.disable(_shell_actor(), username)

    ended = _with_registry(work)
    typer.echo(f"Disabled {username}{_sessions_note(ended)}. Undo with: tasker users enable {username}")


@users_app.command("enable")
def users_enable(username: str = typer.Argument(..., help="The user to let in again.")) -> None:
    """Let a disabled user log in again."""
    from backend.services.auth import AuthService

    async def work(registry: Any) -> bool:
        return await AuthService(registry).accounts.enable(_shell_actor(), username)

    changed = _with_registry(work)
    typer.echo(f"Enabled {username}." if changed else f"{username} was not disabled; nothing changed.")


@users_app.command("delete", hidden=True)  # the words a user may try first
@users_app.command("remove", hidden=True)
@users_app.command("rm")
def users_rm(
    username: str = typer.Argument(..., help="The user to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    transfer_to: str | None = typer.Option(
        None,
        "--transfer-to",
        help="Hand the user's servers and unfinished tasks to this sysadmin or "
        "admin (a user who owns any is not deleted without it).",
    ),
) -> None:
    """Delete a user: its sessions end; its servers and unfinished tasks go to --transfer-to."""
    from backend.services.auth import AuthService

    async def owned(registry: Any) -> tuple[Any, list[Any], list[Any]]:
        accounts = AuthService(registry).accounts
        user = await accounts.require_user(username)
        servers, tasks = await accounts.owned(user.username)
        return user, servers, tasks

    if not yes:
        user, servers, tasks = _with_registry(owned)
        what = f"user {user.username} ({user.role})"
        if (servers or tasks) and transfer_to:
            what += f", handing {len(servers)} server(s) and {len(tasks)} unfinished task(s) to {transfer_to}"
        if not sys.stdin.isatty():
            _fail(f"not deleting {what} without confirmation: pass --yes", 2)
        if not typer.confirm(f"Delete {what}?", default=False):
            typer.echo(f"Kept {username}.")
            return

    async def work(registry: Any) -> Any:
        return await AuthService(registry).accounts.remove(_shell_actor(), username, transfer_to)

    removal = _with_registry(work)
    handed = ""
    if removal.servers or removal.tasks:
        handed = f"; {len(removal.servers)} server(s) and {removal.tasks} task(s) now belong to {transfer_to}"
    typer.echo(f"Deleted user {username}{_sessions_note(removal.sessions)}{handed}.")


@users_app.command("sessions")
def users_sessions(
    username: str = typer.Argument(..., help="Whose sessions."),
    revoke: bool = typer.Option(False, "--revoke", help="End them (all, or only --session ID)."),
    session: str | None = typer.Option(None, "--session", help="With --revoke: only this session id."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """List a user's live sessions, or end them with --revoke (websockets close too)."""
    from backend.services.accounts import session_json
    from backend.services.auth import AuthService

    if session is not None and not revoke:
        _fail("--session names the session to end: add --revoke", 2)

    async def work(registry: Any) -> Any:
        accounts = AuthService(registry).accounts
        if revoke:
            return await accounts.revoke_sessions(_shell_actor(), username, session)
        return [session_json(s) for s in await accounts.sessions(username)]

    answer = _with_registry(work)
    if revoke:
        typer.echo(f"Ended {answer} session(s) of {username}.")
        return
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    if not answer:
        typer.echo(f"{username} has no live session.")
        return
    _print_table(
        ("SESSION", "FROM", "CREATED AT", "EXPIRES AT"),
        [(s["id"], s["client"] or "?", s["created_at"], s["expires_at"]) for s in answer],
    )


@keys_app.command("create")
def keys_create(
    label: str = typer.Option("", "--label", help="What the key is for, e.g. the sensor's host."),
    server: str | None = typer.Option(
        None,
        "--server",
        help="Scope the key to this server id: it posts readings only for it and may run its agent (`tasker agent`).",
    ),
) -> None:
    """Create an ingest key for a sensor; prints it once (only its hash is stored)."""
    from backend.services.audit import AuditLog
    from backend.services.auth import AuthService

    async def work(registry: Any) -> tuple[Any, str]:
        record, key = await AuthService(registry).create_ingest_key(label, _shell_actor(), server)
        await AuditLog(registry).record(
            _shell_actor(), "key.created", record.key_id, f"label {label!r}, server {server or 'any'}"
        )
        return record, key

    record, key = _with_registry(work)
    scope = f" for server {server}" if server else ""
    typer.echo(f"Created ingest key {record.key_id}" + (f" ({label})" if label else "") + f"{scope}.")
    typer.echo("Key, shown only now (sensors send it as Authorization: Bearer <key>):")
    typer.echo(key)


@keys_app.command("list")
def keys_list(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List ingest keys (ids, labels, who made them, whether revoked); never the secrets."""
    from backend.services.timestamps import format_rfc3339

    async def work(registry: Any) -> list[Any]:
        return await registry.list_ingest_keys()

    keys = _with_registry(work)
    rows = [
        {
            "key_id": k.key_id,
            "label": k.label,
            "created_by": k.created_by,
            "created_at": format_rfc3339(k.created_at_ms),
            "revoked_at": format_rfc3339(k.revoked_at_ms) if k.revoked_at_ms is not None else None,
            "server_id": k.server_id,
        }
        for k in keys
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No ingest keys. Create one with: tasker keys create --label NAME")
        return
    header = ("KEY ID", "LABEL", "SERVER", "CREATED BY", "CREATED AT", "STATUS")
    table = [header] + [
        (
            r["key_id"],
            r["label"],
            r["server_id"] or "any",
            r["created_by"],
            r["created_at"],
            f"revoked {r['revoked_at']}" if r["revoked_at"] else "active",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


@keys_app.command("revoke")
def keys_revoke(key_id: str = typer.Argument(..., help="The key id shown by `tasker keys list`.")) -> None:
    """Revoke an ingest key: sensors using it are refused (within a few seconds)."""
    from backend.services.audit import AuditLog
    from backend.services.timestamps import now_ms

    if key_id.startswith("tik_"):
        key_id = key_id.split("_")[1]  # a whole key was pasted; only its id is needed

    async def work(registry: Any) -> None:
        await registry.revoke_ingest_key(key_id, now_ms())
        await AuditLog(registry).record(_shell_actor(), "key.revoked", key_id)

    _with_registry(work)
    typer.echo(f"Revoked ingest key {key_id}.")


def register(app: typer.Typer) -> None:
    """Add `tasker backend`, `tasker users ...` and `tasker keys ...` to the root app."""
    app.command("backend")(backend_command)
    app.add_typer(users_app, name="users")
    app.add_typer(keys_app, name="keys")
