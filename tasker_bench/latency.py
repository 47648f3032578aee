"""`tasker bench latency`: time from POST to the reading's arrival on a websocket subscription.

A fleet of `servers` reports at a steady `rate` readings/s (power and CO2 of every server once per
cycle, as the emulator does, in batches of `batch` spread evenly over the cycle). One websocket
client subscribes to every server; each reading's latency is the time from just before its
batch's POST until the frame carrying it is decoded. Everything runs on this machine's one
clock (time.monotonic in this process).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any

import aiohttp

from tasker_bench.loadgen import METRIC_NAMES
from tasker_bench.machine import (
    CpuMeter,
    code_version,
    machine_info,
    restarted_services,
    service_pids,
    summary_ms,
)
from tasker_bench.report import CPU_HEADER, cpu_rows, table, verdict
from tasker_bench.stack import REPO, BenchError, Stack, say

TARGET_P99_MS = 250.0
STRAGGLER_WAIT_S = 10.0


@dataclass
class LatencyParams:
    mode: str = "embedded"
    rate: float = 1000.0
    duration_s: float = 30.0
    servers: int = 500
    batch: int = 100
    ingesters: int = 0
    packagers: int = 0
    keep_logs: bool = False

    def check(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0:
            raise BenchError("--rate and --duration must be more than 0")
        if not 1 <= self.batch <= 10_000:
            raise BenchError("--batch must be from 1 to 10000")
        if self.servers < 1:
            raise BenchError("--servers must be at least 1")
        cycle_ms = len(METRIC_NAMES) * self.servers * 1000 / self.rate
        if cycle_ms < 1:
            raise BenchError(
                f"--rate {self.rate:g} with {self.servers} servers gives each server "
                "more than one reading per millisecond; lower the rate or add servers"
            )


class LiveProbe:
    """Posts the paced load and matches what the websocket delivers against it."""

    def __init__(self, params: LatencyParams, server_ids: list[str]) -> None:
        self.params = params
        self.server_ids = server_ids
        self.per_cycle = len(server_ids) * len(METRIC_NAMES)
        self.cycle_ms = self.per_cycle * 1000 / params.rate
        self.sent_at: dict[tuple[str, str, int], float] = {}
        self.latencies: list[float] = []
        self.post_latencies: list[float] = []
        self.failed_posts = 0
        self.posted = 0
        self.unexpected = 0

    def batch(self, j: int, t0_ms: int) -> list[dict[str, Any]]:
        size = self.params.batch
        out = []
        for n in range(j * size, (j + 1) * size):
            cycle, rest = divmod(n, self.per_cycle)
            server, metric = divmod(rest, len(METRIC_NAMES))
            out.append(
                {
                    "server_id": self.server_ids[server],
                    "metric": METRIC_NAMES[metric],
                    "ts": t0_ms + int(cycle * self.cycle_ms),
                    "value": float(100 + n % 400),
                }
            )
        return out

    async def receive(self, live: Any) -> None:
        async for frame in live:
            if frame.get("type") != "readings":
                continue
            now = time.monotonic()
            for r in frame.get("readings", ()):
                sent = self.sent_at.pop((r["server_id"], r["metric"], r["ts"]), None)
                if sent is None:
                    self.unexpected += 1
                else:
                    self.latencies.append(now - sent)

    async def post_all(self, http: aiohttp.ClientSession, url: str, key: str) -> None:
        """Post batch after batch on a fixed schedule (never waiting for earlier answers)."""
        interval = self.params.batch / self.params.rate
        count = int(self.params.duration_s / interval)
        t0_ms = int(time.time() * 1000)
        start = time.monotonic()
        headers = {"Authorization": f"Bearer {key}"}
        tasks = set()

        async def post(readings: list[dict[str, Any]]) -> None:
            body = json.dumps({"readings": readings}).encode()
            began = time.monotonic()
            for r in readings:
                self.sent_at[(r["server_id"], r["metric"], r["ts"])] = began
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    ok = response.status == 202
            except (aiohttp.ClientError, asyncio.TimeoutError):
                ok = False
            if ok:
                self.post_latencies.append(time.monotonic() - began)
                self.posted += len(readings)
            else:
                self.failed_posts += 1
                for r in readings:
                    self.sent_at.pop((r["server_id"], r["metric"], r["ts"]), None)

        for j in range(count):
            await asyncio.sleep(max(0.0, start + j * interval - time.monotonic()))
            task = asyncio.create_task(post(self.batch(j, t0_ms)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)


async def run_latency(params: LatencyParams) -> dict[str, Any]:
    """The whole benchmark: the JSON object `--json` prints."""
    from tasker.client import TaskerClient

    params.check()
    stack = Stack(params.mode, params.ingesters, params.packagers)
    services_before = service_pids(REPO) if params.mode == "distributed" else {}
    try:
        await stack.start()
        say(f"registering {params.servers} servers")
        ids = await stack.register_servers(params.servers)
        probe = LiveProbe(params, ids)
        meter = CpuMeter(dict(stack.pids()))
        if params.mode == "distributed":
            for name, pid in service_pids(REPO).items():
                meter.add(name, pid)
        load_before = machine_info()["load_average"]
        async with TaskerClient(stack.main.url, token=stack.token) as client, client.live() as live:
            await live.subscribe("*", list(METRIC_NAMES))
            await live.ping()
            async for frame in live:  # the pong: the subscription is in force
                if frame.get("type") == "pong":
                    break
            receiver = asyncio.create_task(probe.receive(live))
            say(f"posting {params.rate:g} readings/s for {params.duration_s:g} s, batches of {params.batch}")
            meter.start()
            async with aiohttp.ClientSession() as http:
                await probe.post_all(http, stack.urls_of("ingest")[0] + "/api/v1/readings", stack.ingest_key)
            cpu = meter.stop()
            deadline = time.monotonic() + STRAGGLER_WAIT_S
            while probe.sent_at and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            receiver.cancel()
            await asyncio.gather(receiver, return_exceptions=True)
    finally:
        await stack.close(params.keep_logs)
    return {
        "benchmark": "latency",
        "parameters": asdict(params),
        "machine": machine_info(),
        "code": code_version(REPO),
        "targets": {"p99_ms": TARGET_P99_MS},
        "processes": stack.pids(),
        "names": stack.names(),
        "readings_posted": probe.posted,
        "readings_received": len(probe.latencies),
        "missing_on_websocket": len(probe.sent_at),
        "unexpected_on_websocket": probe.unexpected,
        "failed_posts": probe.failed_posts,
        "post_to_websocket": summary_ms(probe.latencies),
        "post_to_202": summary_ms(probe.post_latencies),
        "cpu": cpu,
        "load_average_before": load_before,
        "services_restarted": restarted_services(services_before, service_pids(REPO)),
    }


def render(result: dict[str, Any]) -> str:
    p = result["parameters"]
    ws, ack = result["post_to_websocket"], result["post_to_202"]
    head = (
        f"tasker bench latency: {p['mode']} mode, {p['rate']:g} readings/s for {p['duration_s']:g} s, "
        f"{p['servers']} servers, batches of {p['batch']}; machine: {result['machine']['cores']} cores, "
        f"load average {result['load_average_before']}"
    )
    rows = [
        ["POST -> websocket", ws["count"], ws["p50_ms"], ws["p99_ms"], ws["max_ms"]],
        ["POST -> 202", ack["count"], ack["p50_ms"], ack["p99_ms"], ack["max_ms"]],
    ]
    out = [head, "", table(["latency", "samples", "p50 ms", "p99 ms", "max ms"], rows), ""]
    out.append(
        f"readings posted {result['readings_posted']:,}, received {result['readings_received']:,}, "
        f"missing {result['missing_on_websocket']:,}, failed POSTs {result['failed_posts']}"
    )
    out.append(
        f"p99 POST -> websocket: {ws['p99_ms']} ms (target <= {TARGET_P99_MS:g} ms: "
        f"{verdict(ws['p99_ms'], TARGET_P99_MS, False)})"
    )
    if result["services_restarted"]:
        out.append(
            f"WARNING: {', '.join(result['services_restarted'])} restarted during the run; "
            "these figures are not to be trusted"
        )
    out.append("")
    out.append(
        table(
            CPU_HEADER,
            cpu_rows(result["cpu"]),
            title=f"CPU during the load (machine busy {result['cpu']['machine_busy_percent']}%)",
        )
    )
    return "\n".join(out)
