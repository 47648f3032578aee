"""`tasker bench history`: history queries over a day of 1 s readings, and bytes on disk per reading.

One server gets `hours` x 3,600 emulated readings per metric (the sensors' model: noisy, rounded
as they send them), 1 s apart, ending now; once the packager has stored them all (checked through
the raw readings API), the history endpoint is timed for the last 24 h at 500 points and for the
last 30 days. Cold: the first call after the backend process
was restarted. Warm: `repeats` calls in a row. In distributed mode Cassandra is then flushed and
major-compacted (NodeTool over JMX) and the raw readings table's (`raw_minutes`) files are summed.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp

from tasker_bench.loadgen import METRIC_NAMES
from tasker_bench.machine import (
    code_version,
    machine_info,
    restarted_services,
    service_pids,
    summary_ms,
)
from tasker_bench.report import table, verdict
from tasker_bench.stack import REPO, BenchError, Stack, say, stop_process

TARGET_24H_P99_MS = 100.0
TARGET_30D_P99_MS = 150.0
TARGET_BYTES_PER_READING = 16.0
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
POST_BATCH = 5_000
STORE_TIMEOUT_S = 600.0


@dataclass
class HistoryParams:
    mode: str = "embedded"
    hours: int = 24
    repeats: int = 50
    points: int = 500
    keep_logs: bool = False

    def check(self) -> None:
        if not 1 <= self.hours <= 24 * 7:
            raise BenchError("--hours must be from 1 to 168")
        if self.repeats < 1:
            raise BenchError("--repeats must be at least 1")
        if not 1 <= self.points <= 10_000:
            raise BenchError("--points must be from 1 to 10000")


def emulated_readings(server: dict[str, Any], from_ms: int, seconds: int) -> list[dict[str, Any]]:
    """`seconds` of power and CO2 readings, 1 s apart, as `tasker sensors emulate` would send them
    for this server (its model, its rounding), so the bytes on disk are those of real-looking data."""
    from sensors.model import ServerModel, ServerSpec

    model = ServerModel(ServerSpec.from_json(server), seed="tasker bench history")
    readings = []
    for i in range(seconds):
        ts = from_ms + i * 1000
        power, co2 = model.sample(ts, 1.0)
        readings.append({"server_id": server["id"], "metric": "power", "ts": ts, "value": round(power, 3)})
        readings.append({"server_id": server["id"], "metric": "co2", "ts": ts, "value": round(co2, 4)})
    return readings


async def load_day(stack: Stack, server: dict[str, Any], from_ms: int, seconds: int) -> dict[str, Any]:
    """Post `seconds` emulated readings per metric, 1 s apart from `from_ms`; how long it took."""
    readings = emulated_readings(server, from_ms, seconds)
    bodies = [
        json.dumps({"readings": readings[i : i + POST_BATCH]}).encode() for i in range(0, len(readings), POST_BATCH)
    ]
    url = stack.urls_of("ingest")[0] + "/api/v1/readings"
    headers = {"Authorization": f"Bearer {stack.ingest_key}"}
    started = time.monotonic()
    limit = asyncio.Semaphore(4)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def post(body: bytes) -> None:
            async with limit, http.post(url, data=body, headers=headers) as response:
                if response.status != 202:
                    raise BenchError(f"loading the day: HTTP {response.status}: {(await response.text())[:300]}")

        await asyncio.gather(*(post(b) for b in bodies))
    posted_s = time.monotonic() - started
    deadline = time.monotonic() + STORE_TIMEOUT_S
    while await stack.stored_total() < len(readings):
        if time.monotonic() > deadline:
            raise BenchError(f"the packager had not stored {len(readings):,} readings after {STORE_TIMEOUT_S:g} s")
        await asyncio.sleep(0.25)
    return {"readings": len(readings), "posted_s": round(posted_s, 2), "stored_s": round(time.monotonic() - started, 2)}


async def count_series(
    http: aiohttp.ClientSession, url: str, token: str, server_id: str, metric: str, from_ms: int, to_ms: int
) -> tuple[int, int]:
    """(rows, distinct timestamps) of a series through the raw readings API."""
    params = {"metric": metric, "from": str(from_ms), "to": str(to_ms), "limit": "10000"}
    rows, seen = 0, set[int]()
    while True:
        async with http.get(
            f"{url}/api/v1/servers/{server_id}/readings", params=params, headers={"Authorization": f"Bearer {token}"}
        ) as response:
            page = await response.json()
            if response.status != 200:
                raise BenchError(f"reading back {metric}: HTTP {response.status}: {page}")
        rows += len(page["readings"])
        seen.update(r["ts"] for r in page["readings"])
        if not page["next_cursor"]:
            return rows, len(seen)
        params["cursor"] = page["next_cursor"]


async def time_queries(
    url: str, token: str, server_id: str, queries: dict[str, dict[str, str]], name: str, repeats: int
) -> tuple[list[float], dict[str, Any]]:
    """Call query `name` `repeats` times in a row; durations (s) and the last answer's shape."""
    durations: list[float] = []
    shape: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        for _ in range(repeats):
            began = time.perf_counter()
            async with http.get(
                f"{url}/api/v1/servers/{server_id}/history",
                params=queries[name],
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                body = await response.json()
            durations.append(time.perf_counter() - began)
            if response.status != 200:
                raise BenchError(f"history {name}: HTTP {response.status}: {body}")
            shape = {"resolution_s": body["resolution_s"], "points": len(body["points"])}
    return durations, shape


# --- bytes on disk ------------------------------------------------------------------------------


def nodetool_command() -> list[str] | None:
    """How to run Cassandra's NodeTool: `nodetool` on PATH, or its class from the jars that
    `compose/local/services` fetched (with the module flags Java 17 needs)."""
    if shutil.which("nodetool"):
        return ["nodetool"]
    cache = Path(os.environ.get("TASKER_SERVICES_CACHE", Path.home() / ".cache" / "tasker-services"))
    libs = sorted(glob.glob(str(cache / "cassandra-lib-*" / "cassandra-all-*.jar")))
    java = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
    java = java if Path(java).exists() else shutil.which("java") or ""
    if not libs or not java:
        return None
    flags = [f"--add-exports={m}=ALL-UNNAMED" for m in ("java.base/jdk.internal.misc", "jdk.unsupported/sun.misc")]
    flags += [
        f"--add-opens=java.base/{p}=ALL-UNNAMED"
        for p in ("sun.nio.ch", "java.io", "java.nio", "java.lang", "jdk.internal.ref")
    ]
    return [java, *flags, "-cp", str(Path(libs[-1]).parent / "*"), "org.apache.cassandra.tools.NodeTool"]


async def nodetool(*args: str) -> None:
    command = nodetool_command()
    if command is None:
        raise BenchError("no nodetool: neither on PATH nor the cassandra-all jars of compose/local/services")
    process = await asyncio.create_subprocess_exec(
        *command,
        "-h",
        "127.0.0.1",
        "-p",
        os.environ.get("TASKER_CASSANDRA_JMX_PORT", "7199"),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), 600)
    if process.returncode != 0:
        raise BenchError(f"nodetool {' '.join(args)} failed: {out.decode(errors='replace').strip()[-500:]}")


