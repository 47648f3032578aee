"""The emulation model: believable power and CO2 of a server over time. Pure and seeded.

Each server gets a personality drawn from `(seed, server id)`, so the same seed reproduces the
same fleet behaviour whatever else is registered, and two servers never move in lockstep:

    utilisation = base + daily rhythm + drift + noise + spike, clipped to 0..1
    power_W     = idle_watts + (max_watts - idle_watts) * utilisation
    co2_g_per_h = power_W / 1000 * PUE * intensity(t)      (tasker.domain.co2_g_per_h)

- daily rhythm: a cosine peaking in the region's afternoon (busy hours), amplitude per server;
- drift: an Ornstein-Uhlenbeck process (slow wander that returns to the base, tau ~ 30 min);
- noise: per-sample jitter of a few percent;
- spikes: occasional load bursts (a Poisson process, minutes apart) lasting seconds to minutes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tasker.domain import DEFAULT_PUE, co2_g_per_h, default_carbon_intensity
from tasker.grid import intensity_at, local_hour
from tasker.models import Server

_TWO_PI = 2 * math.pi
_MS_PER_HOUR = 3_600_000.0


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """What the model needs of a registered server (from its API JSON)."""

    id: str
    idle_watts: float
    max_watts: float
    pue: float
    carbon_intensity_g_per_kwh: float
    energy_source: str
    region: str
    cores: int = 0

    @classmethod
    def of(cls, server: Server) -> ServerSpec:
        """The spec of a registered server; missing optional figures get defaults."""
        return cls._with_defaults(
            server.id,
            server.location.region,
            server.energy_source,
            server.carbon_intensity_g_per_kwh,
            server.idle_watts,
            server.max_watts,
            server.pue,
            server.cores,
        )

    @classmethod
    def from_json(cls, server: Mapping[str, Any]) -> ServerSpec:
        """Build from a server's API JSON, as leniently as `of` (for callers holding raw JSON)."""
        location = server.get("location") or {}
        region = str(location.get("region", "") if isinstance(location, Mapping) else "")
        return cls._with_defaults(
            str(server["id"]),
            region,
            str(server.get("energy_source", "grid-mix")),
            server.get("carbon_intensity_g_per_kwh"),
            server.get("idle_watts"),
            server.get("max_watts"),
            server.get("pue"),
            server.get("cores"),
        )

    @classmethod
    def _with_defaults(
        cls, server_id: str, region: str, source: str, intensity: Any, idle: Any, top: Any, pue: Any, cores: Any
    ) -> ServerSpec:
        if intensity is None:
            try:
                intensity = default_carbon_intensity(source, region)[0]
            except KeyError:
                intensity = 0.0
        idle_w = float(idle or 0.0)
        return cls(
            id=server_id,
            idle_watts=idle_w,
            max_watts=max(idle_w, float(top or idle_w)),
            pue=float(pue or DEFAULT_PUE),
            carbon_intensity_g_per_kwh=float(intensity),
            energy_source=source,
            region=region,
            cores=int(cores or 0),
        )

    def intensity_at(self, ts_ms: int) -> float:
        """The carbon intensity this server draws at `ts_ms` (varies through the day for grid-mix)."""
        return intensity_at(self.energy_source, self.region, self.carbon_intensity_g_per_kwh, ts_ms)

    def co2_for(self, power_w: float, ts_ms: int) -> float:
        """Emission rate (g/h) of this server drawing `power_w` at `ts_ms`."""
        return co2_g_per_h(power_w, self.pue, self.intensity_at(ts_ms))


