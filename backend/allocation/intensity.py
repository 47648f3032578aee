"""Carbon intensity (g CO2e per kWh) a server draws at a given time: the planner's port.

Two adapters:
- `BuiltinIntensity`: the server's own figure, with its region's daily grid profile for
  `grid-mix` servers (`tasker.grid`, the same function the emulated sensors use);
- `TraceIntensity`: loaded traces (`tasker grid import FILE`), for grid-mix servers in a region
  the trace covers; dedicated sources (wind, coal...) keep their own figure, and instants outside
  a trace's span fall back to the built-in model.

Planning evaluates one value per server per slot (at the slot's start) through `series`, which
both adapters compute per region once per horizon and cache: the full 48 h horizon of 500
servers costs a few milliseconds, not 288,000 calls.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import numpy as np

from backend.allocation.model import ServerSpec
from backend.allocation.trace_csv import TraceRow, parse_trace_csv
from tasker.grid import grid_factor

__all__ = ["BuiltinIntensity", "CarbonIntensity", "TraceIntensity", "TraceRow", "parse_trace_csv"]

GRID_MIX = "grid-mix"


@runtime_checkable
class CarbonIntensity(Protocol):
    """Where the planner gets g/kWh from. `at` is the truth; `series` must equal `at` at each
    slot start (an adapter only makes it faster)."""

    def at(self, server: ServerSpec, ts_ms: int) -> float:
        """Intensity (g/kWh) of the electricity `server` draws at `ts_ms`."""
        ...

    def series(self, server: ServerSpec, start_ms: int, slot_s: int, n: int) -> np.ndarray:
        """Intensity at the start of each of `n` slots of `slot_s` seconds from `start_ms`."""
        ...


class PointwiseIntensity:
    """Base for adapters: `series` from `at`, one call per slot (override to go faster)."""

    def at(self, server: ServerSpec, ts_ms: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def series(self, server: ServerSpec, start_ms: int, slot_s: int, n: int) -> np.ndarray:
        """Intensity at each slot start, one `at` call per slot."""
        step = slot_s * 1000
        return np.fromiter((self.at(server, start_ms + k * step) for k in range(n)), float, n)


class BuiltinIntensity(PointwiseIntensity):
    """The server's own figure; for grid-mix servers its region's daily profile around it."""

    def __init__(self) -> None:
        self._factors: dict[tuple[str, int, int, int], np.ndarray] = {}

    def at(self, server: ServerSpec, ts_ms: int) -> float:
        """Intensity at `ts_ms`: constant for a dedicated source, the daily profile for grid-mix."""
        if server.energy_source != GRID_MIX:
            return server.intensity_g_per_kwh
        return server.intensity_g_per_kwh * grid_factor(server.region, ts_ms)

    def series(self, server: ServerSpec, start_ms: int, slot_s: int, n: int) -> np.ndarray:
        """Per-slot intensity; the profile's shape is computed once per region and horizon."""
        if server.energy_source != GRID_MIX:
            return np.full(n, server.intensity_g_per_kwh)
        return server.intensity_g_per_kwh * self._region_factors(server.region, start_ms, slot_s, n)

    def _region_factors(self, region: str, start_ms: int, slot_s: int, n: int) -> np.ndarray:
        key = (region, start_ms, slot_s, n)
        factors = self._factors.get(key)
        if factors is None:
            if len(self._factors) > 256:  # horizons move on; old ones are never asked again
                self._factors.clear()
            step = slot_s * 1000
            factors = np.fromiter((grid_factor(region, start_ms + k * step) for k in range(n)), float, n)
            self._factors[key] = factors
        return factors


class TraceIntensity(PointwiseIntensity):
    """Loaded traces per region: a step function (each row holds until the next row).

    The last row of a region holds for as long as the gap before it (one hour for a trace of a
    single row); outside that span, and for regions without a trace, the built-in model answers.
    """

    def __init__(self, rows: Iterable[TraceRow], fallback: BuiltinIntensity | None = None) -> None:
        self._fallback = fallback or BuiltinIntensity()
        by_region: dict[str, dict[int, float]] = {}
        for row in rows:
            by_region.setdefault(row.region, {})[row.ts_ms] = row.g_per_kwh  # a later row wins
        self._ts: dict[str, list[int]] = {}
        self._values: dict[str, np.ndarray] = {}
        self._end: dict[str, int] = {}
        for region, points in by_region.items():
            ts = sorted(points)
            last_step = ts[-1] - ts[-2] if len(ts) > 1 else 3_600_000
            self._ts[region] = ts
            self._values[region] = np.array([points[t] for t in ts])
            self._end[region] = ts[-1] + last_step

    def regions(self) -> frozenset[str]:
        """Regions this trace covers."""
        return frozenset(self._ts)

    def at(self, server: ServerSpec, ts_ms: int) -> float:
        """The trace value in force at `ts_ms`, or the built-in model where the trace says nothing."""
        ts = self._ts.get(server.region)
        if server.energy_source != GRID_MIX or ts is None or not ts[0] <= ts_ms < self._end[server.region]:
            return self._fallback.at(server, ts_ms)
        return float(self._values[server.region][bisect.bisect_right(ts, ts_ms) - 1])

    def series(self, server: ServerSpec, start_ms: int, slot_s: int, n: int) -> np.ndarray:
        """Per-slot values: the trace where it covers the slot start, the built-in model elsewhere."""
        out = self._fallback.series(server, start_ms, slot_s, n)
        ts = self._ts.get(server.region)
        if server.energy_source != GRID_MIX or ts is None:
            return out
        starts = start_ms + np.arange(n, dtype=np.int64) * (slot_s * 1000)
        inside = (starts >= ts[0]) & (starts < self._end[server.region])
        idx = np.searchsorted(np.asarray(ts, dtype=np.int64), starts[inside], side="right") - 1
        out = out.copy()
        out[inside] = self._values[server.region][idx]
        return out
