"""The CO2 a task really emitted, from its server's power readings over its runs.

At each instant of a run the task is given its share of the server's power above idle:

    share = task cores / max(cores of the Tasker tasks running there then, cores the power shows busy)

where the busy cores are (power - idle) / (max - idle) x the server's cores (the allocator's
linear utilisation model). Dividing by the Tasker tasks alone would charge a task for load
that is not Tasker's (a busy web server); the max keeps that load out, and when the tasks use
less than their cores, the task is charged what was drawn, not what was reserved. Its watts,
integrated over the run, times the server's PUE and the intensity at each instant (the same
`CarbonIntensity` the planner uses), give grams CO2e.

Pure functions over plain values; `backend.services.task_meter` feeds them from the stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.allocation.intensity import CarbonIntensity
from backend.allocation.model import ServerSpec

MS_PER_KWH_AT_1W = 3_600_000_000


@dataclass(frozen=True, slots=True)
class PowerSample:
    """Mean power (W) of a server over [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    watts: float


@dataclass(frozen=True, slots=True)
class Measured:
    energy_kwh: float
    co2_g: float
    coverage: float
    """Share of the run time that readings covered (gaps count as the covered mean)."""


def _cores_at(others: Sequence[tuple[int, Sequence[Sequence[int]]]], ts_ms: int) -> int:
    return sum(cores for cores, runs in others if any(a <= ts_ms < b for a, b in runs))


def measure(
    cores: int,
    runs: Sequence[Sequence[int]],
    others: Sequence[tuple[int, Sequence[Sequence[int]]]],
    samples: Sequence[PowerSample],
    server: ServerSpec,
    intensity: CarbonIntensity,
) -> Measured | None:
    """Energy and CO2 attributed to a task of `cores` over `runs` ([start, end) ms), beside
    `others` ((cores, runs) of the other tasks on the server); None without any reading."""
    span = max(0.0, server.max_watts - server.idle_watts)
    total_ms = sum(max(0, b - a) for a, b in runs)
    kwh = grams = 0.0
    covered = 0
    for a, b in runs:
        for sample in samples:
            lo, hi = max(a, sample.start_ms), min(b, sample.end_ms)
            if hi <= lo:
                continue
            mid = (lo + hi) // 2
            excess = max(0.0, sample.watts - server.idle_watts)
            busy = excess / span * server.cores if span > 0 else 0.0
            share = cores / max(cores + _cores_at(others, mid), busy, 1e-9)
            part_kwh = excess * min(1.0, share) * (hi - lo) / MS_PER_KWH_AT_1W
            kwh += part_kwh
            grams += part_kwh * server.pue * intensity.at(server, mid)
            covered += hi - lo
    if covered == 0 or total_ms == 0:
        return None
    scale = total_ms / covered
    return Measured(kwh * scale, grams * scale, covered / total_ms)
