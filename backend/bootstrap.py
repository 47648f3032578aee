"""The composition root: settings -> adapters (chosen by URL scheme) -> services -> roles.

Nothing connects at import time. `Backend` builds the adapters the chosen roles need, starts
them (retrying with backoff while a service is down), wires the services and the HTTP app, and
closes everything in reverse order.

Roles: `ingest` (POST readings -> broker), `packager` (broker -> time-series store), `history`
(history and raw readings), `api` (auth, servers, websocket). Every process also serves
/healthz, /readyz and /metrics.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from backend.http.app import ClientTimeouts, build_app
from backend.http.context import ApiContext
from backend.http.ws import WsDispatcher, default_dispatcher
from backend.ports import Broker, Registry, TimeSeriesStore, Unavailable
from backend.roles import ROLES
from backend.services.agents import AgentSettings
from backend.services.auth import AuthService
from backend.services.health import HealthWatch
from backend.services.live import LiveHub
from backend.services.packager import DEFAULT_PREFETCH, Packager
from backend.services.scheduler import SchedulerSettings
from backend.services.telemetry import Telemetry
from backend.services.wire import queue_for
from tasker.backoff import RetryBackoff
from tasker.config import Settings, redact_url, split_hosts, xdg_data_home
from tasker.domain import METRICS
from tasker.private_files import private_dir

log = logging.getLogger(__name__)


def _needing(adapter: str) -> frozenset[str]:
    return frozenset(name for name, role in ROLES.items() if adapter in role.NEEDS)


NEEDS_BROKER = _needing("broker")
NEEDS_TIMESERIES = _needing("timeseries")
NEEDS_REGISTRY = _needing("registry")
DEFAULT_QUEUE_PREFIX = "tasker"
START_RETRY_INITIAL_S = 0.5
START_RETRY_MAX_S = 10.0
"""First and longest wait between attempts to reach a service that is down at startup."""
QUEUE_PREFIX = re.compile(r"[A-Za-z0-9._-]{1,64}")


class StartupError(Exception):
    """The backend cannot start as configured; the message is one line for the user."""


def check_roles(roles: Iterable[str], broker_url: str) -> frozenset[str]:
    """The chosen roles (all when none), refusing a split that the broker cannot carry."""
    chosen = frozenset(roles) or frozenset(ROLES)
    unknown = chosen - ROLES.keys()
    if unknown:
        raise StartupError(f"unknown role {sorted(unknown)[0]!r}; roles are {', '.join(ROLES)}")
    if urlsplit(broker_url).scheme == "memory" and chosen & NEEDS_BROKER and chosen != ROLES.keys():
        raise StartupError(
            "TASKER_BROKER_URL=memory:// only connects roles inside one process, so "
            f"--role {' --role '.join(sorted(chosen))} would publish to or wait on a queue no other "
            "process can see; run every role in one process (tasker backend) or point "
            "TASKER_BROKER_URL at RabbitMQ (amqp://...) to split roles across processes"
        )
    return chosen


def sqlite_path(url: str, variable: str) -> Path:
    """The file of a `sqlite:///relative.db` or `sqlite:////absolute.db` URL."""
    rest = url.split("://", 1)[1]
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise StartupError(f"{variable}={url!r}: no file path after sqlite:///")
    return Path(path)


def usable_sqlite_path(url: str, variable: str) -> Path:
    """The SQLite file of `url`, its directory created; StartupError when it cannot be written.

    A local file that cannot be written will not become writable by retrying, so this fails at
    once, naming the variable, instead of waiting like for a service that is down.
    """
    return writable_file(
        sqlite_path(url, variable), f"{variable}={url!r}", "expected sqlite:///path/to/file.db in a writable directory"
    )


def writable_file(path: Path, label: str, expected: str) -> Path:
    """`path`, its directory created; StartupError starting with `label` when it cannot be
    written."""
    if path.is_dir():
        raise StartupError(f"{label}: {path} is a directory; {expected}")
    try:
        private_dir(path.parent)
    except FileExistsError:
        raise StartupError(f"{label}: {path.parent} is a file, not a directory; {expected}") from None
    except OSError as exc:
        raise StartupError(
            f"{label}: cannot create the directory {path.parent}: {exc.strerror or exc}; {expected}"
        ) from None
    target = path if path.exists() else path.parent
    if not os.access(target, os.W_OK):
        raise StartupError(f"{label}: {target} is not writable by this user; {expected}")
    return path


def _bad_url(variable: str, url: str, exc: Exception) -> StartupError:
    """One line for an adapter's refusal of its URL, naming the variable once (adapters repeat
    the URL in their messages: "time-series URL '...': reason")."""
    reason = re.sub(r"^[\w -]*URL '[^']*': ", "", str(exc))
    return StartupError(f"{variable}={redact_url(url)!r}: {reason}".replace(url, redact_url(url)))


JOURNAL_FILE = "queue.db"


def journal_path(broker_url: str, timeseries_url: str = "") -> Path:
    """Where the embedded broker journals its work messages.

    `memory:///path.db` (relative) or `memory:////abs/path.db` names the file, as for sqlite://
    URLs; plain `memory://` puts `queue.db` next to the embedded time-series file, so a data
    directory (the demo's temporary one included) holds everything a restart needs, or in
    `<XDG data>/tasker/` when the time series are not in SQLite.
    """
    expected = "expected memory:// or memory:///path/to/queue.db in a writable directory"
    if urlsplit(broker_url).netloc:
        raise StartupError(f"TASKER_BROKER_URL={broker_url!r}: the embedded broker has no host; {expected}")
    if urlsplit(broker_url).path.strip("/"):
        path = sqlite_path(broker_url, "TASKER_BROKER_URL")
    elif urlsplit(timeseries_url).scheme == "sqlite":
        path = sqlite_path(timeseries_url, "TASKER_TIMESERIES_URL").parent / JOURNAL_FILE
    else:
        path = xdg_data_home() / "tasker" / JOURNAL_FILE
    return writable_file(path, f"TASKER_BROKER_URL={broker_url!r} (journal {path})", expected)


def open_broker(url: str, queue_prefix: str = DEFAULT_QUEUE_PREFIX, timeseries_url: str = "") -> Broker:
    """The broker adapter named by TASKER_BROKER_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from backend.adapters.memory_broker import MemoryBroker

        return MemoryBroker(journal=journal_path(url, timeseries_url))
    if scheme in ("amqp", "amqps"):
        from backend.adapters.rabbitmq import RabbitMQBroker

        if not QUEUE_PREFIX.fullmatch(queue_prefix):
            raise StartupError(f"TASKER_QUEUE_PREFIX={queue_prefix!r}: expected 1-64 letters, digits, . _ or -")
        try:
            return RabbitMQBroker(url, prefix=queue_prefix)
        except ValueError as exc:
            raise _bad_url("TASKER_BROKER_URL", url, exc) from None
    raise StartupError(f"TASKER_BROKER_URL={redact_url(url)!r}: expected memory:// or amqp://")


def open_timeseries(url: str, retention_days: int) -> TimeSeriesStore:
    """The time-series adapter named by TASKER_TIMESERIES_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from backend.adapters.sqlite_timeseries import SqliteTimeSeries

        return SqliteTimeSeries(usable_sqlite_path(url, "TASKER_TIMESERIES_URL"))
    if scheme == "cassandra":
        from backend.adapters.cassandra import CassandraTimeSeries

        try:
            return CassandraTimeSeries(url, retention_days=retention_days)
        except ValueError as exc:
            raise _bad_url("TASKER_TIMESERIES_URL", url, exc) from None
    raise StartupError(f"TASKER_TIMESERIES_URL={redact_url(url)!r}: expected sqlite:/// or cassandra://")


def open_registry(url: str) -> Registry:
    """The registry adapter named by TASKER_REGISTRY_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from backend.adapters.sqlite_registry import SqliteRegistry

        return SqliteRegistry(usable_sqlite_path(url, "TASKER_REGISTRY_URL"))
    if scheme == "mongodb":
        from backend.adapters.mongo import MongoRegistry

        try:
            return MongoRegistry(url)
        except ValueError as exc:
            raise _bad_url("TASKER_REGISTRY_URL", url, exc) from None
    raise StartupError(f"TASKER_REGISTRY_URL={redact_url(url)!r}: expected sqlite:/// or mongodb://")


async def _resolve_hosts(url: str) -> None:
    """Unavailable when a host of a service URL has no address (yet): a driver would fail on it
    with an obscure error, and DNS may answer once the service's container exists."""
    parts = urlsplit(url)
    if not parts.netloc.rpartition("@")[2] or parts.scheme in ("memory", "sqlite"):
        return
    loop = asyncio.get_running_loop()
    for host, _ in split_hosts(parts.netloc):
        host = host.strip("[]")
        try:
            await loop.getaddrinfo(host, None)
        except socket.gaierror as exc:
            raise Unavailable(f"cannot resolve host {host!r}: {exc.strerror or exc}") from None


async def start_with_retry(
    name: str, adapter: Any, give_up_after_s: float | None = None, variable: str = "", url: str = ""
) -> None:
    """Start an adapter, retrying with capped backoff while its service is unavailable.

    Each failed attempt logs one line naming the setting (`variable=url`, password hidden).
    After `give_up_after_s` (None: never) StartupError says what could not be reached; an
    adapter that fails in another way (a bug or a refusal retrying cannot fix) fails at once.
    """
    where = f"{variable}={redact_url(url)!r}" if variable else name
    backoff = RetryBackoff(START_RETRY_INITIAL_S, START_RETRY_MAX_S)
    started = time.monotonic()
    while True:
        try:
            await _resolve_hosts(url)
            await adapter.start()
        except Unavailable as exc:
            delay = backoff.failed()
            waited = time.monotonic() - started
            if give_up_after_s is not None and waited + delay > give_up_after_s:
                raise StartupError(
                    f"{where}: the {name} did not answer within {give_up_after_s:g} s"
                    f" ({exc}); is it running, and is the URL right?"
                ) from None
            left = f", giving up in {give_up_after_s - waited:.0f} s" if give_up_after_s is not None else ""
            log.warning("%s unavailable (%s): %s; retrying in %.1f s%s", name, where, exc, delay, left)
            await asyncio.sleep(delay)
            continue
        except (StartupError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the setting, not a driver's traceback
            from backend.adapters.work_journal import JournalInUse

            if isinstance(exc, JournalInUse):  # its message already says what to do
                raise StartupError(f"{where}: {exc}") from None
            raise StartupError(f"{where}: cannot start the {name}: {type(exc).__name__}: {exc}") from None
        log.info("%s connected", name)
        return


@dataclass(slots=True)
class Backend:
    """One backend process: its roles, adapters, services and HTTP app."""

    settings: Settings
    roles: frozenset[str]
    queue_prefix: str = DEFAULT_QUEUE_PREFIX
    prefetch: int = DEFAULT_PREFETCH
    dispatcher: WsDispatcher = field(default_factory=default_dispatcher)
    telemetry: Telemetry = field(default_factory=Telemetry)
    broker: Broker | None = None
    timeseries: TimeSeriesStore | None = None
    registry: Registry | None = None
    auth: AuthService | None = None
    packager: Packager | None = None
    hub: LiveHub | None = None
    context: ApiContext | None = None
    health: HealthWatch | None = None
    scheduler_settings: SchedulerSettings | None = None
    """Slot, horizon and pacing of the scheduler role (None: the defaults)."""
    agent_settings: AgentSettings | None = None
    """Agent lease and polling pace the api role hands to agents (None: the defaults)."""
    _closing: AsyncExitStack = field(default_factory=AsyncExitStack)
    _consuming: Broker | None = None
    """The broker once started: closed first, so that in-flight messages go back."""

    @classmethod
    def create(cls, settings: Settings, roles: Iterable[str] = (), **options: Any) -> Backend:
        """Choose the adapters the roles need from the settings' URLs; connects nothing."""
        chosen = check_roles(roles, settings.broker_url)
        backend = cls(settings, chosen, **options)
        if chosen & NEEDS_TIMESERIES:
            backend.timeseries = open_timeseries(settings.timeseries_url, settings.retention_days)
        if chosen & NEEDS_REGISTRY:
            backend.registry = open_registry(settings.registry_url)
        # After the stores: the default journal sits beside the time-series file, whose own
        # error (a folder that is a file, say) names the setting to fix.
        if chosen & NEEDS_BROKER:
            backend.broker = open_broker(settings.broker_url, backend.queue_prefix, settings.timeseries_url)
        return backend

    async def start(self, give_up_after_s: float | None = None) -> None:
        """Connect the adapters (retrying while down), then wire and start the services."""
        settings = self.settings
        for name, adapter, variable, url in (
            ("registry", self.registry, "TASKER_REGISTRY_URL", settings.registry_url),
            ("time-series store", self.timeseries, "TASKER_TIMESERIES_URL", settings.timeseries_url),
            ("broker", self.broker, "TASKER_BROKER_URL", settings.broker_url),
        ):
            if adapter is not None:
                await start_with_retry(name, adapter, give_up_after_s, variable, url)
                if adapter is self.broker:
                    self._consuming = self.broker
                else:
                    self.on_close(name, adapter.close)
        ctx = ApiContext(self.telemetry)
        if self.broker is not None:
            ctx.checks["broker"] = self.broker.ping
        if self.timeseries is not None:
            ctx.checks["timeseries"] = self.timeseries.ping
        if self.registry is not None:
            ctx.checks["registry"] = self.registry.ping
            self.auth = ctx.auth = AuthService(self.registry)
        self.context = ctx
        self._add_collectors()
        self.health = HealthWatch(ctx.checks, self.telemetry)
        self.health.start()
        if self.auth is not None and "api" in self.roles:
            self.auth.start_purging()
        for name, role in ROLES.items():
            if name in self.roles:
                await role.start(self)
        log.info("backend roles running: %s", ", ".join(r for r in ROLES if r in self.roles))

    def _add_collectors(self) -> None:
        broker = self.broker
        if broker is None:
            return

        async def broker_gauges() -> None:
            self.telemetry.dead_lettered.set(broker.dead_lettered())
            for metric in METRICS:
                depth = await broker.queue_depth(queue_for(metric))
                self.telemetry.queue_depth.set(depth, queue=queue_for(metric))

        self.telemetry.add_collector(broker_gauges)

    def app(self) -> web.Application:
        """The HTTP app of this process's roles; call after `start`."""
        assert self.context is not None, "start the backend first"
        return build_app(
            self.context, self.roles, self.dispatcher, timeouts=ClientTimeouts.from_settings(self.settings)
        )

    def on_close(self, name: str, close: Callable[[], Awaitable[object]]) -> None:
        """Have `close()` run when the backend closes, after the packager and before whatever
        was registered earlier (the stores first of all); a failure is logged, not raised."""
        self._closing.push_async_callback(_close_logging_failure, name, close)

    async def close(self) -> None:
        """Stop consuming first (in-flight messages go back), then the packager, then what the
        roles registered with `on_close` (newest first), then the stores. A store or role part
        that fails to close is logged and the others still close."""
        if self.health is not None:
            await self.health.close()
        if self.auth is not None:
            await self.auth.close()
        broker, self._consuming = self._consuming, None
        if broker is not None:
            await broker.close()
        if self.packager is not None:
            await self.packager.close()
        await self._closing.aclose()


async def _close_logging_failure(name: str, close: Callable[[], Awaitable[object]]) -> None:
    try:
        await close()
    except Exception as exc:  # noqa: BLE001 - closing must go on for the others
        log.warning("closing the %s failed: %s", name, exc)


@asynccontextmanager
async def serving(backend: Backend, host: str, port: int, label: str = "") -> AsyncIterator[str]:
    """Serve the backend's HTTP app on host:port (0 = any free port); yields its base URL.

    `label` names the setting the address came from (e.g. TASKER_LISTEN='...') in errors."""
    runner = web.AppRunner(backend.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            reason = re.sub(r"^error while attempting to bind on address \(.*?\): ", "", exc.strerror or str(exc))
            hint = " (is another tasker backend running there?)" if exc.errno == errno.EADDRINUSE else ""
            raise StartupError(
                f"{label + ': ' if label else ''}cannot listen on {host}:{port}: {reason.lower()}{hint}"
            ) from None
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{f'[{bound_host}]' if ':' in bound_host else bound_host}:{bound_port}"
    finally:
        await runner.cleanup()
