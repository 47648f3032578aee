"""Format helpers and range figures over NaN, infinities and absurd magnitudes: never a crash,
never a 300-digit number, never an overflow to inf where the true figure is finite."""

from __future__ import annotations

import math

import pytest

from tasker_tui import format as fmt
from tasker_tui.range_stats import LiveSeries, range_figures
from tasker_tui.widgets.fleet_table import fit

ABSURD = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 1e-300]


@pytest.mark.parametrize("value", ABSURD)
def test_every_cell_format_takes_any_value_and_stays_short(value):
    for text in (fmt.watts(value), fmt.grams_per_hour(value), fmt.reading(value), fmt.fleet_power(value)):
        assert len(text) <= 9, text
    assert len(fmt.quantity(value, "kWh", 3)) <= 14


def test_non_numbers_read_n_a_and_huge_or_tiny_ones_are_scientific():
    assert [fmt.watts(v) for v in ABSURD] == ["n/a", "n/a", "n/a", "1e308", "-1e308", "0", "0"]
    assert fmt.quantity(1e-300, "W", 0) == "1e-300 W" and fmt.quantity(None, "W") == "—"
    assert fmt.reading(1e-300) == "1e-300" and fmt.reading(12.345) == "12.35"
    assert fmt.as_value(None) != fmt.as_value(None)  # null on the wire is NaN: a gap, n/a


def test_a_sparkline_over_absurd_values_draws_gaps_for_non_numbers():
    samples = [(i * 1000, v) for i, v in enumerate([1e308, math.nan, -1e308, math.inf, 0.0, 1e-300])]
    line = fmt.sparkline(samples, 6000, 6, 6)
    assert len(line) == 6
    assert line[0] == "█" and line[2] == "▁" and line[1] == line[3] == fmt.SPARK_GAP


def test_means_of_huge_values_do_not_overflow():
    assert fmt.mean_since([(0, 1e308), (1, 1e308), (2, math.nan)], 0) == pytest.approx(1e308)


def test_range_figures_skip_non_numbers_and_do_not_overflow():
    points = [(0, 1e308, 1e308, 1e308), (60_000, math.nan, math.nan, math.nan), (120_000, -1e308, 1e308, math.inf)]
    figures = range_figures(points, 60, to_ms=180_000)
    assert figures.minimum == -1e308 and figures.maximum == 1e308
    assert figures.average == pytest.approx(1e308) and figures.covered_s == 120
    series = LiveSeries([[0, None, None, None]], 60, 3_600_000)
    assert series.add(1_000, 5.0) and not series.add(2_000, math.nan)
    assert series.points() == [(0, 5.0, 5.0, 5.0)]


def test_wide_characters_are_fitted_by_cells():
    assert fit("サーバー東京", 7) == "サーバ…"
    assert fit("サー", 6) == "サー  "
