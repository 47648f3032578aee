"""Unit tests of the TUI's plain logic: sparklines, staleness, totals, range figures, form parsing."""

from __future__ import annotations

import pytest

from tasker.models import Server
from tasker_tui.fleet_state import FleetState, matches_filter
from tasker_tui.format import SPARK_CHARS, sparkline
from tasker_tui.range_stats import LiveSeries, range_figures
from tasker_tui.screens.server_form import changes_between, field_for, parse_form
from tests.tui.fakes import server_json

NOW = 1_800_000_000_000


def test_sparkline_scales_between_min_and_max_and_leaves_gaps_blank():
    samples = [(NOW - 40_000 + i * 1000, float(i)) for i in range(20)]  # 20 s rising, then silence
    line = sparkline(samples, NOW, width=4, span_s=40)
    assert len(line) == 4
    assert line[0] == SPARK_CHARS[0] and line[1] == SPARK_CHARS[-1]  # first bucket low, second high
    assert line[2:] == "  "  # no readings: a gap, not a zero


def test_sparkline_ignores_readings_before_its_window():
    samples = [(NOW - 100_000, 1000.0), (NOW - 8_000, 10.0), (NOW - 1_000, 20.0)]
    line = sparkline(samples, NOW, width=2, span_s=10)
    assert line == SPARK_CHARS[0] + SPARK_CHARS[-1]


def fleet_with(*servers) -> FleetState:
    state = FleetState()
    state.set_fleet([Server.from_json(s) for s in servers], {})
    state.connected = True
    return state


def test_a_server_is_stale_after_several_of_its_own_intervals():
    server = server_json(1, "slow-1", "eu-west", "wind")
    state = fleet_with(server)
    for i in range(5):  # a sensor reporting every 10 s
        state.apply_readings([{"server_id": server["id"], "metric": "power", "ts": NOW + i * 10_000, "value": 100}])
    last = NOW + 40_000
    assert not state.is_stale(server["id"], last + 30_000)  # three intervals late: still fine
    assert state.is_stale(server["id"], last + 60_000)  # six intervals: stale
    state.connected = False
    assert state.is_stale(server["id"], last)  # no connection: nothing is live


def test_totals_count_only_fresh_servers():
    a, b = server_json(1, "a", "eu-west", "wind"), server_json(2, "b", "eu-west", "coal")
    state = fleet_with(a, b)
    state.apply_readings(
        [
            {"server_id": a["id"], "metric": "power", "ts": NOW, "value": 200.0},
            {"server_id": a["id"], "metric": "co2", "ts": NOW, "value": 3000.0},
            {"server_id": b["id"], "metric": "power", "ts": NOW - 60_000, "value": 500.0},
        ]
    )
    totals = state.totals(NOW + 1000)
    assert (totals.watts, totals.co2_kg_per_h, totals.fresh, totals.stale) == (200.0, 3.0, 1, 1)


def test_readings_repeated_or_late_keep_one_ordered_series():
    server = server_json(1, "a", "eu-west", "wind")
    state = fleet_with(server)
    sid = server["id"]
    for ts, value in ((NOW, 1.0), (NOW + 2000, 3.0), (NOW + 1000, 2.0), (NOW + 2000, 3.0)):
        state.apply_readings([{"server_id": sid, "metric": "power", "ts": ts, "value": value}])
    assert list(state.series[sid].power) == [(NOW, 1.0), (NOW + 1000, 2.0), (NOW + 2000, 3.0)]


def test_a_late_reading_fits_into_a_full_series():
    from tasker_tui.fleet_state import RECENT_SECONDS

    server = server_json(1, "a", "eu-west", "wind")
    state = fleet_with(server)
    sid = server["id"]
    state.apply_readings(
        [
            {"server_id": sid, "metric": "power", "ts": NOW + i * 1000, "value": 1.0}
            for i in range(0, 2 * RECENT_SECONDS, 2)
        ]
    )
    state.apply_readings(
        [{"server_id": sid, "metric": "power", "ts": NOW + 2 * RECENT_SECONDS * 1000 - 3000, "value": 9.0}]
    )
    samples = list(state.series[sid].power)
    assert len(samples) == RECENT_SECONDS and samples == sorted(samples)
    assert samples[-2] == (NOW + 2 * RECENT_SECONDS * 1000 - 3000, 9.0)


