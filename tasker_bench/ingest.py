"""`tasker bench ingest`: sustained ingest throughput, then an exact count of what was stored.

Load generator processes (`tasker_bench.loadgen`) post batches to the ingest processes for
`duration` seconds. Then the benchmark waits until the packagers report every accepted reading
written, and reads every series back through the raw readings API, reading by reading: lost
(accepted, not stored), duplicated (one key returned twice), altered (wrong value) and unexpected
(a key nobody posted) must all be 0. CPU is measured per process, services included.

`--naive` runs the same load against the naive design (`tasker_bench.naive`: one reading per
request, per message and per INSERT); `--compare` runs both and prints the ratio.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp

from tasker_bench import loadgen
from tasker_bench.loadgen import DAY_MS, METRIC_NAMES, Layout, LoadSpec
from tasker_bench.machine import CpuMeter, code_version, machine_info, restarted_services, service_pids
from tasker_bench.naive import NaiveSpec
from tasker_bench.naive import spec_json as naive_spec_json
from tasker_bench.report import CPU_HEADER, cpu_rows, table, verdict
from tasker_bench.stack import (
    REPO,
    BackendProcess,
    BenchError,
    Stack,
    check_services,
    drop_distributed_names,
    say,
    service_url,
    spawn_listening,
    stop_process,
    sum_metric,
)

TARGET_READINGS_PER_S = 50_000
TARGET_NAIVE_RATIO = 20.0
PAGE = 10_000
START_DELAY_S = 2.0  # lets the generator processes import before the clock starts


@dataclass
class IngestParams:
    """The knobs of one ingest run (the command-line options)."""

    mode: str = "embedded"
    duration_s: float = 60.0
    batch: int = 500
    concurrency: int = 16
    generators: int = 1
    servers: int = 500
    ingesters: int = 0
    packagers: int = 0
    drain_timeout_s: float = 600.0
    run: int = 1
    naive: bool = False
    compare: bool = False
    naive_prefetch: int = 64
    keep_logs: bool = False

    def check(self) -> None:
        if self.duration_s <= 0:
            raise BenchError("--duration must be more than 0 seconds")
        if not 1 <= self.batch <= 10_000:
            raise BenchError("--batch must be from 1 to 10000 (the backend refuses bigger batches)")
        if self.concurrency < 1 or self.generators < 1:
            raise BenchError("--concurrency and --generators must be at least 1")
        if not 1 <= self.servers <= 100_000:
            raise BenchError("--servers must be from 1 to 100000")
        if self.generators > 1000:
            raise BenchError("--generators must be at most 1000")
        if not 1 <= self.run <= 3600:
            raise BenchError("--consecutive must be from 1 to 3600")


class Target(Protocol):
    """What the load is aimed at: the Tasker backend or the naive pipeline."""

    name: str
    ingest_urls: list[str]
    read_url: str
    post_token: str
    read_token: str
    server_ids: list[str]

    def pids(self) -> dict[str, int]: ...

    def names(self) -> dict[str, str]: ...

    async def backend_metrics(self) -> dict[str, Any]: ...

    async def stored_total(self) -> int: ...

    async def close(self) -> None: ...


class TaskerTarget:
    """The real backend (`tasker backend` processes over this run's own names)."""

    name = "tasker"

    def __init__(self, stack: Stack, server_ids: list[str]) -> None:
        self.stack = stack
        self.server_ids = server_ids
        self.ingest_urls = stack.urls_of("ingest")
        self.read_url = stack.main.url
        self.post_token = stack.ingest_key
        self.read_token = stack.token

    @classmethod
    async def start(cls, params: IngestParams) -> TaskerTarget:
        stack = Stack(params.mode, params.ingesters, params.packagers)
        try:
            await stack.start()
            say(f"registering {params.servers} servers")
            ids = await stack.register_servers(params.servers)
        except BaseException:
            await stack.close(keep_logs=params.keep_logs)
            raise
        return cls(stack, ids)

    def pids(self) -> dict[str, int]:
        return self.stack.pids()

    def names(self) -> dict[str, str]:
        return self.stack.names()

    async def backend_metrics(self) -> dict[str, Any]:
        return await self.stack.backend_metrics()

    async def stored_total(self) -> int:
        return await self.stack.stored_total()

    async def close(self, keep_logs: bool = False) -> None:
        await self.stack.close(keep_logs)


class NaiveTarget:
    """The naive pipeline (`tasker_bench.naive`) in one process, over this run's own names."""

    name = "naive"

    def __init__(self, mode: str, process: BackendProcess, spec: NaiveSpec, workdir: Path, servers: int) -> None:
        self.mode = mode
        self.process = process
        self.spec = spec
        self.workdir = workdir
        self.ingest_urls = [process.url]
        self.read_url = process.url
        self.post_token = self.read_token = "naive"
        self.server_ids = [f"srv_naive{i:05d}" for i in range(servers)]

    @classmethod
    async def start(cls, params: IngestParams) -> NaiveTarget:
        from backend.adapters.cassandra import parse_url

        if params.mode == "distributed":
            await check_services()
        suffix = uuid.uuid4().hex[:10]
        workdir = Path(tempfile.mkdtemp(prefix="tasker-bench-naive-"))
        hosts, port, _ = parse_url(service_url("TASKER_TIMESERIES_URL"))
        spec = NaiveSpec(
            mode=params.mode,
            prefetch=params.naive_prefetch,
            sqlite_path=str(workdir / "naive.db"),
            amqp_url=service_url("TASKER_BROKER_URL"),
            queue_prefix=f"tasker-bench-{suffix}",
            cassandra_hosts=tuple(hosts),
            cassandra_port=port,
            keyspace=f"tasker_bench_{suffix}",
        )
        say(f"naive pipeline ({params.mode}): names tasker_bench_{suffix}")
        process = await spawn_listening(
            "naive",
            ("ingest", "packager"),
            [sys.executable, "-m", "tasker_bench.naive", naive_spec_json(spec)],
            dict(os.environ),
            workdir / "naive.log",
            what="the naive pipeline",
        )
        return cls(params.mode, process, spec, workdir, params.servers)

    def pids(self) -> dict[str, int]:
        return {"naive": self.process.pid}

    def names(self) -> dict[str, str]:
        if self.mode == "embedded":
            return {"folder": str(self.workdir)}
        return {"cassandra_keyspace": self.spec.keyspace, "rabbitmq_prefix": self.spec.queue_prefix}

    async def backend_metrics(self) -> dict[str, Any]:
        return {}

    async def stored_total(self) -> int:
        async with aiohttp.ClientSession() as http, http.get(self.process.url + "/metrics") as response:
            return int(sum_metric(await response.text(), "tasker_readings_stored_total"))

    async def close(self, keep_logs: bool = False) -> None:
        await stop_process(self.process)
        if self.mode == "distributed":
            await drop_distributed_names(
                self.spec.amqp_url, self.spec.queue_prefix, service_url("TASKER_TIMESERIES_URL"), self.spec.keyspace
            )
        if keep_logs:
            say(f"naive pipeline log kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


# --- the load -----------------------------------------------------------------------------------


async def _generate(
    target: Target, params: IngestParams, batch: int, layout: Layout, meter: CpuMeter
) -> list[dict[str, Any]]:
    start_at = time.time() + START_DELAY_S + 0.05 * params.generators
    processes = []
    for g in range(params.generators):
        spec = LoadSpec(
            urls=target.ingest_urls,
            token=target.post_token,
            servers=target.server_ids,
            batch=batch,
            concurrency=params.concurrency,
            duration_s=params.duration_s,
            generator=g,
            generators=params.generators,
            base_ms=layout.base_ms,
            step_ms=layout.step_ms,
            start_at=start_at,
            run=params.run,
        )
        processes.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tasker_bench.loadgen",
                loadgen.spec_json(spec),
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    await asyncio.sleep(max(0.0, start_at - time.time()))
    meter.start()
    say(
        f"{target.name}: {params.generators} generator(s) x {params.concurrency} connections posting "
        f"batches of {batch} for {params.duration_s:g} s"
    )
    results = []
    for process in processes:
        out, err = await process.communicate()
        if process.returncode != 0:
            raise BenchError(f"a load generator failed: {err.decode(errors='replace').strip()[-800:]}")
        results.append(json.loads(out))
    return results


async def _drain(target: Target, accepted: int, timeout_s: float) -> tuple[int, float, bool]:
    """Wait until the packagers report `accepted` readings written; (stored, when, drained)."""
    deadline = time.time() + timeout_s
    stored = 0
    while time.time() < deadline:
        stored = await target.stored_total()
        if stored >= accepted:
            return stored, time.time(), True
        await asyncio.sleep(0.25)
    return stored, time.time(), False


# --- counting what was stored ---------------------------------------------------------------------


@dataclass
class Tally:
    """What reading every series back found, against what the generators had accepted."""

    expected: int = 0
    found_rows: int = 0
    matched: int = 0
    duplicated: int = 0
    altered: int = 0
    unexpected: int = 0
    unacknowledged: int = 0  # stored from a batch whose 202 never came (allowed: at least once)

    @property
    def lost(self) -> int:
        return self.expected - self.matched


async def count_stored(target: Target, layout: Layout, batch: int, results: list[dict[str, Any]]) -> Tally:
    """Read every series through the raw readings API and check it reading by reading."""
    accepted = {r["generator"]: set(r["accepted_batches"]) for r in results}
    tally = Tally(expected=sum(r["readings_accepted"] for r in results))
    from_ms, to_ms = layout.base_ms, layout.base_ms + layout.span_ms + layout.step_ms
    headers = {"Authorization": f"Bearer {target.read_token}"}
    series = [(i, m) for i in range(len(target.server_ids)) for m in range(len(METRIC_NAMES))]
    todo = iter(series)

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as http:

        async def read_series(server: int, metric: int) -> None:
            url = f"{target.read_url}/api/v1/servers/{target.server_ids[server]}/readings"
            params = {"metric": METRIC_NAMES[metric], "from": str(from_ms), "to": str(to_ms), "limit": str(PAGE)}
            seen: set[int] = set()
            while True:
                async with http.get(url, params=params, headers=headers) as response:
                    if response.status != 200:
                        body = (await response.text())[:300]
                        raise BenchError(f"reading back {url}: HTTP {response.status}: {body}")
                    page = await response.json()
                for item in page["readings"]:
                    ts, value = item["ts"], item["value"]
                    tally.found_rows += 1
                    if ts in seen:
                        tally.duplicated += 1
                        continue
                    seen.add(ts)
                    where = layout.locate(server, metric, ts)
                    if where is None:
                        tally.unexpected += 1
                        continue
                    g, n = where
                    if n // batch not in accepted.get(g, ()):
                        tally.unacknowledged += 1
                        continue
                    tally.matched += 1
                    if value != layout.value(g, n):
                        tally.altered += 1
                if not page.get("next_cursor"):
                    return
                params["cursor"] = page["next_cursor"]

        async def reader() -> None:
            for server, metric in todo:
                await read_series(server, metric)

        await asyncio.gather(*(reader() for _ in range(4)))
    return tally


# --- one run against one target --------------------------------------------------------------------


async def measure(target: Target, params: IngestParams, batch: int) -> dict[str, Any]:
    """Load, drain, count: every figure of one target."""
    now_ms = int(time.time()) * 1000
    layout = Layout(
        len(target.server_ids),
        params.generators,
        now_ms - DAY_MS,
        loadgen.choose_step_ms(len(target.server_ids), params.generators, params.duration_s),
        params.run,
    )
    meter = CpuMeter()
    for name, pid in target.pids().items():
        meter.add(name, pid)
    if params.mode == "distributed":
        for name, pid in service_pids(REPO).items():
            meter.add(name, pid)
    load_average_before = machine_info()["load_average"]
    services_before = service_pids(REPO) if params.mode == "distributed" else {}

    results = await _generate(target, params, batch, layout, meter)
    load_cpu = meter.stop()
    for r in results:
        load_cpu["processes"][f"loadgen-{r['generator'] + 1}"] = {
            "cpu_s": r["cpu_s"],
            "percent_of_core": round(100 * r["cpu_s"] / max(r["wall_s"], 1e-9), 1),
            "peak_rss_mb": r.get("peak_rss_mb"),
        }
    started = min(r["started_at"] for r in results)
    last_ack = max(r["last_ack_at"] for r in results)
    accepted = sum(r["readings_accepted"] for r in results)
    stored_at_load_end = await target.stored_total()
    load_end = time.time()

    say(f"{target.name}: {accepted:,} readings accepted; waiting for the pipeline to drain")
    meter.start()
    stored_counter, drained_at, drained = await _drain(target, accepted, params.drain_timeout_s)
    drain_cpu = meter.stop()
    backend_metrics = await target.backend_metrics()
    say(f"{target.name}: reading every series back through the raw readings API")
    tally = await count_stored(target, layout, batch, results)

    statuses: dict[str, int] = {}
    for r in results:
        for status, n in r["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    load_window = max(last_ack - started, 1e-9)
    return {
        "target": target.name,
        "batch": batch,
        "servers": len(target.server_ids),
        "processes": {name: pid for name, pid in target.pids().items()},
        "names": target.names(),
        "readings_accepted": accepted,
        "accepted_per_s": round(accepted / load_window),
        "stored_per_s": round(tally.matched / max(drained_at - started, 1e-9)) if drained else None,
        "stored_per_s_during_load": round(min(stored_at_load_end, accepted) / max(load_end - started, 1e-9)),
        "backlog_at_load_end": max(0, accepted - stored_at_load_end),
        "drain_s": round(drained_at - load_end, 2),
        "drained": drained,
        "lost": tally.lost,
        "duplicated": tally.duplicated,
        "altered": tally.altered,
        "unexpected": tally.unexpected,
        "stored_unacknowledged": tally.unacknowledged,
        "rows_read_back": tally.found_rows,
        "packager_writes_counted": stored_counter,
        "requests": sum(r["requests"] for r in results),
        "statuses": statuses,
        "batches_never_accepted": sum(len(r["refused_batches"]) for r in results),
        "post_latency_ms": _merge_latency([r["post_latency"] for r in results]),
        "accepted_per_second": [sum(col) for col in zip(*(r["accepted_per_second"] for r in results))],
        "ran_out_of_timestamps": any(r["ran_out_of_timestamps"] for r in results),
        "backend_metrics": backend_metrics,
        "cpu_during_load": load_cpu,
        "cpu_during_drain": drain_cpu,
        "load_average_before": load_average_before,
        "load_average_after": machine_info()["load_average"],
        "services_restarted": restarted_services(services_before, service_pids(REPO)),
        "layout": {"base_ms": layout.base_ms, "step_ms": layout.step_ms},
    }


def _merge_latency(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """POST latency over generators: the worst p50/p99/max (exact merging needs the samples)."""
    keys = ("p50_ms", "p99_ms", "max_ms")
    merged: dict[str, Any] = {"count": sum(p["count"] for p in parts)}
    for key in keys:
        values = [p[key] for p in parts if p[key] is not None]
        merged[key] = max(values) if values else None
    return merged


async def _run_target(kind: str, params: IngestParams) -> dict[str, Any]:
    target: TaskerTarget | NaiveTarget
    if kind == "tasker":
        target = await TaskerTarget.start(params)
        batch = params.batch
    else:
        target = await NaiveTarget.start(params)
        batch = 1  # the naive design: one reading per request
    try:
        return await measure(target, params, batch)
    finally:
        await target.close(params.keep_logs)


async def run_ingest(params: IngestParams) -> dict[str, Any]:
    """The whole benchmark: the JSON object `--json` prints."""
    params.check()
    kinds = (["tasker"] if not params.naive or params.compare else []) + (
        ["naive"] if params.naive or params.compare else []
    )
    result: dict[str, Any] = {
        "benchmark": "ingest",
        "parameters": asdict(params),
        "machine": machine_info(),
        "code": code_version(REPO),
        "targets": {"readings_per_s": TARGET_READINGS_PER_S, "vs_naive": TARGET_NAIVE_RATIO},
    }
    for kind in kinds:
        result[kind] = await _run_target(kind, params)
    if "tasker" in result and "naive" in result:
        ours, theirs = result["tasker"]["stored_per_s"], result["naive"]["stored_per_s"]
        result["ratio_stored_per_s"] = round(ours / theirs, 1) if ours and theirs else None
        ours, theirs = result["tasker"]["accepted_per_s"], result["naive"]["accepted_per_s"]
        result["ratio_accepted_per_s"] = round(ours / theirs, 1) if ours and theirs else None
    return result


def correct(result: dict[str, Any]) -> bool:
    """Nothing lost, duplicated, altered or unexpected in any target, and every pipeline drained."""
    return all(
        result[k]["drained"] and not any(result[k][f] for f in ("lost", "duplicated", "altered", "unexpected"))
        for k in ("tasker", "naive")
        if k in result
    )


def render(result: dict[str, Any]) -> str:
    """The human-readable tables of an ingest result."""
    p = result["parameters"]
    kinds = [k for k in ("tasker", "naive") if k in result]
    layout = "fleet-wide per instant" if p["run"] == 1 else f"{p['run']} s of one series at a time"
    head = (
        f"tasker bench ingest: {p['mode']} mode, {p['duration_s']:g} s, {p['servers']} servers, readings "
        f"{layout}, {p['generators']} generator(s) x {p['concurrency']} connections; machine: "
        f"{result['machine']['cores']} cores, load average {result['machine']['load_average']}"
    )
    rows: list[list[Any]] = []
    figures = [
        ("batch (readings per POST)", "batch"),
        ("readings accepted", "readings_accepted"),
        ("accepted readings/s", "accepted_per_s"),
        ("stored readings/s (end to end)", "stored_per_s"),
        ("stored readings/s during load", "stored_per_s_during_load"),
        ("backlog when load stopped", "backlog_at_load_end"),
        ("drain time (s)", "drain_s"),
        ("lost", "lost"),
        ("duplicated", "duplicated"),
        ("altered value", "altered"),
        ("unexpected", "unexpected"),
        ("stored, never acknowledged", "stored_unacknowledged"),
        ("batches never accepted", "batches_never_accepted"),
    ]
    for label, key in figures:
        rows.append([label, *(result[k][key] for k in kinds)])
    for q in ("p50_ms", "p99_ms"):
        rows.append([f"POST latency {q[:3]} (ms)", *(result[k]["post_latency_ms"][q] for k in kinds)])
    for label, part in (("broker confirm per batch", "publish_confirm"), ("store write", "store_write")):
        rows.append(
            [f"{label}, mean (ms)", *(result[k]["backend_metrics"].get(part, {}).get("mean_ms") for k in kinds)]
        )
    rows.append(["store writes", *(result[k]["backend_metrics"].get("store_write", {}).get("count") for k in kinds)])
    out = [head, "", table(["figure", *kinds], rows)]
    if "ratio_stored_per_s" in result:
        ratio = result["ratio_stored_per_s"]
        out.append(
            f"\ntasker / naive, stored readings/s: {ratio}x "
            f"(target >= {TARGET_NAIVE_RATIO:g}x: {verdict(ratio, TARGET_NAIVE_RATIO, True)})"
        )
    if "tasker" in result:
        rate = result["tasker"]["stored_per_s"]
        out.append(
            f"tasker stored readings/s: {rate} (target >= {TARGET_READINGS_PER_S:,}: "
            f"{verdict(rate, TARGET_READINGS_PER_S, True)})"
        )
    for k in kinds:
        out.append("")
        out.append(
            table(
                CPU_HEADER,
                cpu_rows(result[k]["cpu_during_load"]),
                title=f"{k}: CPU during the load ({result[k]['cpu_during_load']['wall_s']} s, "
                f"machine busy {result[k]['cpu_during_load']['machine_busy_percent']}%)",
            )
        )
    for k in kinds:
        if result[k]["services_restarted"]:
            out.append(
                f"\nWARNING ({k}): {', '.join(result[k]['services_restarted'])} restarted during the run "
                "(another user of this machine?); these figures are not to be trusted"
            )
    out.append("")
    out.append("correct (nothing lost, duplicated, altered or unexpected): " + ("yes" if correct(result) else "NO"))
    return "\n".join(out)