class ServerModel:
    """One server's utilisation process. `sample(ts_ms, dt_s)` advances it by `dt_s` seconds."""

    __slots__ = (
        "spec",
        "_rng",
        "_gauss",
        "base",
        "daily_amplitude",
        "peak_hour",
        "noise",
        "drift_sigma",
        "drift_tau_s",
        "spike_every_s",
        "_drift",
        "_spike_left_s",
        "_spike_height",
    )

    def __init__(self, spec: ServerSpec, seed: int | str):
        self.spec = spec
        self._rng = random.Random(f"{seed}:{spec.id}")
        self._gauss = self._rng.gauss
        rng = self._rng
        # The personality: how busy, how rhythmic, how jittery, how spiky this server is.
        self.base = rng.uniform(0.15, 0.55)
        self.daily_amplitude = rng.uniform(0.05, 0.25)
        self.peak_hour = rng.uniform(13.0, 17.0)
        self.noise = rng.uniform(0.01, 0.04)
        self.drift_sigma = rng.uniform(0.03, 0.10)
        self.drift_tau_s = rng.uniform(15 * 60, 45 * 60)
        self.spike_every_s = rng.uniform(5 * 60, 30 * 60)
        self._drift = self._gauss(0.0, self.drift_sigma)
        self._spike_left_s = 0.0
        self._spike_height = 0.0

    def utilisation(self, ts_ms: int, dt_s: float) -> float:
        """Utilisation (0..1) at `ts_ms`, `dt_s` seconds after the previous sample."""
        gauss = self._gauss
        hour = local_hour(self.spec.region, ts_ms)
        daily = self.daily_amplitude * math.cos(_TWO_PI * (hour - self.peak_hour) / 24.0)
        # Exact OU update for any step size, so the model does not depend on the interval.
        decay = math.exp(-dt_s / self.drift_tau_s)
        self._drift = self._drift * decay + self.drift_sigma * math.sqrt(1.0 - decay * decay) * gauss(0.0, 1.0)
        if self._spike_left_s > 0.0:
            self._spike_left_s -= dt_s
        elif self._rng.random() < dt_s / self.spike_every_s:
            self._spike_left_s = self._rng.uniform(10.0, 180.0)
            self._spike_height = self._rng.uniform(0.2, 0.6)
        spike = self._spike_height if self._spike_left_s > 0.0 else 0.0
        u = self.base + daily + self._drift + gauss(0.0, self.noise) + spike
        return 0.0 if u < 0.0 else 1.0 if u > 1.0 else u

    def sample(self, ts_ms: int, dt_s: float, task_cores: int = 0) -> tuple[float, float]:
        """(power W, co2 g/h) at `ts_ms`, with `task_cores` busy with emulated tasks on top of the
        server's own load; power stays within idle_watts..max_watts."""
        spec = self.spec
        u = self.utilisation(ts_ms, dt_s)
        if task_cores and spec.cores > 0:
            u = min(1.0, u + task_cores / spec.cores)
        power = spec.idle_watts + (spec.max_watts - spec.idle_watts) * u
        return power, spec.co2_for(power, ts_ms)


class FleetModel:
    """The models of every server being emulated; follows the registry via `sync`."""

    def __init__(self, seed: int | str = 0):
        self.seed = seed
        self.models: dict[str, ServerModel] = {}

    def sync(self, specs: Mapping[str, ServerSpec]) -> tuple[list[str], list[str]]:
        """Make the fleet match `specs` (by id); returns (added ids, removed ids).

        A server whose spec changed keeps its utilisation process but uses the new figures.
        """
        added = [sid for sid in specs if sid not in self.models]
        removed = [sid for sid in self.models if sid not in specs]
        for sid in removed:
            del self.models[sid]
        for sid, spec in specs.items():
            model = self.models.get(sid)
            if model is None:
                self.models[sid] = ServerModel(spec, self.seed)
            elif model.spec != spec:
                model.spec = spec
        return added, removed

    def tick(
        self,
        ts_ms: int,
        dt_s: float,
        task_cores: Callable[[str, int], int] | None = None,
    ) -> list[tuple[str, float, float]]:
        """One sample of every server: [(server id, power W, co2 g/h)]; `task_cores(server, ts)`
        gives the cores emulated tasks keep busy there."""
        if task_cores is None:
            return [(sid, *model.sample(ts_ms, dt_s)) for sid, model in self.models.items()]
        return [(sid, *model.sample(ts_ms, dt_s, task_cores(sid, ts_ms))) for sid, model in self.models.items()]
