"""What the TUI knows about the fleet right now: the registered servers and their recent readings.

The live stream writes into a `FleetState` as frames arrive (cheap appends to bounded deques);
screens read from it on their own refresh tick and draw only what is visible. Nothing here does
I/O or touches Textual, so a burst of frames never turns into a burst of redraws.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tasker.models import LatestReading, Location, ModelError, Server
from tasker_tui.format import as_value, is_number
from tasker_tui.table_query import parse_filter

# Keep this much live history per server and metric: enough for the fleet sparklines and for the
# 5-minute detail chart, bounded so 500 servers cannot grow memory without limit.
RECENT_SECONDS = 330
# Expected sensor interval until we have measured one.
DEFAULT_INTERVAL_S = 1.0
# A server is stale after this many missed intervals, and never sooner than STALE_MIN_S.
STALE_INTERVALS = 5
STALE_MIN_S = 5.0


@dataclass(slots=True)
class ServerSeries:
    """Recent readings of one server: (ts_ms, value) per metric, oldest first, bounded."""

    power: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT_SECONDS))
    co2: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT_SECONDS))
    last_ts_ms: int | None = None
    interval_s: float = DEFAULT_INTERVAL_S

    def latest(self, metric: str) -> float | None:
        samples = self.power if metric == "power" else self.co2
        return samples[-1][1] if samples else None

    def samples(self, metric: str) -> deque[tuple[int, float]]:
        return self.power if metric == "power" else self.co2

    def add(self, metric: str, ts_ms: int, value: float) -> None:
        if self.last_ts_ms is None or ts_ms > self.last_ts_ms:
            self.last_ts_ms = ts_ms
        samples = self.samples(metric)
        if samples and ts_ms <= samples[-1][0]:
            self._insert(samples, ts_ms, value)  # repeated or late: rare, keep the order
            return
        if metric == "power" and samples:
            gap_s = (ts_ms - samples[-1][0]) / 1000
            if 0 < gap_s < 120:
                # Smoothed sensor interval: staleness follows each sensor's own cadence.
                self.interval_s = 0.8 * self.interval_s + 0.2 * gap_s
        samples.append((ts_ms, value))

    @staticmethod
    def _insert(samples: deque[tuple[int, float]], ts_ms: int, value: float) -> None:
        for index in range(len(samples) - 1, -1, -1):
            if samples[index][0] == ts_ms:
                samples[index] = (ts_ms, value)  # the same reading delivered again
                return
            if samples[index][0] < ts_ms:
                if len(samples) == samples.maxlen:
                    samples.popleft()  # full: the oldest makes room (deque.insert would refuse)
                    index -= 1
                samples.insert(index + 1, (ts_ms, value))
                return
        if len(samples) < (samples.maxlen or 0):
            samples.appendleft((ts_ms, value))

    def merge_history(self, metric: str, samples: Iterable[tuple[int, float]]) -> None:
        """Fill the recent past from history (bucket averages); live readings win on equal ts."""
        current = self.samples(metric)
        merged = dict(samples)
        merged.update(current)
        ordered = sorted(merged.items())[-RECENT_SECONDS:]
        current.clear()
        current.extend(ordered)
        if ordered and (self.last_ts_ms is None or ordered[-1][0] > self.last_ts_ms):
            self.last_ts_ms = ordered[-1][0]

    def is_stale(self, now_ms: int) -> bool:
        if self.last_ts_ms is None:
            return True
        limit_s = max(STALE_MIN_S, STALE_INTERVALS * self.interval_s)
        return (now_ms - self.last_ts_ms) / 1000 > limit_s


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """Sums over the servers with a fresh reading; stale ones are counted apart."""

    watts: float
    co2_kg_per_h: float
    fresh: int
    stale: int


class FleetState:
    """Registered servers and their recent readings, as last heard from the backend."""

    def __init__(self) -> None:
        self.servers: dict[str, Server] = {}
        self.series: dict[str, ServerSeries] = {}
        # Bumped on every change, so a screen can skip a redraw when nothing moved.
        self.readings_version = 0
        self.registry_version = 0
        self.connected = False
        # Servers whose sparklines were filled from history since the last (re)connect.
        self.backfilled: set[str] = set()

    # --- writes (from the live stream and from HTTP loads) -------------------------------

    def set_fleet(self, servers: Iterable[Server], latest: Mapping[str, Mapping[str, LatestReading]]) -> None:
        """Replace the registry view with a fresh `GET /servers` answer (and its latest values)."""
        self.servers = {server.id: server for server in servers}
        self.backfilled.clear()  # what happened while away is refetched for what is on screen
        for server_id in list(self.series):
            if server_id not in self.servers:
                del self.series[server_id]
        for server_id in self.servers:
            series = self.series.setdefault(server_id, ServerSeries())
            for metric, point in (latest.get(server_id) or {}).items():
                if metric in ("power", "co2"):
                    series.add(metric, point.ts_ms, as_value(point.value))
        self.registry_version += 1
        self.readings_version += 1

    def apply_readings(self, readings: Iterable[Mapping[str, Any]]) -> int:
        """Add live readings; readings of unknown servers or metrics are ignored. Returns the count kept."""
        kept = 0
        for reading in readings:
            metric = reading.get("metric")
            if metric not in ("power", "co2"):
                continue
            series = self.series.get(reading.get("server_id", ""))
            if series is None:
                continue
            series.add(metric, int(reading["ts"]), as_value(reading.get("value")))
            kept += 1
        if kept:
            self.readings_version += 1
        return kept

    def apply_registry(self, event: str, server: Mapping[str, Any]) -> None:
        """Apply a registry event (`added`, `updated`, `removed`) from the websocket; its server
        JSON is parsed here, and one that does not parse is ignored."""
        if event == "removed":
            server_id = server.get("id")  # a removal may carry no more than the id
            if isinstance(server_id, str) and server_id:
                self.remove_server(server_id)
            return
        try:
            self.upsert_server(Server.from_json(server))
        except ModelError:
            return

    def upsert_server(self, server: Server) -> None:
        """Show a server added or changed (our own write, without waiting for the websocket)."""
        self.servers[server.id] = server
        self.series.setdefault(server.id, ServerSeries())
        self.registry_version += 1

    def remove_server(self, server_id: str) -> None:
        self.servers.pop(server_id, None)
        self.series.pop(server_id, None)
        self.registry_version += 1

    def apply_history(self, server_id: str, metric: str, points: Iterable[Sequence[float]]) -> None:
        """History buckets `[ts, min, avg, max]` of the recent past, for the sparklines."""
        series = self.series.get(server_id)
        if series is not None:
            series.merge_history(metric, [(int(p[0]), as_value(p[2])) for p in points])
            self.readings_version += 1

    # --- reads ----------------------------------------------------------------------------

    def is_stale(self, server_id: str, now_ms: int) -> bool:
        """True when the data shown for a server cannot be trusted as current."""
        if not self.connected:
            return True
        series = self.series.get(server_id)
        return series is None or series.is_stale(now_ms)

    def latest(self, server_id: str, metric: str) -> float | None:
        series = self.series.get(server_id)
        return series.latest(metric) if series else None

    def totals(self, now_ms: int, server_ids: Iterable[str] | None = None) -> FleetTotals:
        """Sums over `server_ids` (the whole fleet when None), e.g. the rows a filter shows."""
        watts = 0.0
        grams = 0.0
        fresh = stale = 0
        chosen = (
            self.series.items()
            if server_ids is None
            else [(sid, self.series[sid]) for sid in server_ids if sid in self.series]
        )
        for server_id, series in chosen:
            if not self.connected or series.is_stale(now_ms):
                stale += 1
                continue
            fresh += 1
            power, co2 = series.latest("power"), series.latest("co2")
            # A value that is not a number is left out; a sum beyond float range becomes inf,
            # which the totals line writes as n/a.
            watts += power if is_number(power) else 0.0
            grams += co2 if is_number(co2) else 0.0
        return FleetTotals(watts, grams / 1000.0, fresh, stale)

    def find_by_name(self, name: str) -> Server | None:
        wanted = name.casefold()
        for server in self.servers.values():
            if server.name.casefold() == wanted:
                return server
        return None

    def name_of(self, server_id: str) -> str:
        """The server's name, or its id when it is not (or no longer) registered."""
        server = self.servers.get(server_id)
        return server.name if server is not None else server_id


def placeholder(server_id: str) -> Server:
    """A stand-in for a server not (or no longer) in the registry: its id for its name."""
    return Server(server_id, server_id, Location(""), "")


FLEET_FIELDS = ("name", "region", "site", "source", "tag")
"""What the fleet's filter can name: `source:coal region:eu-*` (see `table_query`)."""


def filter_fields(server: Server) -> dict[str, list[str]]:
    """A server as the fleet's filter sees it."""
    return {
        "name": [server.name],
        "region": [server.location.region],
        "site": [server.location.site],
        "source": [server.energy_source],
        "tag": list(server.tags),
    }


def matches_filter(server: Server, query: str) -> bool:
    """True when the server matches every word of `query`, in any field or in the one named."""
    return parse_filter(query, FLEET_FIELDS).matches(filter_fields(server))
