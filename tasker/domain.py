"""Tasker's shared vocabulary: metrics and their units, energy sources, regions, readings.

Used by the backend, the sensors and the TUI alike; it imports nothing of theirs and does no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

# --- metrics -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metric:
    """A measured quantity: its name on the wire, its unit, and the range of valid values.

    `maximum` is an absolute ceiling, far above any real server yet small enough that every
    store holds it exactly as a value (Cassandra keeps a 32-bit float, at most about 3.4e38)
    and sums of a year of readings stay finite; `per_max_watts`, when set, bounds a server's
    readings to that multiple of its registered max_watts as well (see `value_ceilings`).
    """

    name: str
    unit: str
    description: str
    minimum: float = 0.0
    maximum: float = 1e9
    per_max_watts: float | None = None


POWER_HEADROOM = 10.0
"""Power above ten times a server's registered max_watts is refused: generous for a sensor that
reads above the spec sheet, tight enough that a unit mistake (mW sent as W) or garbage is caught."""

METRICS: dict[str, Metric] = {
    # 1e7 W is ten times the largest max_watts a server may register.
    "power": Metric("power", "W", "electrical power drawn by the server", maximum=1e7, per_max_watts=POWER_HEADROOM),
    # 1e9 g/h is above 1e7 W at PUE 5 and 5,000 g/kWh doubled by a grid profile's peak.
    "co2": Metric("co2", "g/h", "emission rate, grams CO2-equivalent per hour", maximum=1e9),
}


def value_ceilings(max_watts: float) -> dict[str, float]:
    """The largest value each metric may take for a server registered with `max_watts`
    (its absolute ceiling alone when max_watts is not given, i.e. 0)."""
    out = {}
    for name, metric in METRICS.items():
        ceiling = metric.maximum
        if metric.per_max_watts is not None and max_watts > 0:
            ceiling = min(ceiling, metric.per_max_watts * max_watts)
        out[name] = ceiling
    return out


# --- servers --------------------------------------------------------------------------------

SERVER_ID = re.compile(r"srv_[a-z2-7]{10}")
"""The form of the ids the backend gives servers."""


# --- energy ---------------------------------------------------------------------------------

ENERGY_SOURCES: tuple[str, ...] = (
    "coal",
    "gas",
    "oil",
    "nuclear",
    "hydro",
    "wind",
    "solar",
    "grid-mix",
)

# Life-cycle emission factors, g CO2e per kWh (IPCC AR5 WG3 Annex III medians).
SOURCE_INTENSITY_G_PER_KWH: dict[str, float] = {
    "coal": 820.0,
    "gas": 490.0,
    "oil": 650.0,
    "nuclear": 12.0,
    "hydro": 24.0,
    "wind": 11.0,
    "solar": 41.0,
}

# Region codes a server may be placed in, with a human name and the yearly average intensity of
# the public grid there (g CO2e per kWh), used for `grid-mix` servers.
REGIONS: dict[str, tuple[str, float]] = {
    "eu-west": ("Western Europe (Ireland, UK, Belgium)", 300.0),
    "eu-central": ("Central Europe (Germany)", 380.0),
    "eu-north": ("Northern Europe (Sweden, Finland)", 40.0),
    "eu-south": ("Southern Europe (Italy, Spain)", 250.0),
    "fr-central": ("France", 55.0),
    "us-east": ("US East (Virginia)", 380.0),
    "us-west": ("US West (Oregon, California)", 230.0),
    "us-central": ("US Central (Iowa, Texas)", 420.0),
    "ca-central": ("Canada (Quebec)", 30.0),
    "sa-east": ("South America (Sao Paulo)", 100.0),
    "ap-south": ("Asia Pacific (Mumbai)", 700.0),
    "ap-southeast": ("Asia Pacific (Singapore)", 480.0),
    "ap-northeast": ("Asia Pacific (Tokyo)", 460.0),
    "au-southeast": ("Australia (Sydney)", 600.0),
    "af-south": ("Africa (Cape Town)", 850.0),
}

DEFAULT_PUE = 1.5


def default_carbon_intensity(energy_source: str, region: str) -> tuple[float, str]:
    """Carbon intensity (g/kWh) a server gets when none is given, and where the figure comes from."""
    if energy_source == "grid-mix":
        name, grid = REGIONS[region]
        return grid, f"grid average for {region} ({name})"
    return SOURCE_INTENSITY_G_PER_KWH[energy_source], f"life-cycle median for {energy_source} (IPCC AR5)"


def co2_g_per_h(power_w: float, pue: float, intensity_g_per_kwh: float) -> float:
    """Emission rate in g CO2e per hour of a server drawing `power_w` watts."""
    return power_w / 1000.0 * pue * intensity_g_per_kwh


# --- readings -------------------------------------------------------------------------------

# Readings older than this are refused: no sensor of ours predates it, a zero epoch is a bug.
EARLIEST_TS_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
# Sensor clocks drift; more than this ahead of the backend's clock is refused.
MAX_FUTURE_SKEW_MS = 5 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Reading:
    """One measured value: a server's metric at an instant (UTC epoch milliseconds)."""

    server_id: str
    metric: str
    ts_ms: int
    value: float

    @property
    def key(self) -> tuple[str, str, int]:
        """Identity of a reading: writing the same key twice stores it once."""
        return (self.server_id, self.metric, self.ts_ms)


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
