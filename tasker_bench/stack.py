"""A backend for one benchmark run: `tasker backend` subprocesses over names of the run's own.

Embedded mode is one process over SQLite files in a fresh temporary folder. Distributed mode uses
the real RabbitMQ, Cassandra and MongoDB-compatible services (addresses from TASKER_BROKER_URL,
TASKER_TIMESERIES_URL and TASKER_REGISTRY_URL when they point at such services, else the
`compose/local/services` defaults) with a fresh Cassandra keyspace, MongoDB database and RabbitMQ
name prefix (`--queue-prefix`), and may split roles over processes: N `ingest` processes, M
`packager` processes, and a main process with the other roles. Everything the run created is
deleted when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

REPO = Path(__file__).resolve().parents[1]
TASKER_CMD = [sys.executable, "-c", "from tasker.cli import main; main()"]
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0

LOCAL_SERVICES = {
    "TASKER_BROKER_URL": ("amqp", "amqp://guest:guest@127.0.0.1:5672/"),
    "TASKER_TIMESERIES_URL": ("cassandra", "cassandra://127.0.0.1:9042/tasker"),
    "TASKER_REGISTRY_URL": ("mongodb", "mongodb://127.0.0.1:27017/tasker"),
}
MODES = ("embedded", "distributed")


class BenchError(Exception):
    """A benchmark cannot run or went wrong; the message is one line for the user."""


def say(message: str) -> None:
    """Progress for the person watching, on stderr (stdout carries the figures)."""
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def service_url(variable: str) -> str:
    """The real service a distributed run uses for `variable`: the environment's, if it names
    one of the right kind, else the local default."""
    scheme, default = LOCAL_SERVICES[variable]
    value = os.environ.get(variable, "")
    return value if urlsplit(value).scheme == scheme else default


def _with_path(url: str, path: str) -> str:
    return urlsplit(url)._replace(path=f"/{path}").geturl()


@dataclass
class BackendProcess:
    """One `tasker backend --role ...` subprocess and where it listens."""

    name: str
    roles: tuple[str, ...]
    process: asyncio.subprocess.Process
    log_path: Path
    url: str = ""

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class Stack:
    """Backend processes and the isolated names they use, for one benchmark run.

    `ingesters`/`packagers`: processes of their own for those roles (distributed mode only);
    0 keeps the role in the main process.
    """

    mode: str
    ingesters: int = 0
    packagers: int = 0
    suffix: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tasker-bench-")))
    processes: list[BackendProcess] = field(default_factory=list)
    token: str = ""
    ingest_key: str = ""
    username: str = ""
    _password: str = ""
    _created: bool = False  # something of this run may exist in the services

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise BenchError(f"--mode {self.mode!r}: expected embedded or distributed")
        if self.mode == "embedded" and (self.ingesters or self.packagers):
            raise BenchError(
                "--ingesters/--packagers need --mode distributed: embedded mode is one "
                "process (its in-process broker cannot reach another)"
            )
        if self.ingesters < 0 or self.packagers < 0:
            raise BenchError("--ingesters and --packagers must be 0 or more")

    # --- names ---------------------------------------------------------------------------------

    @property
    def keyspace(self) -> str:
        return f"tasker_bench_{self.suffix}"

    @property
    def database(self) -> str:
        return f"tasker_bench_{self.suffix}"

    @property
    def queue_prefix(self) -> str:
        return f"tasker-bench-{self.suffix}"

    @property
    def amqp_url(self) -> str:
        return service_url("TASKER_BROKER_URL")

    @property
    def cassandra_url(self) -> str:
        return _with_path(service_url("TASKER_TIMESERIES_URL"), self.keyspace)

    @property
    def mongodb_url(self) -> str:
        return _with_path(service_url("TASKER_REGISTRY_URL"), self.database)

    def names(self) -> dict[str, str]:
        """What this run creates in the services (deleted at the end), or its work folder."""
        if self.mode == "embedded":
            return {"folder": str(self.workdir)}
        return {
            "cassandra_keyspace": self.keyspace,
            "mongodb_database": self.database,
            "rabbitmq_prefix": self.queue_prefix,
        }

    def env(self) -> dict[str, str]:
        """The environment of every backend process of this run."""
        env = dict(os.environ)
        if self.mode == "embedded":
            env.update(
                {
                    "TASKER_BROKER_URL": "memory://",
                    "TASKER_TIMESERIES_URL": f"sqlite:///{self.workdir / 'timeseries.db'}",
                    "TASKER_REGISTRY_URL": f"sqlite:///{self.workdir / 'registry.db'}",
                }
            )
        else:
            env.update(
                {
                    "TASKER_BROKER_URL": self.amqp_url,
                    "TASKER_TIMESERIES_URL": self.cassandra_url,
                    "TASKER_REGISTRY_URL": self.mongodb_url,
                    "TASKER_QUEUE_PREFIX": self.queue_prefix,
                }
            )
        env["TASKER_LISTEN"] = "127.0.0.1:0"
        env["XDG_CONFIG_HOME"] = str(self.workdir / "config")  # no user config file applies
        env["XDG_DATA_HOME"] = str(self.workdir / "data")
        return env

    # --- the processes -------------------------------------------------------------------------

    @property
    def main(self) -> BackendProcess:
        return self.processes[0]

    def urls_of(self, role: str) -> list[str]:
        """Base URLs of the processes running `role`."""
        return [p.url for p in self.processes if role in p.roles]

    def pids(self) -> dict[str, int]:
        return {p.name: p.pid for p in self.processes}

    def _layout(self) -> list[tuple[str, tuple[str, ...]]]:
        # The main process holds every role not split out (the scheduler too, as a deployment runs it).
        main_roles = ["api", "history", "scheduler"]
        if not self.ingesters:
            main_roles.insert(0, "ingest")
        if not self.packagers:
            main_roles.insert(1, "packager")
        layout = [("backend" if len(main_roles) == 5 else "backend-api", tuple(main_roles))]
        layout += [(f"ingest-{i + 1}", ("ingest",)) for i in range(self.ingesters)]
        layout += [(f"packager-{i + 1}", ("packager",)) for i in range(self.packagers)]
        return layout

    async def start(self) -> None:
        """Create the benchmark's user and ingest key, start every process, wait until ready."""
        if self.mode == "distributed":
            await check_services()
        self._created = True
        say(f"{self.mode} backend: names tasker_bench_{self.suffix}, work folder {self.workdir}")
        self.username = f"bench-{self.suffix}"
        self._password = secrets.token_urlsafe(16)
        await self._tasker(
            ["users", "add", self.username, "--role", "admin", "--password-stdin"], stdin=self._password + "\n"
        )
        out = await self._tasker(["keys", "create", "--label", "tasker bench"])
        keys = re.findall(r"^(tik_\S+)$", out, re.MULTILINE)
        if not keys:
            raise BenchError(f"`tasker keys create` printed no key:\n{out}")
        self.ingest_key = keys[0]
        # The main process first: it creates the schema the others then find.
        for name, roles in self._layout():
            self.processes.append(await self._spawn(name, roles))
        await asyncio.gather(*(self._wait_ready(p) for p in self.processes))
        say("ready: " + ", ".join(f"{p.name} (pid {p.pid}) {p.url}" for p in self.processes))
        self.token = await self._login()

    async def _tasker(self, args: Sequence[str], stdin: str | None = None) -> str:
        process = await asyncio.create_subprocess_exec(
            *TASKER_CMD,
            *args,
            env=self.env(),
            cwd=REPO,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), START_TIMEOUT_S)
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise BenchError(f"`tasker {' '.join(args[:2])}` failed: {text.strip()[-500:]}")
        return text

    async def _spawn(self, name: str, roles: tuple[str, ...]) -> BackendProcess:
        args = ["backend", *(a for role in roles for a in ("--role", role))]
        return await spawn_listening(
            name,
            roles,
            [*TASKER_CMD, *args],
            self.env(),
            self.workdir / f"{name}.log",
            what=f"`tasker {' '.join(args)}`",
        )

    async def _wait_ready(self, proc: BackendProcess) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        body = ""
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                try:
                    async with http.get(proc.url + "/readyz") as response:
                        if response.status == 200:
                            return
                        body = await response.text()
                except aiohttp.ClientError as exc:
                    body = str(exc)
                await asyncio.sleep(0.3)
        raise BenchError(f"{proc.name} at {proc.url} never became ready: {body[:300]}")

    async def _login(self) -> str:
        from tasker.client import TaskerClient

        async with TaskerClient(self.main.url) as client:
            answer = await client.login(self.username, self._password)
        return str(answer["token"])

    async def register_servers(self, count: int) -> list[str]:
        """Register a synthetic fleet of `count` servers; their ids in registration order."""
        from sensors.synthetic import synthetic_servers
        from tasker.client import TaskerClient

        bodies = synthetic_servers(count, seed=self.suffix, prefix="bench")
        ids: list[str | None] = [None] * count
        limit = asyncio.Semaphore(8)
        async with TaskerClient(self.main.url, token=self.token, timeout=60) as client:

            async def create(i: int) -> None:
                async with limit:
                    ids[i] = (await client.create_server(bodies[i]))["id"]

            await asyncio.gather(*(create(i) for i in range(count)))
        return [i for i in ids if i is not None]

    async def stored_total(self) -> int:
        """Readings the packagers report written (`tasker_readings_stored_total`, summed);
        re-writes of a redelivered message count again."""
        total = 0
        async with aiohttp.ClientSession() as http:
            for url in self.urls_of("packager"):
                async with http.get(url + "/metrics") as response:
                    total += int(sum_metric(await response.text(), "tasker_readings_stored_total"))
        return total

    async def backend_metrics(self) -> dict[str, object]:
        """What the backend's own /metrics say: broker confirm time per accepted batch, store
        write time per (group) write, redeliveries."""
        texts: dict[str, list[str]] = {"ingest": [], "packager": []}
        async with aiohttp.ClientSession() as http:
            for proc in self.processes:
                async with http.get(proc.url + "/metrics") as response:
                    text = await response.text()
                for role in texts:
                    if role in proc.roles:
                        texts[role].append(text)
        return {
            "publish_confirm": histogram_summary(texts["ingest"], "tasker_publish_seconds"),
            "store_write": histogram_summary(texts["packager"], "tasker_store_write_seconds"),
            "redelivered_messages": int(
                sum(sum_metric(t, "tasker_messages_redelivered_total") for t in texts["packager"])
            ),
            "store_write_failures": int(
                sum(sum_metric(t, "tasker_store_write_failures_total") for t in texts["packager"])
            ),
        }

    async def restart_main(self) -> None:
        """Stop the main process and start it again over the same names (a cold process)."""
        old = self.processes[0]
        await stop_process(old)
        self.processes[0] = await self._spawn(old.name + "-restarted", old.roles)
        await self._wait_ready(self.processes[0])
        self.token = await self._login()

    # --- shutting down -------------------------------------------------------------------------

    async def close(self, keep_logs: bool = False) -> None:
        """Stop every process (packagers last, so nothing is left half written), then delete the
        keyspace, database, queues and exchanges, and the work folder (unless `keep_logs`)."""
        await asyncio.gather(*(stop_process(p) for p in self.processes if "packager" not in p.roles))
        await asyncio.gather(*(stop_process(p) for p in self.processes))
        if self.mode == "distributed" and self._created:
            await drop_distributed_names(
                self.amqp_url,
                self.queue_prefix,
                service_url("TASKER_TIMESERIES_URL"),
                self.keyspace,
                service_url("TASKER_REGISTRY_URL"),
                self.database,
            )
        if keep_logs:
            say(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


async def check_services() -> None:
    """Fail fast, in one line, when a real service does not even accept a TCP connection."""
    for variable, (_, default) in LOCAL_SERVICES.items():
        url = service_url(variable)
        parts = urlsplit(url)
        host = (parts.hostname or "127.0.0.1").split(",")[0]
        port = parts.port or int(urlsplit(default).port or 0)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        except (OSError, TimeoutError) as exc:
            raise BenchError(
                f"{variable.removeprefix('TASKER_').removesuffix('_URL').lower()} service at "
                f"{host}:{port} is not answering ({exc.strerror or exc}); start the services with "
                "compose/local/services up"
            ) from None
        writer.close()


async def spawn_listening(
    name: str, roles: tuple[str, ...], argv: Sequence[str], env: dict[str, str], log_path: Path, what: str
) -> BackendProcess:
    """Start a server process logging to `log_path`; return once it printed "listening on URL"."""
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C in the terminal reaches the benchmark, which stops it
        )
    spawned = BackendProcess(name, roles, process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        match = re.search(r"listening on (http://[0-9.]+:\d+)", spawned.log_tail(200))
        if match:
            spawned.url = match.group(1)
            return spawned
        if process.returncode is not None or time.monotonic() > deadline:
            if process.returncode is None:
                process.kill()
                await process.wait()
            raise BenchError(f"{what} did not start (log {log_path}):\n{spawned.log_tail()}")
        await asyncio.sleep(0.1)


async def stop_process(proc: BackendProcess) -> None:
    """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
    if proc.process.returncode is None:
        proc.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            proc.process.kill()
            await proc.process.wait()


def histogram_summary(texts: Sequence[str], name: str) -> dict[str, float | int | None]:
    """count, mean and p50/p99 (as the upper bound of the bucket holding them, in ms) of a
    Prometheus histogram summed over processes and label sets."""
    buckets: dict[float, float] = {}
    total = count = 0.0
    for text in texts:
        for line in text.splitlines():
            if line.startswith(name + "_bucket"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                upper = float("inf") if bound == "+Inf" else float(bound)
                buckets[upper] = buckets.get(upper, 0.0) + float(line.rsplit(" ", 1)[1])
        total += sum_metric(text, name + "_sum")
        count += sum_metric(text, name + "_count")

    def quantile(q: float) -> float | None:
        for upper in sorted(buckets):
            if count and buckets[upper] >= q * count:
                return None if upper == float("inf") else round(upper * 1000, 1)
        return None

    return {
        "count": int(count),
        "mean_ms": round(1000 * total / count, 2) if count else None,
        "p50_ms_at_most": quantile(0.5),
        "p99_ms_at_most": quantile(0.99),
    }


def sum_metric(text: str, name: str) -> float:
    """Sum of every sample of metric `name` (all label sets) in Prometheus text."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def drop_distributed_names(
    amqp_url: str,
    prefix: str,
    cassandra_url: str,
    keyspace: str,
    mongodb_url: str | None = None,
    database: str | None = None,
) -> None:
    """Delete what a run created in the real services; failures are reported, not raised."""
    problems: list[str] = []
    try:
        await delete_rabbitmq_names(amqp_url, prefix)
    except Exception as exc:  # noqa: BLE001 - cleanup goes on for the other services
        problems.append(f"RabbitMQ names {prefix}.*: {exc}")
    try:
        await asyncio.to_thread(_drop_keyspace, cassandra_url, keyspace)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"Cassandra keyspace {keyspace}: {exc}")
    if mongodb_url and database:
        try:
            await asyncio.to_thread(_drop_database, mongodb_url, database)
        except Exception as exc:  # noqa: BLE001
            problems.append(f"MongoDB database {database}: {exc}")
    for problem in problems:
        say(f"could not delete {problem}")


