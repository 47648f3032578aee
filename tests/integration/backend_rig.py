"""Running the real backend in tests, in embedded mode or over the real services.

In-process backends serve on 127.0.0.1 port 0; `spawn_backend` starts `tasker backend` as a
subprocess (for SIGKILL tests). Distributed runs get names of their own: a Cassandra keyspace and
a MongoDB database per test session, a RabbitMQ name prefix per test; all are deleted after.
The HTTP calls use aiohttp directly: these tests check the wire contract, not a client.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import secrets
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest

from backend.bootstrap import Backend, serving
from backend.services.wire import (
    LIVE_CHANNEL,
    PLAN_CHANNEL,
    REGISTRY_CHANNEL,
    queue_for,
)
from tasker.config import Settings
from tasker.domain import METRICS

REPO = Path(__file__).resolve().parents[2]
TASKER = str(REPO / ".venv" / "bin" / "tasker")
WAIT_S = 60.0
ROLLUP_WAIT_S = 15.0  # how long history may lag raw paging (the packager's rollup interval, 1 s, and more)


# --- where the backend finds its services -------------------------------------------------------


@dataclass
class Mode:
    """A backend configuration under test: its settings and RabbitMQ name prefix."""

    name: str
    settings: Settings
    queue_prefix: str = "tasker"

    def env(self) -> dict[str, str]:
        """The environment that points a `tasker backend` subprocess at the same services."""
        env = dict(os.environ)
        env.update(
            {
                "TASKER_BROKER_URL": self.settings.broker_url,
                "TASKER_TIMESERIES_URL": self.settings.timeseries_url,
                "TASKER_REGISTRY_URL": self.settings.registry_url,
                "TASKER_QUEUE_PREFIX": self.queue_prefix,
                "TASKER_LISTEN": "127.0.0.1:0",
            }
        )
        return env


def _with_path(url: str, path: str) -> str:
    return urlsplit(url)._replace(path=f"/{path}").geturl()


@pytest.fixture(scope="session")
def distributed_names(cassandra_url: str, mongodb_url: str):
    """(cassandra URL, mongodb URL) with a keyspace and a database of this session's own, dropped
    at the end."""
    suffix = uuid.uuid4().hex[:10]
    base_ks = urlsplit(cassandra_url).path.strip("/") or "tasker_test"
    base_db = urlsplit(mongodb_url).path.strip("/") or "tasker_test"
    keyspace, database = f"{base_ks}_core_{suffix}", f"{base_db}_core_{suffix}"
    yield _with_path(cassandra_url, keyspace), _with_path(mongodb_url, database)

    from cassandra.cluster import Cluster
    from pymongo import MongoClient

    from backend.adapters.cassandra import parse_url

    hosts, port, _ = parse_url(cassandra_url)
    cluster = Cluster(hosts, port=port, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    finally:
        cluster.shutdown()
    client = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()


async def delete_rabbitmq_names(amqp_url: str, prefix: str) -> None:
    """Delete every queue and exchange a backend with this prefix declares."""
    queues = [f"{prefix}.{queue_for(m)}" for m in METRICS] + [f"{prefix}.dead-letter"]
    exchanges = [
        f"{prefix}.readings",
        f"{prefix}.dead",
        f"{prefix}.events.{LIVE_CHANNEL}",
        f"{prefix}.events.{REGISTRY_CHANNEL}",
        f"{prefix}.events.{PLAN_CHANNEL}",
    ]
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        for name, kind in [(q, "queue") for q in queues] + [(e, "exchange") for e in exchanges]:
            channel = await connection.channel()
            try:
                if kind == "queue":
                    await channel.queue_delete(name)
                else:
                    await channel.exchange_delete(name)
            except aio_pika.exceptions.AMQPError:
                pass  # never declared by this test
            finally:
                if not channel.is_closed:
                    await channel.close()


@pytest.fixture
async def distributed(amqp_url: str, distributed_names) -> AsyncIterator[Mode]:
    cassandra, mongodb = distributed_names
    prefix = f"tasker-core-{uuid.uuid4().hex[:8]}"
    yield Mode(
        "distributed",
        Settings(broker_url=amqp_url, timeseries_url=cassandra, registry_url=mongodb),
        queue_prefix=prefix,
    )
    await delete_rabbitmq_names(amqp_url, prefix)


@pytest.fixture
async def distributed_own_registry(distributed: Mode, mongodb_url: str) -> AsyncIterator[Mode]:
    """`distributed` with a MongoDB database of this test's own, for a test whose scheduler
    must not plan the tasks other tests left in the session's registry."""
    database = f"{urlsplit(distributed.settings.registry_url).path.strip('/')}_{uuid.uuid4().hex[:8]}"
    settings = replace(distributed.settings, registry_url=_with_path(mongodb_url, database))
    yield replace(distributed, settings=settings)

    from pymongo import MongoClient

    client = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()


