"""The emulation model: power within spec, CO2 by the formula, seeded, rhythmic, spiky, drifting."""

from __future__ import annotations

import statistics

import pytest

from sensors.model import FleetModel, ServerModel, ServerSpec
from tasker.domain import REGIONS, co2_g_per_h
from tasker.grid import GRID_PROFILES, grid_factor, intensity_at, local_hour

DAY_MS = 86_400_000
T0 = 1_796_083_200_000  # 2026-12-01T00:00:00Z


def spec(
    sid: str = "srv_a",
    *,
    source: str = "grid-mix",
    region: str = "eu-central",
    idle: float = 80,
    top: float = 350,
    pue: float = 1.4,
    intensity: float = 380.0,
) -> ServerSpec:
    return ServerSpec(sid, idle, top, pue, intensity, source, region)


def series(model: ServerModel, hours: float, step_s: float = 10.0, start: int = T0) -> list[tuple[int, float, float]]:
    out = []
    for k in range(int(hours * 3600 / step_s)):
        ts = start + int(k * step_s * 1000)
        out.append((ts, *model.sample(ts, step_s)))
    return out


def test_power_stays_within_idle_and_max_and_uses_the_range():
    for n in range(5):
        s = spec(f"srv_{n}", idle=45 + n * 30, top=140 + n * 150)
        powers = [p for _, p, _ in series(ServerModel(s, seed=7), hours=48)]
        assert min(powers) >= s.idle_watts and max(powers) <= s.max_watts
        # Not a flat line: the server moves through a good part of its range over two days.
        assert max(powers) - min(powers) > 0.2 * (s.max_watts - s.idle_watts)


def test_co2_obeys_the_formula_with_the_hourly_grid_intensity():
    for source in ("grid-mix", "coal", "wind"):
        s = spec(source=source, intensity=300.0 if source == "grid-mix" else 820.0)
        for ts, power, co2 in series(ServerModel(s, seed=1), hours=24, step_s=600):
            expected_intensity = 300.0 * grid_factor("eu-central", ts) if source == "grid-mix" else 820.0
            assert co2 == pytest.approx(co2_g_per_h(power, 1.4, expected_intensity), rel=1e-12)


def test_same_seed_reproduces_the_series_and_another_seed_does_not():
    a = series(ServerModel(spec(), seed=42), hours=1)
    b = series(ServerModel(spec(), seed=42), hours=1)
    c = series(ServerModel(spec(), seed=43), hours=1)
    assert a == b
    assert a != c


def test_servers_differ_from_each_other_under_one_seed():
    a = [p for _, p, _ in series(ServerModel(spec("srv_a"), seed=5), hours=2)]
    b = [p for _, p, _ in series(ServerModel(spec("srv_b"), seed=5), hours=2)]
    assert a != b
    assert abs(statistics.mean(a) - statistics.mean(b)) > 1.0 or statistics.pstdev(a) != pytest.approx(
        statistics.pstdev(b)
    )


def test_a_servers_series_does_not_depend_on_the_rest_of_the_fleet():
    alone, crowded = FleetModel(seed=3), FleetModel(seed=3)
    alone.sync({"srv_a": spec("srv_a")})
    crowded.sync({sid: spec(sid) for sid in ("srv_0", "srv_a", "srv_z")})
    for k in range(50):
        ts = T0 + k * 1000
        mine = dict((sid, p) for sid, p, _ in alone.tick(ts, 1.0))
        theirs = dict((sid, p) for sid, p, _ in crowded.tick(ts, 1.0))
        assert mine["srv_a"] == theirs["srv_a"]


def test_daily_rhythm_busier_in_the_local_afternoon_than_at_night():
    afternoon, night = [], []
    for n in range(40):  # a fleet average, so drift and spikes of single servers wash out
        model = ServerModel(spec(f"srv_{n}", region="eu-west"), seed=11)
        for ts, power, _ in series(model, hours=48, step_s=300):
            hour = local_hour("eu-west", ts)
            if 14 <= hour < 17:
                afternoon.append(power)
            elif 2 <= hour < 5:
                night.append(power)
    assert statistics.mean(afternoon) > statistics.mean(night) + 20


def _quiet(model: ServerModel) -> ServerModel:
    """No rhythm, drift or noise: what is left of the utilisation is the base and the spikes."""
    model.daily_amplitude = model.noise = model.drift_sigma = 0.0
    model._drift = 0.0
    return model


