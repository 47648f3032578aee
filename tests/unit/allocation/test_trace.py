"""Carbon-intensity traces: parsing a CSV, and the step function the planner reads."""

import pytest

from backend.allocation import BuiltinIntensity, TraceIntensity, parse_trace_csv

from .builders import T0, H, server

GOOD = """region,ts,g_per_kwh
eu-west,2026-06-01T00:00:00Z,210.5
eu-west,1780275600000,190

us-west,2026-06-01T00:00:00+00:00,120
"""


def test_a_good_file_gives_its_rows():
    rows = parse_trace_csv(GOOD)
    assert [(r.region, r.ts_ms, r.g_per_kwh) for r in rows] == [
        ("eu-west", T0, 210.5),
        ("eu-west", T0 + H, 190.0),
        ("us-west", T0, 120.0),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("mars-1,2026-06-01T00:00:00Z,100", "line 2: region 'mars-1'"),
        ("eu-west,yesterday,100", "line 2: ts 'yesterday'"),
        ("eu-west,2026-06-01T00:00:00,100", "line 2: ts"),
        ("eu-west,1780272000,100", "line 2: ts '1780272000' is before 2000"),
        ("eu-west,2026-06-01T00:00:00Z,lots", "line 2: g_per_kwh 'lots' is not a number"),
        ("eu-west,2026-06-01T00:00:00Z,nan", "line 2: g_per_kwh 'nan' must be between"),
        ("eu-west,2026-06-01T00:00:00Z,-1", "line 2: g_per_kwh '-1' must be between"),
        ("eu-west,2026-06-01T00:00:00Z,5001", "line 2: g_per_kwh '5001' must be between"),
        ("eu-west,2026-06-01T00:00:00Z", "line 2: expected 3 fields"),
    ],
)
def test_each_kind_of_bad_row_is_named_with_its_line(line, expected):
    with pytest.raises(ValueError, match=expected.replace("(", r"\(")):
        parse_trace_csv("region,ts,g_per_kwh\n" + line + "\n")


def test_a_bad_row_further_down_names_its_own_line():
    with pytest.raises(ValueError, match="line 4: region"):
        parse_trace_csv("region,ts,g_per_kwh\neu-west,1780272000000,1\neu-west,1780275600000,2\nxx,1780279200000,3\n")


def test_a_file_without_the_header_is_refused():
    with pytest.raises(ValueError, match="line 1: header"):
        parse_trace_csv("eu-west,1780272000000,1\n")


def test_the_trace_value_holds_until_the_next_row_and_the_model_answers_outside_it():
    grid = server("g", source="grid-mix", region="eu-west", g=300.0)
    trace = TraceIntensity(parse_trace_csv(GOOD))
    builtin = BuiltinIntensity()
    assert trace.at(grid, T0 + H // 2) == 210.5
    assert trace.at(grid, T0 + H + 1) == 190.0
    assert trace.at(grid, T0 - 1) == builtin.at(grid, T0 - 1)
    assert trace.at(grid, T0 + 2 * H) == builtin.at(grid, T0 + 2 * H)  # last row held one step


def test_dedicated_sources_and_regions_without_a_trace_keep_the_builtin_figure():
    trace = TraceIntensity(parse_trace_csv(GOOD))
    assert trace.at(server("w", source="wind", region="eu-west", g=11.0), T0) == 11.0
    other = server("o", source="grid-mix", region="ap-south", g=700.0)
    assert trace.at(other, T0) == BuiltinIntensity().at(other, T0)


@pytest.mark.parametrize("intensity", [BuiltinIntensity(), TraceIntensity(parse_trace_csv(GOOD))])
def test_the_per_slot_series_equals_the_pointwise_values(intensity):
    grid = server("g", source="grid-mix", region="eu-west", g=300.0)
    series = intensity.series(grid, T0 - H, 300, 40)
    assert list(series) == pytest.approx([intensity.at(grid, T0 - H + k * 300_000) for k in range(40)])
