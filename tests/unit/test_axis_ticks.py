"""Chart axes a reader can trust: round value ticks and time ticks on round times, with dates."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tasker_tui.ticks import nice_step, time_ticks, value_label, value_ticks

# 2026-11-18 11:06:40 UTC
NOW_MS = 1_795_000_000_000


def at(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp() * 1000)


@pytest.mark.parametrize(("rough", "step"), [(0.7, 1), (1, 1), (1.2, 2), (3, 5), (7, 10), (23, 50), (0.031, 0.05)])
def test_steps_are_one_two_or_five_times_a_power_of_ten(rough, step):
    assert nice_step(rough) == pytest.approx(step)


def test_value_ticks_are_round_evenly_spaced_and_cover_the_data():
    assert value_ticks(222.3, 232.6, 5) == [220, 225, 230, 235]  # not 222.3, 225.9, 229.2, 232.6
    assert value_ticks(222.3, 232.6, 12) == [222, 223, 224, 225, 226, 227, 228, 229, 230, 231, 232, 233]


def test_value_ticks_from_zero_and_with_small_steps_stay_exact():
    assert value_ticks(0, 232.6, 4) == [0, 100, 200, 300]
    assert value_ticks(0, 0.37, 5) == [0, 0.1, 0.2, 0.3, 0.4]  # not 0.30000000000000004
    assert value_ticks(-12, 30, 6) == [-20, -10, 0, 10, 20, 30]


def test_a_flat_or_unusable_range_still_gets_an_axis():
    assert len(value_ticks(220, 220, 4)) >= 2
    assert value_ticks(0, 0, 4)[0] == 0
    assert value_ticks(float("nan"), 1, 4) == [0, 1]


def test_value_labels_carry_only_the_decimals_of_the_step():
    assert [value_label(v, 50) for v in (0, 50, 100)] == ["0", "50", "100"]
    assert value_label(2.5, 0.5) == "2.5" and value_label(0.05, 0.05) == "0.05" and value_label(-0.0, 0.1) == "0"


def labels(ticks):
    return [label for _, label in ticks]


def test_five_minutes_tick_on_whole_minutes():
    ticks = time_ticks(NOW_MS - 300_000, NOW_MS, 70)
    assert labels(ticks) == ["11:02", "11:03", "11:04", "11:05", "11:06"]
    assert all(ts % 60_000 == 0 for ts, _ in ticks)


def test_a_wide_axis_ticks_more_finely_but_never_overlaps():
    ticks = time_ticks(NOW_MS - 300_000, NOW_MS, 150)
    assert labels(ticks)[:3] == ["11:02:00", "11:02:30", "11:03:00"]
    assert len(ticks) * (len("11:02:00") + 5) <= 150


def test_twenty_four_hours_show_the_date_at_midnight_and_no_time_twice():
    ticks = time_ticks(NOW_MS - 86_400_000, NOW_MS, 70)
    names = labels(ticks)
    assert "Nov 18" in names and "00:00" not in names
    assert len(set(names)) == len(names)
    assert dict((label, ts) for ts, label in ticks)["Nov 18"] == at("2026-11-18T00:00:00")
    assert all(ts % 3_600_000 == 0 for ts, _ in ticks)


def test_a_range_within_one_day_has_no_date():
    ticks = time_ticks(at("2026-11-18T08:00:00"), at("2026-11-18T09:00:00"), 70)
    assert all(":" in label for label in labels(ticks))


def test_five_minutes_across_midnight_name_the_new_day():
    ticks = time_ticks(at("2026-11-17T23:58:30"), at("2026-11-18T00:03:30"), 70)
    assert labels(ticks) == ["23:59", "Nov 18", "00:01", "00:02", "00:03"]


def test_seven_days_tick_every_day_without_skipping():
    ticks = time_ticks(NOW_MS - 7 * 86_400_000, NOW_MS, 70)
    assert labels(ticks) == ["Nov 12", "Nov 13", "Nov 14", "Nov 15", "Nov 16", "Nov 17", "Nov 18"]


def test_thirty_days_tick_on_mondays():
    ticks = time_ticks(NOW_MS - 30 * 86_400_000, NOW_MS, 70)
    assert len(ticks) >= 4
    assert all(
        datetime.fromtimestamp(ts / 1000, tz=timezone.utc).strftime("%a %H:%M") == "Mon 00:00" for ts, _ in ticks
    )


def test_a_time_beyond_the_calendar_gives_no_ticks_rather_than_an_error():
    assert time_ticks(10**17, 10**17 + 1000, 70) == []