def test_spikes_come_and_go():
    model = _quiet(ServerModel(spec(), seed=2))
    model.spike_every_s = 600  # about one every 10 minutes
    us = [model.utilisation(T0 + k * 1000, 1.0) for k in range(6 * 3600)]
    raised = [u > model.base + 0.15 for u in us]
    starts = sum(1 for a, b in zip(raised, raised[1:]) if b and not a)
    assert 10 <= starts <= 70  # ~36 expected in 6 hours
    assert 0.02 < sum(raised) / len(raised) < 0.6  # spikes are the exception, not the rule
    longest = max(len(run) for run in "".join("1" if r else "0" for r in raised).split("0"))
    assert longest <= 181  # a spike lasts at most three minutes


def test_drift_wanders_slowly_and_comes_back():
    model = _quiet(ServerModel(spec(), seed=9))
    model.drift_sigma = 0.08
    model.spike_every_s = float("inf")
    us = [model.utilisation(T0 + k * 10_000, 10.0) for k in range(6 * 360)]
    assert statistics.pstdev(us) > 0.02  # it moves
    # ...slowly: ten seconds apart the level barely changes compared to its overall spread.
    steps = [abs(b - a) for a, b in zip(us, us[1:])]
    assert statistics.mean(steps) < statistics.pstdev(us) / 4
    # ...and returns towards the base rather than running off.
    assert abs(statistics.mean(us) - model.base) < 0.1


def test_fleet_sync_follows_adds_removals_and_spec_changes():
    fleet = FleetModel(seed=0)
    assert fleet.sync({"a": spec("a"), "b": spec("b")}) == (["a", "b"], [])
    assert fleet.sync({"b": spec("b"), "c": spec("c")}) == (["c"], ["a"])
    fleet.sync({"b": spec("b", idle=500, top=600), "c": spec("c")})
    for _ in range(20):
        readings = {sid: p for sid, p, _ in fleet.tick(T0, 1.0)}
        assert set(readings) == {"b", "c"}
        assert 500 <= readings["b"] <= 600


def test_spec_from_api_json_with_defaults():
    s = ServerSpec.from_json(
        {
            "id": "srv_1",
            "location": {"region": "eu-north"},
            "energy_source": "grid-mix",
            "idle_watts": 50,
            "max_watts": 200,
        }
    )
    assert s.pue == 1.5
    assert s.carbon_intensity_g_per_kwh == REGIONS["eu-north"][1]
    full = ServerSpec.from_json(
        {
            "id": "srv_2",
            "location": {"region": "us-east", "site": "x"},
            "energy_source": "coal",
            "carbon_intensity_g_per_kwh": 900,
            "pue": 1.2,
            "idle_watts": 10,
            "max_watts": 20,
        }
    )
    assert (full.carbon_intensity_g_per_kwh, full.pue, full.region) == (900.0, 1.2, "us-east")


# --- grid intensity profile ----------------------------------------------------------------


@pytest.mark.parametrize("region", sorted(REGIONS))
def test_every_region_has_a_profile_whose_daily_mean_is_the_average(region):
    assert region in GRID_PROFILES
    factors = [grid_factor(region, T0 + minute * 60_000) for minute in range(1440)]
    assert statistics.mean(factors) == pytest.approx(1.0, abs=1e-9)
    assert min(factors) > 0.5 and max(factors) < 1.5


@pytest.mark.parametrize("region", ["us-west", "eu-central", "au-southeast", "eu-south"])
def test_the_grid_is_cleaner_around_local_midday(region):
    offset_ms = int(GRID_PROFILES[region].utc_offset_h * 3_600_000)

    def at_local(hour: float) -> float:
        return intensity_at("grid-mix", region, 400.0, T0 + int(hour * 3_600_000) - offset_ms)

    assert local_hour(region, T0 + 13 * 3_600_000 - offset_ms) == pytest.approx(13.0)
    midday = at_local(13)
    assert midday < 400.0
    assert midday < at_local(19) and midday < at_local(1) and midday < at_local(7)


def test_dedicated_sources_do_not_vary_through_the_day():
    assert {intensity_at("wind", "us-west", 11.0, T0 + h * 3_600_000) for h in range(24)} == {11.0}
