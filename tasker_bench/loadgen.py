"""The ingest load generator: a process that posts reading batches as fast as the backend takes them.

    python -m tasker_bench.loadgen '<LoadSpec as JSON>'

prints one JSON object (what was accepted, status counts, POST latency) when done. Every
reading has its own (server, metric, ts), computed from its sequence number by `Layout`, so the
benchmark can tell afterwards, reading by reading, what was lost, duplicated or altered.

Batches are sent over keep-alive connections by `concurrency` workers, round-robin over the
ingest URLs. A batch answered 503 (or not answered) is sent again, as a sensor would, until the
run's grace period ends; one that is never accepted is reported and not expected in the store.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass

from tasker.domain import METRICS
from tasker_bench.machine import summary_ms

METRIC_NAMES = tuple(METRICS)
RETRY_STATUSES = {0, 502, 503, 504}
DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Layout:
    """Which reading carries sequence number `n` of generator `generator`.

    A series is one (server, metric). Readings come `run` consecutive seconds of one series at a
    time, series after series: `run` = 1 is fleet-wide per instant, as the emulator sends (every
    server's power and CO2 for one instant, then the next instant); `run` = 60 is a minute of
    each series in turn, as a sensor uploading a buffered minute would. Slot s of generator g is
    at ts = base_ms + s * step_ms + g, so keys never collide between generators (g < generators
    <= step_ms). Values are multiples of 1/4 below 1000, exact in Cassandra's 32-bit floats.
    """

    servers: int
    generators: int
    base_ms: int
    step_ms: int
    run: int = 1
    span_ms: int = DAY_MS

    @property
    def series(self) -> int:
        return self.servers * len(METRIC_NAMES)

    @property
    def max_readings(self) -> int:
        """Readings one generator can send before its timestamps reach base + span."""
        rounds = self.span_ms // self.step_ms // self.run
        return rounds * self.run * self.series

    def reading(self, generator: int, n: int) -> tuple[int, int, int, float]:
        """(server index, metric index, ts_ms, value) of reading n of a generator."""
        chunk, offset = divmod(n, self.run)
        rounds, series = divmod(chunk, self.series)
        server, metric = divmod(series, len(METRIC_NAMES))
        slot = rounds * self.run + offset
        return server, metric, self.base_ms + slot * self.step_ms + generator, self.value(generator, n)

    @staticmethod
    def value(generator: int, n: int) -> float:
        return ((n * 37 + generator * 11) % 4000) / 4

    def locate(self, server: int, metric: int, ts_ms: int) -> tuple[int, int] | None:
        """(generator, n) of the reading with this key, or None if no generator makes it."""
        slot, generator = divmod(ts_ms - self.base_ms, self.step_ms)
        if slot < 0 or generator >= self.generators:
            return None
        rounds, offset = divmod(slot, self.run)
        chunk = rounds * self.series + server * len(METRIC_NAMES) + metric
        return generator, chunk * self.run + offset


def choose_step_ms(servers: int, generators: int, duration_s: float, ceiling_per_s: int = 500_000) -> int:
    """The ts step between slots: 1 s (a 1 Hz fleet) unless a day of 1 s slots could run out at
    `ceiling_per_s` readings/s, then shorter; never below `generators` ms."""
    series = servers * len(METRIC_NAMES)
    slots_needed = max(1, int(ceiling_per_s * duration_s / series))
    return max(generators, min(1000, DAY_MS // slots_needed))


@dataclass
class LoadSpec:
    """What one generator process does."""

    urls: list[str]
    token: str
    servers: list[str]
    batch: int
    concurrency: int
    duration_s: float
    generator: int
    generators: int
    base_ms: int
    step_ms: int
    start_at: float  # epoch seconds: generators of one run start together
    run: int = 1  # consecutive readings of one series (see Layout)
    grace_s: float = 15.0  # after duration: time to finish and retry batches in flight

    @property
    def layout(self) -> Layout:
        return Layout(len(self.servers), self.generators, self.base_ms, self.step_ms, self.run)


class BatchMaker:
    """The body of batch k: readings k*batch .. (k+1)*batch-1 of this generator, as JSON text."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        self.layout = spec.layout
        # Server ids are URL-safe; json.dumps quotes them once here instead of per reading.
        self._prefix = [
            [f'{{"server_id":{json.dumps(s)},"metric":"{m}","ts":' for m in METRIC_NAMES] for s in spec.servers
        ]

    @property
    def max_batches(self) -> int:
        return self.layout.max_readings // self.spec.batch

    def body(self, k: int) -> bytes:
        g, size, reading, prefix = self.spec.generator, self.spec.batch, self.layout.reading, self._prefix
        parts = []
        for n in range(k * size, (k + 1) * size):
            server, metric, ts, value = reading(g, n)
            parts.append(f'{prefix[server][metric]}{ts},"value":{value!r}}}')
        return ('{"readings":[' + ",".join(parts) + "]}").encode()


async def run(spec: LoadSpec) -> dict[str, object]:
    """Post batches for `duration_s` from `start_at`; what was accepted and how it went."""
    import aiohttp

    maker = BatchMaker(spec)
    headers = {"Authorization": f"Bearer {spec.token}", "Content-Type": "application/json"}
    accepted: list[int] = []
    refused: list[int] = []
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    per_second: Counter[int] = Counter()
    next_batch = 0
    await asyncio.sleep(max(0.0, spec.start_at - time.time()))
    started = time.time()
    cpu_started = time.process_time()
    stop_at = started + spec.duration_s
    give_up_at = stop_at + spec.grace_s
    last_ack = started

    connector = aiohttp.TCPConnector(limit=spec.concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:

        async def post(url: str, body: bytes) -> int:
            began = time.perf_counter()
            try:
                async with http.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                status = 0
            latencies.append(time.perf_counter() - began)
            statuses[str(status)] += 1
            return status

        async def worker() -> None:
            nonlocal next_batch, last_ack
            while time.time() < stop_at and next_batch < maker.max_batches:
                k, next_batch = next_batch, next_batch + 1
                body = maker.body(k)
                url = spec.urls[k % len(spec.urls)] + "/api/v1/readings"
                while True:
                    status = await post(url, body)
                    if status == 202:
                        now = time.time()
                        accepted.append(k)
                        per_second[int(now - started)] += spec.batch
                        last_ack = max(last_ack, now)
                        break
                    if status in RETRY_STATUSES and time.time() < give_up_at:
                        await asyncio.sleep(0.2)
                        continue
                    refused.append(k)
                    break

        await asyncio.gather(*(worker() for _ in range(spec.concurrency)))

    return {
        "generator": spec.generator,
        "cpu_s": round(time.process_time() - cpu_started, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "wall_s": round(time.time() - started, 2),
        "started_at": started,
        "last_ack_at": last_ack,
        "accepted_batches": sorted(accepted),
        "refused_batches": sorted(refused),
        "readings_accepted": len(accepted) * spec.batch,
        "requests": sum(statuses.values()),
        "statuses": dict(statuses),
        "post_latency": summary_ms(latencies),
        "accepted_per_second": [per_second.get(i, 0) for i in range(int(spec.duration_s) + 1)],
        "ran_out_of_timestamps": next_batch >= maker.max_batches,
    }


def spec_json(spec: LoadSpec) -> str:
    return json.dumps(asdict(spec))


def main() -> None:
    spec = LoadSpec(**json.loads(sys.argv[1]))
    result = asyncio.run(run(spec))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
