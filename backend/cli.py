"""Shell commands of the backend: `tasker backend`, `tasker users add`, `tasker keys ...`.

`users` and `keys` act directly on the registry named by TASKER_REGISTRY_URL (they are how the
first accounts and sensor keys come to exist), so they need no running backend.
"""

from __future__ import annotations

import asyncio
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

users_app = typer.Typer(help="User accounts (acts on TASKER_REGISTRY_URL directly).", no_args_is_help=True)
keys_app = typer.Typer(help="Ingest keys for sensors (acts on TASKER_REGISTRY_URL directly).",
                       no_args_is_help=True)


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
    from backend.services.auth import InvalidField

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
    raise AssertionError("unreachable")


class _OneLine(logging.Filter):
    """Drivers log lost connections with a traceback; an outage is expected, so keep one line
    (the exception's text) and drop the stack. Our own HealthWatch reports state changes."""

    DRIVERS = ("aiormq", "aio_pika", "cassandra", "pymongo")
    # A failed connection attempt: the backend's own retry line already names the setting and
    # the reason, so the driver's copy of it is dropped.
    REPEATS = (("aiormq.connection", "error when creating transport"),
               ("cassandra.cluster", "Control connection failed to connect"))

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
        level=logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    one_line = _OneLine()
    for handler in logging.getLogger().handlers:
        handler.addFilter(one_line)
    # Drivers say a lot while reconnecting; HealthWatch gives one line per outage instead.
    for noisy, level in (("aiormq", logging.ERROR), ("aio_pika", logging.ERROR),
                         ("cassandra", logging.ERROR), ("pymongo", logging.ERROR)):
        logging.getLogger(noisy).setLevel(level)


def backend_command(
    role: list[str] = typer.Option(
        None, "--role", "-r",
        help="Role to run: ingest, packager, history, api. Repeatable; all when omitted. "
             "Roles in separate processes need RabbitMQ (TASKER_BROKER_URL=amqp://...).",
    ),
    listen: str = typer.Option(None, "--listen", help="host:port for HTTP (overrides TASKER_LISTEN)."),
    queue_prefix: str = typer.Option(
        "tasker", "--queue-prefix", envvar="TASKER_QUEUE_PREFIX",
        help="First part of every RabbitMQ queue and exchange name (to share one RabbitMQ).",
    ),
    startup_timeout: float = typer.Option(
        DEFAULT_STARTUP_TIMEOUT_S, "--startup-timeout", envvar="TASKER_STARTUP_TIMEOUT", min=0,
        help="Seconds to keep retrying a broker or store that does not answer at startup before "
             "giving up with an error (0: retry forever). Once running, outages are always retried.",
    ),
) -> None:
    """Run backend roles (all by default): HTTP API, websocket, ingest, packager, history."""
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
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda sig=sig: (stopped_by.append(sig.name), stop.set()))
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
                print(f"Tasker backend ({', '.join(sorted(backend.roles))}) listening on {url}", flush=True)
                await stopping
        finally:
            stopping.cancel()
            await backend.close()
            how = f" by {stopped_by[0]}" if stopped_by else ""
            logging.getLogger("backend").info("backend stopped%s", how)

    try:
        asyncio.run(run())
    except StartupError as exc:
        _fail(str(exc), 2)
    except Unavailable as exc:
        # A service dropped away while the roles were being wired; the supervisor restarts us.
        _fail(f"could not start: {exc}")


@users_app.command("add")
def users_add(
    username: str = typer.Argument(..., help="1-64 characters of A-Z a-z 0-9 . _ -"),
    role: str = typer.Option(..., "--role", help="admin, sysadmin or engineer"),
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin "
        "(otherwise one is generated and printed once)."
    ),
) -> None:
    """Create a user account."""
    from backend.services.audit import AuditLog
    from backend.services.auth import AuthService

    password = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")

    async def work(registry: Any) -> str:
        created = await AuthService(registry).add_user(username, role, password)
        await AuditLog(registry).record(_shell_actor(), "user.added", username, f"role {role}")
        return created

    created = _with_registry(work)
    typer.echo(f"Created user {username} ({role}).")
    if not password_stdin:
        typer.echo(f"Password, shown only now: {created}")


@keys_app.command("create")
def keys_create(
    label: str = typer.Option("", "--label", help="What the key is for, e.g. the sensor's host."),
    server: str | None = typer.Option(None, "--server", help="Scope the key to this server id: it posts "
                                      "readings only for it and may run its agent (`tasker agent`)."),
) -> None:
    """Create an ingest key for a sensor; prints it once (only its hash is stored)."""
    from backend.services.audit import AuditLog
    from backend.services.auth import AuthService

    async def work(registry: Any) -> tuple[Any, str]:
        record, key = await AuthService(registry).create_ingest_key(label, _shell_actor(), server)
        await AuditLog(registry).record(_shell_actor(), "key.created", record.key_id,
                                        f"label {label!r}, server {server or 'any'}")
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
    rows = [{
        "key_id": k.key_id, "label": k.label, "created_by": k.created_by,
        "created_at": format_rfc3339(k.created_at_ms),
        "revoked_at": format_rfc3339(k.revoked_at_ms) if k.revoked_at_ms is not None else None,
        "server_id": k.server_id,
    } for k in keys]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        typer.echo("No ingest keys. Create one with: tasker keys create --label NAME")
        return
    header = ("KEY ID", "LABEL", "SERVER", "CREATED BY", "CREATED AT", "STATUS")
    table = [header] + [(r["key_id"], r["label"], r["server_id"] or "any", r["created_by"], r["created_at"],
                         f"revoked {r['revoked_at']}" if r["revoked_at"] else "active") for r in rows]
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