def table_bytes(keyspace: str) -> dict[str, dict[str, int]]:
    """Per table of the keyspace: bytes of every SSTable file, and of the Data.db files alone."""
    data = Path(os.environ.get("TASKER_CASSANDRA_DATA_DIR", REPO / ".services" / "cassandra" / "data" / "data"))
    found: dict[str, dict[str, int]] = {}
    for folder in sorted((data / keyspace).glob("*-*")):
        table_name = folder.name.rsplit("-", 1)[0]
        files = [f for f in folder.iterdir() if f.is_file()]
        found[table_name] = {
            "all_files": sum(f.stat().st_size for f in files),
            "data_db": sum(f.stat().st_size for f in files if f.name.endswith("Data.db")),
        }
    if not found:
        raise BenchError(f"no SSTables of keyspace {keyspace} under {data} (set TASKER_CASSANDRA_DATA_DIR)")
    return found


async def cassandra_disk(keyspace: str, readings: int) -> dict[str, Any]:
    """Flush and major-compact the keyspace, then bytes on disk per stored reading."""
    say("flushing and compacting the keyspace (nodetool)")
    await nodetool("flush", keyspace)
    await nodetool("compact", keyspace)
    tables = table_bytes(keyspace)
    raw = tables.get("raw_minutes", {"all_files": 0, "data_db": 0})
    everything = sum(t["all_files"] for t in tables.values())
    return {
        "tables": tables,
        "readings_table_bytes_per_reading": round(raw["all_files"] / readings, 2),
        "readings_data_db_bytes_per_reading": round(raw["data_db"] / readings, 2),
        "keyspace_bytes_per_reading": round(everything / readings, 2),
    }


def sqlite_disk(path: Path, readings: int) -> dict[str, Any]:
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return {
        "file_bytes": size,
        "file_bytes_per_reading": round(size / readings, 2),
        "note": "the whole SQLite file: raw readings, rollups and latest values with their indexes",
    }


# --- the benchmark --------------------------------------------------------------------------------


