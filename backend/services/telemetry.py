"""Counters, gauges and histograms of one backend process, rendered in Prometheus text format.

A dependency-free subset of the Prometheus client: enough for `/metrics` (readings accepted,
rejected and stored, dead-lettered messages, queue depth and lag, store latency).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Iterable

log = logging.getLogger(__name__)

LabelKey = tuple[tuple[str, str], ...]

# Seconds; from a fast SQLite write to a Cassandra write stalled by a retry.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(labels: dict[str, str]) -> LabelKey:
    return tuple(sorted(labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = key + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


def _format_value(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


class Counter:
    """A value that only goes up, per label set."""

    kind = "counter"

    def __init__(self, name: str, help_text: str) -> None:
        self.name = name
        self.help = help_text
        self._values: dict[LabelKey, float] = {}

    def inc(self, amount: float = 1.0, **labels: str) -> None:
        key = _labels(labels)
        self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: str) -> float:
        return self._values.get(_labels(labels), 0.0)

    def samples(self) -> Iterable[str]:
        for key, value in sorted(self._values.items()):
            yield f"{self.name}{_format_labels(key)} {_format_value(value)}"


class Gauge(Counter):
    """A value that goes up and down, per label set."""

    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        self._values[_labels(labels)] = value


class MirroredCounter(Gauge):
    """A counter kept elsewhere (e.g. by the broker adapter) whose total is copied in."""

    kind = "counter"


class Histogram:
    """Observations counted into cumulative buckets, with their sum and count."""

    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help_text
        self.buckets = buckets
        self._counts: dict[LabelKey, list[int]] = {}
        self._sums: dict[LabelKey, float] = {}

    def observe(self, value: float, **labels: str) -> None:
        key = _labels(labels)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self.buckets) + 1)
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self._sums[key] = self._sums.get(key, 0.0) + value

    def count(self, **labels: str) -> int:
        return sum(self._counts.get(_labels(labels), ()))

    def samples(self) -> Iterable[str]:
        for key, counts in sorted(self._counts.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts):
                running += n
                yield f"{self.name}_bucket{_format_labels(key, (('le', _format_value(bound)),))} {running}"
            yield f"{self.name}_sum{_format_labels(key)} {_format_value(self._sums[key])}"
            yield f"{self.name}_count{_format_labels(key)} {running}"


Collector = Callable[[], Awaitable[None]]


class Telemetry:
    """Every metric of one process. Services hold a reference and update the fields directly."""

    def __init__(self) -> None:
        self.readings_accepted = Counter(
            "tasker_readings_accepted_total", "Readings accepted by ingest (broker confirmed), by metric."
        )
        self.readings_rejected = Counter(
            "tasker_readings_rejected_total", "Readings named as invalid in rejected batches."
        )
        self.batches_rejected = Counter("tasker_batches_rejected_total", "Reading batches refused, by HTTP status.")
        self.readings_stored = Counter(
            "tasker_readings_stored_total", "Readings written to the time-series store by the packager, by metric."
        )
        self.readings_dead_lettered = Counter(
            "tasker_readings_dead_lettered_total",
            "Readings the time-series store refused, sent alone to the dead-letter queue, by metric.",
        )
        self.redelivered = Counter(
            "tasker_messages_redelivered_total",
            "Work messages received again after a consumer failed or died before acking them.",
        )
        self.dead_lettered = MirroredCounter(
            "tasker_messages_dead_lettered_total", "Broker messages this process dead-lettered as undecodable."
        )
        self.queue_depth = Gauge("tasker_queue_depth", "Messages waiting or unacked in a work queue.")
        self.queue_lag = Gauge(
            "tasker_queue_lag_seconds", "Time from publish to stored, of the last message stored, by metric."
        )
        self.store_latency = Histogram("tasker_store_write_seconds", "Duration of successful time-series writes.")
        self.store_failures = Counter(
            "tasker_store_write_failures_total", "Time-series writes that failed and were retried."
        )
        self.publish_latency = Histogram(
            "tasker_publish_seconds", "Time for the broker to confirm every message of an accepted batch."
        )
        self.dependency_up = Gauge(
            "tasker_dependency_up", "1 when the broker or store answered the last health check, else 0."
        )
        self.ws_connections = Gauge("tasker_ws_connections", "Open authenticated websocket connections.")
        self.live_dropped = Counter(
            "tasker_live_frames_dropped_total", "Live frames dropped because a websocket client read too slowly."
        )
        self.http_requests = Counter("tasker_http_requests_total", "HTTP responses, by route and status.")
        self._collectors: list[Collector] = []

    def add_collector(self, collector: Collector) -> None:
        """Register a coroutine that refreshes gauges (e.g. queue depth) before each scrape."""
        self._collectors.append(collector)

    def _metrics(self) -> list[Counter | Histogram]:
        return [m for m in vars(self).values() if isinstance(m, (Counter, Histogram))]

    async def render(self, timeout: float = 2.0) -> str:
        """Refresh the collected gauges (each bounded by `timeout`), then the exposition text."""

        async def run(collector: Collector) -> None:
            try:
                await asyncio.wait_for(collector(), timeout)
            except Exception as exc:  # noqa: BLE001 - a scrape still shows what is known
                log.debug("metrics collector failed: %r", exc)

        await asyncio.gather(*(run(c) for c in self._collectors))
        lines: list[str] = []
        for metric in self._metrics():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"