def test_unknown_servers_and_metrics_are_ignored_and_removal_forgets():
    server = server_json(1, "a", "eu-west", "wind")
    state = fleet_with(server)
    kept = state.apply_readings(
        [
            {"server_id": "srv_nope", "metric": "power", "ts": NOW, "value": 1.0},
            {"server_id": server["id"], "metric": "temperature", "ts": NOW, "value": 1.0},
        ]
    )
    assert kept == 0
    state.apply_registry("removed", {"id": server["id"]})
    assert server["id"] not in state.servers and server["id"] not in state.series


def test_filter_matches_every_word_in_name_location_source_or_tags():
    server = server_json(1, "db-iad-1", "us-east", "coal", site="Ashburn", tags=["prod", "db"])
    parsed = Server.from_json(server)
    assert matches_filter(parsed, "coal prod")
    assert matches_filter(parsed, "ASHBURN")
    assert not matches_filter(parsed, "coal web")


def test_energy_over_a_range_counts_only_covered_time():
    hour = [(NOW + i * 60_000, 100.0, 100.0, 100.0) for i in range(60)]  # 100 W for an hour, 1-min buckets
    figures = range_figures(hour, 60)
    assert figures.value_hours == pytest.approx(100.0)  # 100 Wh = 0.1 kWh
    with_gap = hour[:30]
    assert range_figures(with_gap, 60).value_hours == pytest.approx(50.0)  # no invented energy
    live = range_figures(hour, 60, to_ms=NOW + 59 * 60_000 + 15_000)  # newest bucket 15 s in
    assert live.value_hours == pytest.approx(100.0 * (59 * 60 + 15) / 3600)


def test_energy_of_coarse_edge_buckets_counts_only_when_readings_ran():
    # Two-hour buckets; readings started 10 minutes before the first bucket ended and the
    # sensor's last reading came 30 minutes into the second one, which is still open (now).
    two_h = 7_200_000
    buckets = [(NOW, 100.0, 100.0, 100.0), (NOW + two_h, 100.0, 100.0, 100.0)]
    figures = range_figures(
        buckets,
        7200,
        to_ms=NOW + two_h + 3_600_000,
        data_from_ms=NOW + two_h - 600_000,
        data_to_ms=NOW + two_h + 1_800_000,
    )
    assert figures.covered_s == pytest.approx(40 * 60)
    assert figures.value_hours == pytest.approx(100.0 * 40 / 60)


def test_live_series_folds_readings_into_buckets_and_slides():
    series = LiveSeries([[NOW, 10.0, 10.0, 10.0]], resolution_s=60, span_ms=120_000)
    series.add(NOW + 30_000, 30.0)  # same minute: folded in
    assert series.points() == [(NOW, 10.0, 20.0, 30.0)]
    series.add(NOW + 60_000, 5.0)  # next minute: a new bucket
    series.add(NOW + 190_000, 7.0)  # two minutes later: the first bucket leaves the range
    assert [p[0] for p in series.points()] == [NOW + 60_000, NOW + 180_000]
    assert not series.add(NOW + 1_000, 1.0)  # older than what is shown: refused


def test_backend_field_names_map_to_form_fields():
    assert field_for("max_watts") == "max_watts"
    assert field_for("location.region") == "region"
    assert field_for("location.site") == "site"
    assert field_for("location") == "region"
    assert field_for("tags[2]") == "tags"
    assert field_for("owner") is None


def test_form_values_become_the_api_body():
    payload, errors = parse_form(
        {
            "name": "web-9",
            "region": "eu-west",
            "site": " Dublin ",
            "energy_source": "wind",
            "carbon_intensity_g_per_kwh": "",
            "pue": "1.2",
            "idle_watts": "80",
            "max_watts": "x",
            "cores": "8.5",
            "tags": "prod, , web",
        }
    )
    assert errors == {"max_watts": "must be a number", "cores": "must be a whole number"}
    assert payload["location"] == {"region": "eu-west", "site": "Dublin"}
    assert payload["tags"] == ["prod", "web"] and "carbon_intensity_g_per_kwh" not in payload
    server = Server.from_json(server_json(1, "web-9", "eu-west", "wind", site="Dublin"))
    assert changes_between(server, {"name": "web-9", "location": {"region": "eu-west", "site": "Cork"}}) == {
        "location": {"region": "eu-west", "site": "Cork"}
    }
