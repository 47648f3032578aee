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
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from backend.http.app import build_app
from backend.http.context import ApiContext
from backend.http.ws import WsDispatcher, default_dispatcher
from backend.ports import Broker, Registry, TimeSeriesStore, Unavailable
from backend.roles import ROLES
from backend.services.auth import AuthService
from backend.services.health import HealthWatch
from backend.services.live import LiveHub
from backend.services.packager import DEFAULT_PREFETCH, Packager
from backend.services.telemetry import Telemetry
from backend.services.wire import queue_for
from tasker.config import Settings
from tasker.domain import METRICS

log = logging.getLogger(__name__)



def _needing(adapter: str) -> frozenset[str]:
    return frozenset(name for name, role in ROLES.items() if adapter in role.NEEDS)


NEEDS_BROKER = _needing("broker")
NEEDS_TIMESERIES = _needing("timeseries")
NEEDS_REGISTRY = _needing("registry")
DEFAULT_QUEUE_PREFIX = "tasker"


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


def open_broker(url: str, queue_prefix: str = DEFAULT_QUEUE_PREFIX) -> Broker:
    """The broker adapter named by TASKER_BROKER_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from backend.adapters.memory_broker import MemoryBroker

        return MemoryBroker()
    if scheme in ("amqp", "amqps"):
        from backend.adapters.rabbitmq import RabbitMQBroker

        try:
            return RabbitMQBroker(url, prefix=queue_prefix)
        except ValueError as exc:
            raise StartupError(f"TASKER_BROKER_URL or the queue prefix: {exc}") from None
    raise StartupError(f"TASKER_BROKER_URL={url!r}: expected memory:// or amqp://")


def open_timeseries(url: str, retention_days: int) -> TimeSeriesStore:
    """The time-series adapter named by TASKER_TIMESERIES_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from backend.adapters.sqlite_timeseries import SqliteTimeSeries

        return SqliteTimeSeries(sqlite_path(url, "TASKER_TIMESERIES_URL"))
    if scheme == "cassandra":
        from backend.adapters.cassandra import CassandraTimeSeries

        try:
            return CassandraTimeSeries(url, retention_days=retention_days)
        except ValueError as exc:
            raise StartupError(f"TASKER_TIMESERIES_URL={url!r}: {exc}") from None
    raise StartupError(f"TASKER_TIMESERIES_URL={url!r}: expected sqlite:/// or cassandra://")


def open_registry(url: str) -> Registry:
    """The registry adapter named by TASKER_REGISTRY_URL's scheme (not yet started)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from backend.adapters.sqlite_registry import SqliteRegistry

        return SqliteRegistry(sqlite_path(url, "TASKER_REGISTRY_URL"))
    if scheme == "mongodb":
        from backend.adapters.mongo import MongoRegistry

        try:
            return MongoRegistry(url)
        except ValueError as exc:
            raise StartupError(f"TASKER_REGISTRY_URL={url!r}: {exc}") from None
    raise StartupError(f"TASKER_REGISTRY_URL={url!r}: expected sqlite:/// or mongodb://")


async def start_with_retry(name: str, adapter: Any, give_up_after_s: float | None = None) -> None:
    """Start an adapter, retrying with capped backoff while its service is unavailable."""
    delay = 0.5
    waited = 0.0
    while True:
        try:
            await adapter.start()
        except Unavailable as exc:
            if give_up_after_s is not None and waited >= give_up_after_s:
                raise
            log.warning("%s unavailable: %s; retrying in %.1f s", name, exc, delay)
            await asyncio.sleep(delay)
            waited += delay
            delay = min(delay * 2, 10.0)
            continue
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
    _started: list[tuple[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings, roles: Iterable[str] = (), **options: Any) -> Backend:
        """Choose the adapters the roles need from the settings' URLs; connects nothing."""
        chosen = check_roles(roles, settings.broker_url)
        backend = cls(settings, chosen, **options)
        if chosen & NEEDS_BROKER:
            backend.broker = open_broker(settings.broker_url, backend.queue_prefix)
        if chosen & NEEDS_TIMESERIES:
            backend.timeseries = open_timeseries(settings.timeseries_url, settings.retention_days)
        if chosen & NEEDS_REGISTRY:
            backend.registry = open_registry(settings.registry_url)
        return backend

    async def start(self, give_up_after_s: float | None = None) -> None:
        """Connect the adapters (retrying while down), then wire and start the services."""
        for name, adapter in (("registry", self.registry), ("time-series store", self.timeseries),
                              ("broker", self.broker)):
            if adapter is not None:
                await start_with_retry(name, adapter, give_up_after_s)
                self._started.append((name, adapter))
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
        return build_app(self.context, self.roles, self.dispatcher)

    async def close(self) -> None:
        """Stop consuming first (in-flight messages go back), then the packager, then the stores."""
        if self.health is not None:
            await self.health.close()
        if self.broker is not None and ("broker", self.broker) in self._started:
            await self.broker.close()
        if self.packager is not None:
            await self.packager.close()
        for name, adapter in reversed(self._started):
            if name != "broker":
                try:
                    await adapter.close()
                except Exception as exc:  # noqa: BLE001 - closing must go on for the others
                    log.warning("closing the %s failed: %s", name, exc)
        self._started.clear()


@asynccontextmanager
async def serving(backend: Backend, host: str, port: int) -> AsyncIterator[str]:
    """Serve the backend's HTTP app on host:port (0 = any free port); yields its base URL."""
    runner = web.AppRunner(backend.app(), access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        bound = runner.addresses[0]
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        await runner.cleanup()
