"""How clean each region's public grid is through the day, for `grid-mix` servers.

A server's `carbon_intensity_g_per_kwh` is the grid's daily average; the hour-by-hour intensity
swings around it: lowest around midday when solar peaks, highest at the morning and evening
demand peaks. The profile keeps the daily mean equal to the server's figure, so long-run
emissions match what the registry says.

    intensity(h) = average * (1 - solar_depth * cos(2pi (h - 13) / 24)
                                + peak_depth * cos(2pi (h - 19) / 12))

with `h` the local solar hour of the region. Both cosines average to zero over a day.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GridProfile:
    """A region's daily intensity shape: its UTC offset and how deep the swings are."""

    utc_offset_h: float
    solar_depth: float
    """Fraction of the average by which midday is cleaner (and the small hours dirtier)."""
    peak_depth: float = 0.06
    """Fraction added at the 7:00 and 19:00 demand peaks, taken off at 1:00 and 13:00."""


# Solar depth follows how much solar each grid has; hydro/nuclear-dominated grids barely move.
GRID_PROFILES: dict[str, GridProfile] = {
    "eu-west": GridProfile(0, 0.12),
    "eu-central": GridProfile(1, 0.22),
    "eu-north": GridProfile(2, 0.04, 0.03),
    "eu-south": GridProfile(1, 0.25),
    "fr-central": GridProfile(1, 0.06, 0.04),
    "us-east": GridProfile(-5, 0.10),
    "us-west": GridProfile(-8, 0.32),
    "us-central": GridProfile(-6, 0.15),
    "ca-central": GridProfile(-5, 0.02, 0.02),
    "sa-east": GridProfile(-3, 0.06),
    "ap-south": GridProfile(5.5, 0.15),
    "ap-southeast": GridProfile(8, 0.05),
    "ap-northeast": GridProfile(9, 0.14),
    "au-southeast": GridProfile(10, 0.30),
    "af-south": GridProfile(2, 0.10),
}
_FLAT = GridProfile(0, 0.0, 0.0)

_MS_PER_HOUR = 3_600_000.0


def local_hour(region: str, ts_ms: int) -> float:
    """Hour of the day (0..24) at `ts_ms` in the region's local time."""
    profile = GRID_PROFILES.get(region, _FLAT)
    return (ts_ms / _MS_PER_HOUR + profile.utc_offset_h) % 24.0


def grid_factor(region: str, ts_ms: int) -> float:
    """Multiplier of the region's average grid intensity at `ts_ms` (daily mean exactly 1)."""
    profile = GRID_PROFILES.get(region, _FLAT)
    h = (ts_ms / _MS_PER_HOUR + profile.utc_offset_h) % 24.0
    return (
        1.0
        - profile.solar_depth * math.cos(2 * math.pi * (h - 13.0) / 24.0)
        + profile.peak_depth * math.cos(2 * math.pi * (h - 19.0) / 12.0)
    )


def intensity_at(energy_source: str, region: str, average_g_per_kwh: float, ts_ms: int) -> float:
    """Carbon intensity (g/kWh) a server draws at `ts_ms`: varies through the day for grid-mix,
    constant for a dedicated source."""
    if energy_source != "grid-mix":
        return average_g_per_kwh
    return average_g_per_kwh * grid_factor(region, ts_ms)