@pytest.fixture
def embedded(tmp_path: Path) -> Mode:
    return Mode(
        "embedded",
        Settings(
            broker_url="memory://",
            timeseries_url=f"sqlite:///{tmp_path}/ts.db",
            registry_url=f"sqlite:///{tmp_path}/registry.db",
        ),
    )


@pytest.fixture(params=["embedded", "distributed"])
def mode(request) -> Mode:
    return request.getfixturevalue(request.param)


# --- a backend and a session on it ---------------------------------------------------------------


@asynccontextmanager
async def running_backend(mode: Mode, roles: Iterable[str] = (), **options: Any) -> AsyncIterator[tuple[Backend, str]]:
    """An in-process backend serving on a free port: (backend, base URL). `options` go to
    `Backend.create` (e.g. scheduler_settings)."""
    backend = Backend.create(mode.settings, roles, queue_prefix=mode.queue_prefix, **options)
    try:
        await backend.start(give_up_after_s=20)
        async with serving(backend, "127.0.0.1", 0) as url:
            yield backend, url
    finally:
        await backend.close()


@dataclass
class Api:
    """An HTTP session against a backend, logged in as a fresh user of the given role."""

    url: str
    http: aiohttp.ClientSession
    token: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    async def call(
        self, method: str, path: str, *, expect: int | None = None, token: str | None = None, **kwargs: Any
    ) -> tuple[int, Any]:
        headers = dict(self.headers if token is None else {"Authorization": f"Bearer {token}"} if token else {})
        async with self.http.request(method, self.url + path, headers=headers, **kwargs) as response:
            text = await response.text()
            body = json.loads(text) if text and response.content_type == "application/json" else text
            if expect is not None and response.status != expect:
                pytest.fail(f"{method} {path}: expected {expect}, got {response.status}: {text[:500]}")
            return response.status, body

    async def add_server(self, name: str | None = None, **changes: Any) -> dict[str, Any]:
        form = {
            "name": name or f"srv-{secrets.token_hex(4)}",
            "location": {"region": "eu-west"},
            "energy_source": "wind",
            "idle_watts": 80,
            "max_watts": 400,
            "cores": 16,
        }
        form.update(changes)
        _, body = await self.call("POST", "/api/v1/servers", json=form, expect=201)
        return body

    async def post(self, readings: list[dict[str, Any]], token: str | None = None) -> tuple[int, Any]:
        return await self.call("POST", "/api/v1/readings", json={"readings": readings}, token=token)

    async def post_retrying(self, readings: list[dict[str, Any]], deadline_s: float = WAIT_S) -> None:
        """Post until 202, retrying on 503 as a sensor does."""
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                status, body = await self.post(readings)
            except aiohttp.ClientError:
                status, body = 0, "connection failed"
            if status == 202:
                return
            if status not in (0, 503) or time.monotonic() > deadline:
                pytest.fail(f"posting readings: {status} {body}")
            await asyncio.sleep(0.2)

    async def all_raw(
        self, server_id: str, metric: str, from_ms: int, to_ms: int, limit: int = 500
    ) -> list[tuple[int, float]]:
        """Every raw reading of a range by following next_cursor; checks newest-first order."""
        out: list[tuple[int, float]] = []
        cursor = None
        while True:
            params = {"metric": metric, "from": str(from_ms), "to": str(to_ms), "limit": str(limit)}
            if cursor:
                params["cursor"] = cursor
            _, page = await self.call("GET", f"/api/v1/servers/{server_id}/readings", params=params, expect=200)
            assert page["metric"] == metric and page["unit"] == METRICS[metric].unit
            assert len(page["readings"]) <= limit
            out.extend((r["ts"], r["value"]) for r in page["readings"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
        stamps = [ts for ts, _ in out]
        assert stamps == sorted(stamps, reverse=True), "raw readings are not newest first"
        return out

    async def history(self, server_id: str, metric: str, from_ms: int, to_ms: int, points: int) -> dict[str, Any]:
        params = {"metric": metric, "from": str(from_ms), "to": str(to_ms), "points": str(points)}
        _, body = await self.call("GET", f"/api/v1/servers/{server_id}/history", params=params, expect=200)
        return body


async def login(http: aiohttp.ClientSession, url: str, username: str, password: str) -> Api:
    async with http.post(f"{url}/api/v1/auth/login", json={"username": username, "password": password}) as r:
        body = await r.json()
        assert r.status == 200, body
    return Api(url, http, body["token"], {"Authorization": f"Bearer {body['token']}"})


async def user_session(backend: Backend, http: aiohttp.ClientSession, url: str, role: str = "sysadmin") -> Api:
    """A new user of `role` (created through the backend's auth service), logged in over HTTP."""
    assert backend.auth is not None
    username = f"{role}-{secrets.token_hex(4)}"
    password = secrets.token_urlsafe(12)
    await backend.auth.add_user(username, role, password)
    return await login(http, url, username, password)


# --- a stream of readings and what must come back --------------------------------------------


@dataclass
class Expected:
    """Readings posted, by (server, metric): ts -> value (the last posted value of a ts wins)."""

    series: dict[tuple[str, str], dict[int, float]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, readings: Iterable[dict[str, Any]]) -> None:
        for r in readings:
            self.series[(r["server_id"], r["metric"])][r["ts"]] = r["value"]

    @property
    def total(self) -> int:
        return sum(len(s) for s in self.series.values())


def make_readings(server_ids: list[str], start_ms: int, count: int, step_ms: int, seed: int = 0) -> list[dict]:
    """`count` readings per server, power and co2 alternating; values are multiples of 1/4 so
    they are exact in Cassandra's 32-bit float column."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        for server_id in server_ids:
            metric = "power" if i % 4 else "co2"
            out.append(
                {
                    "server_id": server_id,
                    "metric": metric,
                    "ts": start_ms + i * step_ms,
                    "value": rng.randrange(0, 8_000) / 4,
                }
            )
    return out


async def wait_until_stored(
    api: Api, expected: Expected, from_ms: int, to_ms: int, timeout_s: float = WAIT_S
) -> dict[tuple[str, str], list[tuple[int, float]]]:
    """Poll raw paging until every expected series holds as many readings as posted, then (for
    up to ROLLUP_WAIT_S more) the hourly history until it agrees with them: the packager
    recomputes rollups about once a second, after the raw rows are in, so history lags raw paging
    by that much. If history still disagrees then, the caller's history checks say how."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {key: await api.all_raw(key[0], key[1], from_ms, to_ms, limit=2_000) for key in expected.series}
        counts = sum(len(v) for v in found.values())
        if all(len(found[k]) >= len(v) for k, v in expected.series.items()):
            await _wait_for_rollups(api, expected, from_ms, to_ms)
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"only {counts} of {expected.total} readings stored after {timeout_s:.0f}s")
        await asyncio.sleep(0.3)


async def _wait_for_rollups(api: Api, expected: Expected, from_ms: int, to_ms: int) -> None:
    deadline = time.monotonic() + ROLLUP_WAIT_S
    hours = max(1, (to_ms - from_ms) // 3_600_000)
    for (server_id, metric), series in expected.series.items():
        while True:
            try:
                assert_history_matches(await api.history(server_id, metric, from_ms, to_ms, hours), series)
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(0.2)


def assert_exactly_once(found: dict[tuple[str, str], list[tuple[int, float]]], expected: Expected) -> None:
    for key, series in expected.series.items():
        stamps = [ts for ts, _ in found[key]]
        assert len(stamps) == len(set(stamps)), f"{key}: a reading is stored twice"
        assert dict(found[key]) == series, f"{key}: stored readings differ from those posted"


def bucket_aggregates(series: dict[int, float], width_ms: int) -> dict[int, tuple[float, float, float]]:
    """(min, avg, max) per epoch-aligned bucket, computed from the posted readings."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for ts, value in series.items():
        buckets[ts - ts % width_ms].append(value)
    return {start: (min(v), sum(v) / len(v), max(v)) for start, v in buckets.items()}


def assert_history_matches(history: dict[str, Any], series: dict[int, float]) -> None:
    """Each returned bucket equals the aggregate of the raw readings posted into it."""
    width_ms = history["resolution_s"] * 1000
    expected = bucket_aggregates(series, width_ms)
    got = {p[0]: tuple(p[1:]) for p in history["points"]}
    assert set(got) == set(expected), f"buckets differ at resolution {history['resolution_s']} s"
    for start, (lo, avg, hi) in expected.items():
        g_lo, g_avg, g_hi = got[start]
        assert (g_lo, g_hi) == (lo, hi), f"bucket {start}: min/max {g_lo, g_hi} != {lo, hi}"
        assert abs(g_avg - avg) <= 1e-6 * max(1.0, abs(avg)), f"bucket {start}: avg {g_avg} != {avg}"


# --- `tasker backend` as a subprocess ----------------------------------------------------------


@dataclass
class Spawned:
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, unacked messages are simply abandoned."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode


async def spawn_backend(
    mode: Mode, roles: Iterable[str], log_path: Path, extra_env: dict[str, str] | None = None
) -> Spawned:
    """`tasker backend --role ...` in a subprocess; returns once it prints that it listens."""
    args = [TASKER, "backend"] + [a for r in roles for a in ("--role", r)]
    env = mode.env()
    env.update(extra_env or {})
    out = open(log_path, "wb")
    process = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    spawned = Spawned(process, log_path)
    deadline = time.monotonic() + WAIT_S
    while "listening on http://" not in spawned.log():
        if process.poll() is not None or time.monotonic() > deadline:
            spawned.kill()
            pytest.fail(f"tasker backend {' '.join(args[2:])} did not start:\n{spawned.log()[-3000:]}")
        await asyncio.sleep(0.1)
    return spawned


def listening_url(text: str) -> str:
    match = re.search(r"listening on (http://[0-9.]+:\d+)", text)
    assert match, text
    return match.group(1)