def rabbitmq_names(prefix: str) -> tuple[list[str], list[str]]:
    """(queues, exchanges) a backend with this prefix (and the naive pipeline) declares."""
    from backend.adapters.rabbitmq import RabbitMQBroker
    from backend.services.wire import LIVE_CHANNEL, REGISTRY_CHANNEL, queue_for
    from tasker.domain import METRICS

    broker = RabbitMQBroker("amqp://127.0.0.1/", prefix=prefix)  # for its names; connects nothing
    queues = [broker.work_queue_name(queue_for(m)) for m in METRICS]
    queues += [broker.dead_letter_queue, f"{prefix}.naive"]
    exchanges = [
        broker.readings_exchange,
        broker.dead_letter_exchange,
        broker.events_exchange_name(LIVE_CHANNEL),
        broker.events_exchange_name(REGISTRY_CHANNEL),
    ]
    return queues, exchanges


async def delete_rabbitmq_names(amqp_url: str, prefix: str) -> None:
    import aio_pika

    from backend.adapters.rabbitmq import parse_broker_url

    queues, exchanges = rabbitmq_names(prefix)
    deletions = [("queue_delete", q) for q in queues] + [("exchange_delete", e) for e in exchanges]
    # a cluster URL names several hosts; aio-pika connects to one
    connection = await aio_pika.connect(parse_broker_url(amqp_url).urls[0], timeout=10)
    async with connection:
        for method, name in deletions:
            # A failed delete (never declared in this run) closes its channel: one channel each.
            async with connection.channel() as channel:
                with contextlib.suppress(aio_pika.exceptions.AMQPError):
                    await getattr(channel, method)(name)


def _drop_keyspace(cassandra_url: str, keyspace: str) -> None:
    from cassandra.cluster import Cluster

    from backend.adapters.cassandra import parse_url

    hosts, port, _ = parse_url(cassandra_url)
    cluster = Cluster(hosts, port=port, protocol_version=5)
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()


def _drop_database(mongodb_url: str, database: str) -> None:
    from pymongo import MongoClient

    client: MongoClient[Any] = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()
