"""Time ranges for raw readings: presets, and ranges typed as relative, ISO or epoch times."""

from __future__ import annotations

import pytest

from tasker.domain import EARLIEST_TS_MS
from tasker_tui.time_range import PRESETS, parse_time, preset_range, typed_range

NOW = 1_800_000_000_000


def test_typed_times_accept_relative_iso_and_epoch():
    assert parse_time("now", NOW) == NOW
    assert parse_time("  ", NOW) == NOW
    assert parse_time("-15m", NOW) == NOW - 15 * 60_000
    assert parse_time("-1.5h", NOW) == NOW - 5_400_000
    assert parse_time("-3d", NOW) == NOW - 3 * 86_400_000
    assert parse_time("1700000000000", NOW) == 1_700_000_000_000
    assert parse_time("2026-01-01T00:00", NOW) == 1_767_225_600_000  # no zone: UTC
    assert parse_time("2026-01-01T01:00+01:00", NOW) == 1_767_225_600_000
    assert parse_time("2026-01-01T00:00Z", NOW) == 1_767_225_600_000
    with pytest.raises(ValueError, match="use now, -15m"):
        parse_time("yesterday", NOW)


def test_presets_end_just_after_now_and_wrap_around():
    hour = preset_range(1, NOW)
    assert (hour.label, hour.from_ms, hour.to_ms) == ("last 1h", NOW - 3_600_000, NOW + 1)
    everything = preset_range(len(PRESETS) - 1, NOW)
    assert (everything.label, everything.from_ms) == ("everything", EARLIEST_TS_MS)
    assert preset_range(len(PRESETS), NOW) == preset_range(0, NOW)


def test_a_typed_range_up_to_now_includes_this_millisecond_and_a_fixed_end_does_not():
    up_to_now = typed_range("-10s", "now", NOW)
    assert (up_to_now.from_ms, up_to_now.to_ms) == (NOW - 10_000, NOW + 1)
    fixed = typed_range("-2h", "-1h", NOW)
    assert (fixed.from_ms, fixed.to_ms) == (NOW - 7_200_000, NOW - 3_600_000)
    assert fixed.label  # the span in UTC, as the head line shows it


def test_an_empty_from_is_the_last_hour():
    assert typed_range("", "", NOW).from_ms == NOW - 3_600_000


def test_a_range_that_ends_before_it_starts_is_refused():
    with pytest.raises(ValueError, match="'from' must be before 'to'"):
        typed_range("-1h", "-2h", NOW)
    with pytest.raises(ValueError, match="'from' must be before 'to'"):
        typed_range("now", "now", NOW)
    with pytest.raises(ValueError, match="use now"):
        typed_range("-1h", "tomorrow", NOW)
