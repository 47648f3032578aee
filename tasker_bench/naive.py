"""The naive ingest pipeline the ingest benchmark compares Tasker against.

    python -m tasker_bench.naive '<NaiveSpec as JSON>'

One reading per HTTP request, one broker message per reading, one INSERT per message; the
message is acked once its INSERT returned. It is deliberately the naive *design*, not a
crippled implementation: connections are opened once and reused (the seed opened a new AMQP
connection per request and a new Cassandra client per row, which is slower still), the consumer
handles `prefetch` messages at a time, and it skips what Tasker does on top (authentication
against the registry, validation against registered servers, rollups, latest values, live
fan-out). So the ratio it gives is, if anything, flattering to the naive design.

- distributed: aio-pika with publisher confirms on a durable queue `<prefix>.naive`, persistent
  messages; cassandra-driver with one prepared INSERT into `<keyspace>.naive_readings`.
- embedded: an asyncio queue as the broker; SQLite (WAL, synchronous=FULL like Tasker's
  embedded store) with one INSERT, committed, per reading.

It serves the same routes the benchmark uses on the real backend: POST /api/v1/readings,
GET /api/v1/servers/{id}/readings (every reading of the range, newest first, one page),
/readyz and /metrics (`tasker_readings_accepted_total`, `tasker_readings_stored_total`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

DAY_MS = 86_400_000


@dataclass
class NaiveSpec:
    mode: str  # embedded | distributed
    prefetch: int = 64
    sqlite_path: str = ""
    amqp_url: str = ""
    queue_prefix: str = ""
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1",)
    cassandra_port: int = 9042
    keyspace: str = ""


def spec_json(spec: NaiveSpec) -> str:
    return json.dumps(asdict(spec))


def _one_reading(payload: Any) -> tuple[str, str, int, float] | None:
    """The single reading of `{"readings": [r]}`, or None when the body is anything else."""
    try:
        (item,) = payload["readings"]
        reading = (item["server_id"], item["metric"], item["ts"], item["value"])
    except (KeyError, TypeError, ValueError):
        return None
    server_id, metric, ts, value = reading
    if not (isinstance(server_id, str) and isinstance(metric, str) and type(ts) is int and type(value) in (int, float)):
        return None
    return server_id, metric, ts, float(value)


class SqlitePipeline:
    """Embedded: an in-process queue and one committed INSERT per reading."""

    def __init__(self, spec: NaiveSpec) -> None:
        self.spec = spec
        self.queue: asyncio.Queue[tuple[str, str, int, float]] = asyncio.Queue()
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="naive-sqlite")
        self.con: sqlite3.Connection | None = None
        self.stored = 0
        self.tasks: list[asyncio.Task[None]] = []

    def _open(self) -> None:
        con = sqlite3.connect(self.spec.sqlite_path, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute(
            "CREATE TABLE IF NOT EXISTS readings (server_id TEXT, metric TEXT, ts_ms INTEGER,"
            " value REAL, PRIMARY KEY (server_id, metric, ts_ms)) WITHOUT ROWID"
        )
        self.con = con

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.thread, fn, *args)

    async def start(self) -> None:
        await self._in_thread(self._open)
        self.tasks = [asyncio.create_task(self._consume()) for _ in range(self.spec.prefetch)]

    async def publish(self, reading: tuple[str, str, int, float]) -> None:
        self.queue.put_nowait(reading)

    def _insert(self, reading: tuple[str, str, int, float]) -> None:
        assert self.con is not None
        self.con.execute("INSERT OR REPLACE INTO readings VALUES (?, ?, ?, ?)", reading)

    async def _consume(self) -> None:
        while True:
            reading = await self.queue.get()
            await self._in_thread(self._insert, reading)
            self.stored += 1

    def _select(self, server_id: str, metric: str, from_ms: int, to_ms: int) -> list[tuple[int, float]]:
        assert self.con is not None
        return self.con.execute(
            "SELECT ts_ms, value FROM readings WHERE server_id = ? AND metric = ? AND ts_ms >= ?"
            " AND ts_ms < ? ORDER BY ts_ms DESC",
            (server_id, metric, from_ms, to_ms),
        ).fetchall()

    async def series(self, server_id: str, metric: str, from_ms: int, to_ms: int) -> list[tuple[int, float]]:
        return await self._in_thread(self._select, server_id, metric, from_ms, to_ms)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.con is not None:
            await self._in_thread(self.con.close)
        self.thread.shutdown()


class RabbitCassandraPipeline:
    """Distributed: a confirmed persistent message per reading, an INSERT per message."""

    def __init__(self, spec: NaiveSpec) -> None:
        self.spec = spec
        self.stored = 0
        self.queue_name = f"{spec.queue_prefix}.naive"
        self.connection: Any = None
        self.publish_channel: Any = None
        self.cluster: Any = None
        self.session: Any = None
        self.insert: Any = None

    async def start(self) -> None:
        import aio_pika
        from cassandra.cluster import Cluster

        ks = self.spec.keyspace
        self.cluster = Cluster(list(self.spec.cassandra_hosts), port=self.spec.cassandra_port, protocol_version=5)
        self.session = await asyncio.to_thread(self.cluster.connect)
        for cql in (
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication ="
            " {'class': 'SimpleStrategy', 'replication_factor': 1}",
            f"CREATE TABLE IF NOT EXISTS {ks}.naive_readings (server_id text, metric text, day int,"
            " ts bigint, value double, PRIMARY KEY ((server_id, metric, day), ts))",
        ):
            await asyncio.to_thread(self.session.execute, cql, timeout=60)
        self.insert = await asyncio.to_thread(
            self.session.prepare,
            f"INSERT INTO {ks}.naive_readings (server_id, metric, day, ts, value) VALUES (?, ?, ?, ?, ?)",
        )
        self.select = await asyncio.to_thread(
            self.session.prepare,
            f"SELECT ts, value FROM {ks}.naive_readings WHERE server_id = ? AND metric = ? AND day = ?"
            " AND ts >= ? AND ts < ?",
        )
        self.connection = await aio_pika.connect(self.spec.amqp_url, timeout=10)
        self.publish_channel = await self.connection.channel(publisher_confirms=True)
        consume_channel = await self.connection.channel()
        await consume_channel.set_qos(prefetch_count=self.spec.prefetch)
        queue = await consume_channel.declare_queue(self.queue_name, durable=True)
        await queue.consume(self._on_message)

    async def publish(self, reading: tuple[str, str, int, float]) -> None:
        import aio_pika

        body = json.dumps(reading).encode()
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await self.publish_channel.default_exchange.publish(message, routing_key=self.queue_name)

    async def _cql(self, statement: Any, params: tuple[Any, ...]) -> list[Any]:
        """One statement through the driver's async API, its rows handed back to the loop."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[list[Any]] = loop.create_future()
        response = self.session.execute_async(statement, params)

        def settle(rows: Any = None, exc: BaseException | None = None) -> None:
            if done.done():
                return
            if exc is None:
                done.set_result(list(rows or []))
            else:
                done.set_exception(exc)

        def ok(rows: Any) -> None:
            loop.call_soon_threadsafe(settle, rows)

        def failed(exc: BaseException) -> None:
            loop.call_soon_threadsafe(settle, None, exc)

        response.add_callbacks(ok, failed)
        return await done

    async def _on_message(self, message: Any) -> None:
        server_id, metric, ts, value = json.loads(message.body)
        try:
            await self._cql(self.insert, (server_id, metric, ts // DAY_MS, ts, value))
        except Exception:  # noqa: BLE001 - not stored: let RabbitMQ deliver it again
            await message.nack(requeue=True)
            return
        await message.ack()
        self.stored += 1

    async def series(self, server_id: str, metric: str, from_ms: int, to_ms: int) -> list[tuple[int, float]]:
        rows: list[tuple[int, float]] = []
        for day in range(from_ms // DAY_MS, (to_ms - 1) // DAY_MS + 1):
            rows += [tuple(r) for r in await self._cql(self.select, (server_id, metric, day, from_ms, to_ms))]
        return sorted(rows, reverse=True)

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.shutdown)


def build_app(pipeline: SqlitePipeline | RabbitCassandraPipeline) -> web.Application:
    accepted = 0

    async def post_readings(request: web.Request) -> web.Response:
        nonlocal accepted
        reading = _one_reading(await request.json())
        if reading is None:
            return web.json_response({"error": "the naive pipeline takes exactly one reading per request"}, status=400)
        await pipeline.publish(reading)
        accepted += 1
        return web.json_response({"accepted": 1}, status=202)

    async def readings(request: web.Request) -> web.Response:
        q = request.query
        rows = await pipeline.series(request.match_info["server_id"], q["metric"], int(q["from"]), int(q["to"]))
        return web.json_response(
            {"metric": q["metric"], "readings": [{"ts": t, "value": v} for t, v in rows], "next_cursor": None}
        )

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(
            text=f"tasker_readings_accepted_total {accepted}\ntasker_readings_stored_total {pipeline.stored}\n"
        )

    async def ready(request: web.Request) -> web.Response:
        return web.json_response({"status": "ready"})

    app = web.Application()
    app.router.add_post("/api/v1/readings", post_readings)
    app.router.add_get("/api/v1/servers/{server_id}/readings", readings)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/readyz", ready)
    return app


async def serve(spec: NaiveSpec) -> None:
    pipeline = SqlitePipeline(spec) if spec.mode == "embedded" else RabbitCassandraPipeline(spec)
    await pipeline.start()
    runner = web.AppRunner(build_app(pipeline), access_log=None, handle_signals=False)
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"naive pipeline ({spec.mode}) listening on http://{host}:{port}", flush=True)
        await stop.wait()
    finally:
        await runner.cleanup()
        await pipeline.close()


def main() -> None:
    spec = NaiveSpec(**json.loads(sys.argv[1]))
    if spec.mode == "embedded":
        Path(spec.sqlite_path).parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(spec))


if __name__ == "__main__":
    main()