async def run_history(params: HistoryParams) -> dict[str, Any]:
    """The whole benchmark: the JSON object `--json` prints."""
    from tasker.client import TaskerClient

    params.check()
    stack = Stack(params.mode)
    seconds = params.hours * 3600
    anchor = int(time.time()) * 1000
    from_ms = anchor - seconds * 1000
    queries = {
        "24h": {"metric": "power", "from": str(anchor - DAY_MS), "to": str(anchor), "points": str(params.points)},
        "30d": {"metric": "power", "from": str(anchor - 30 * DAY_MS), "to": str(anchor), "points": str(params.points)},
    }
    result: dict[str, Any] = {
        "benchmark": "history",
        "parameters": asdict(params),
        "machine": machine_info(),
        "code": code_version(REPO),
        "targets": {
            "24h_warm_p99_ms": TARGET_24H_P99_MS,
            "30d_warm_p99_ms": TARGET_30D_P99_MS,
            "cassandra_bytes_per_reading": TARGET_BYTES_PER_READING,
        },
    }
    result["names"] = stack.names()
    services_before = service_pids(REPO) if params.mode == "distributed" else {}
    try:
        await stack.start()
        (server_id,) = await stack.register_servers(1)
        async with TaskerClient(stack.main.url, token=stack.token) as client:
            server = await client.get_server(server_id)
        say(f"loading {seconds:,} emulated readings per metric, 1 s apart")
        result["load"] = await load_day(stack, server, from_ms, seconds)
        async with aiohttp.ClientSession() as http:
            stored = {
                m: await count_series(http, stack.main.url, stack.token, server_id, m, from_ms, anchor)
                for m in METRIC_NAMES
            }
        result["stored"] = {m: {"rows": rows, "distinct": distinct} for m, (rows, distinct) in stored.items()}
        if any(rows != seconds or distinct != seconds for rows, distinct in stored.values()):
            raise BenchError(f"expected {seconds:,} readings per metric stored once, found {result['stored']}")

        figures: dict[str, Any] = {}
        for name in queries:
            say(f"restarting the backend for a cold {name} query")
            await stack.restart_main()
            cold, _ = await time_queries(stack.main.url, stack.token, server_id, queries, name, 1)
            warm, shape = await time_queries(stack.main.url, stack.token, server_id, queries, name, params.repeats)
            figures[name] = {"cold_ms": round(cold[0] * 1000, 2), "warm": summary_ms(warm), **shape}
        result["queries"] = figures
        readings = seconds * len(METRIC_NAMES)
        if params.mode == "distributed":
            result["disk"] = await cassandra_disk(stack.keyspace, readings)
        else:
            # Stopped first, so SQLite checkpoints its WAL into the main file.
            await asyncio.gather(*(stop_process(p) for p in stack.processes))
            result["disk"] = sqlite_disk(stack.workdir / "timeseries.db", readings)
    finally:
        await stack.close(params.keep_logs)
    result["load_average_after"] = machine_info()["load_average"]
    result["services_restarted"] = restarted_services(services_before, service_pids(REPO))
    return result


def render(result: dict[str, Any]) -> str:
    p, q = result["parameters"], result["queries"]
    head = (
        f"tasker bench history: {p['mode']} mode, {p['hours']} h of 1 s readings per metric "
        f"({result['load']['readings']:,} readings, stored in {result['load']['stored_s']} s); machine: "
        f"{result['machine']['cores']} cores, load average {result['machine']['load_average']}"
    )
    rows = []
    for name, target in (("24h", TARGET_24H_P99_MS), ("30d", TARGET_30D_P99_MS)):
        f = q[name]
        rows.append(
            [
                f"{name} at {p['points']} points",
                f["resolution_s"],
                f["points"],
                f["cold_ms"],
                f["warm"]["p50_ms"],
                f["warm"]["p99_ms"],
                target,
                verdict(f["warm"]["p99_ms"], target, False),
            ]
        )
    out = [
        head,
        "",
        table(
            ["query", "resolution s", "points", "cold ms", "warm p50 ms", "warm p99 ms", "target p99", "verdict"], rows
        ),
    ]
    disk = result.get("disk", {})
    if "readings_table_bytes_per_reading" in disk:
        per = disk["readings_table_bytes_per_reading"]
        out.append("")
        out.append(
            f"Cassandra raw readings table (raw_minutes) after flush + major compaction: {per} bytes per reading "
            f"(Data.db alone {disk['readings_data_db_bytes_per_reading']}; whole keyspace with rollups "
            f"{disk['keyspace_bytes_per_reading']}); target <= {TARGET_BYTES_PER_READING:g}: "
            f"{verdict(per, TARGET_BYTES_PER_READING, False)}"
        )
    elif "file_bytes_per_reading" in disk:
        out.append("")
        out.append(f"SQLite file: {disk['file_bytes_per_reading']} bytes per reading ({disk['note']})")
    if result["services_restarted"]:
        out.append(
            f"WARNING: {', '.join(result['services_restarted'])} restarted during the run; "
            "these figures are not to be trusted"
        )
    return "\n".join(out)
