"""The demand expected from tasks not yet submitted, from the tasks of the last days (or, on a
first day, of the last hours)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest

from backend.services.task_forecast import DAY_MS, FIRST_SPAN_MS, PACE_BIN_MS, expected_demand

T0 = 1_780_272_000_000  # 2026-06-01T00:00:00Z
H = 3_600_000
NOW = T0 + 12 * H  # noon
END = NOW + 48 * H


@dataclass(frozen=True)
class Past:
    cores: int
    earliest_start_ms: int
    duration_s: int = 3600


def demand_at(expected, ts: int) -> float:
    return sum(e.cores for e in expected if e.start_ms <= ts < e.end_ms)


def test_a_task_of_each_of_the_last_two_days_is_expected_at_its_hour_as_their_average():
    history = [Past(4, T0 - DAY_MS + 18 * H), Past(8, T0 + 18 * H - 2 * DAY_MS)]  # 18:00, 1 and 2 days ago
    expected = expected_demand(history, [], NOW, END)
    assert demand_at(expected, T0 + 18 * H + 30 * 60_000) == pytest.approx(6.0)  # today 18:30
    assert demand_at(expected, T0 + DAY_MS + 18 * H) == pytest.approx(6.0)  # tomorrow
    assert demand_at(expected, T0 + 17 * H) == 0.0 and demand_at(expected, T0 + 19 * H) == 0.0
    assert all(NOW < e.start_ms < END for e in expected)


def test_tasks_older_than_a_week_and_starts_past_the_end_are_not_expected():
    history = [
        Past(4, T0 + 14 * H - 8 * DAY_MS),  # too old
        Past(2, T0 + 15 * H - DAY_MS),
        Past(2, T0 + 15 * H - 2 * DAY_MS),
    ]
    expected = expected_demand(history, [], NOW, T0 + 15 * H)  # only until 15:00 today
    assert demand_at(expected, T0 + 14 * H) == 0.0
    assert expected == []  # 15:00 is the end: not expected
    assert demand_at(expected_demand(history, [], NOW, END), T0 + 15 * H) == pytest.approx(2.0)


def test_a_task_declared_ahead_takes_its_share_off_what_is_expected():
    history = [Past(8, T0 + 18 * H - DAY_MS), Past(8, T0 + 18 * H - 2 * DAY_MS)]
    declared = [Past(8, T0 + 18 * H)]  # today's run of it, submitted ahead: known, not expected
    expected = expected_demand(history, declared, NOW, END)
    assert demand_at(expected, T0 + 18 * H) == 0.0
    assert demand_at(expected, T0 + DAY_MS + 18 * H) == pytest.approx(8.0)  # tomorrow's still is


def test_no_history_expects_nothing():
    assert expected_demand([], [Past(8, T0 + 18 * H)], NOW, END) == []


def test_a_first_day_expects_its_tasks_again_at_the_pace_they_came():
    # a task of 2 cores every 5 minutes from 08:00, one of 4 at 08:00 and at 10:00, none before:
    # over the hours not seen yet those four hours repeat back to back; the hours seen
    # (08:00-12:00) repeat daily
    steady = [Past(2, T0 + 8 * H + k * PACE_BIN_MS, duration_s=300) for k in range(48)]
    history = [*steady, Past(4, T0 + 8 * H), Past(4, T0 + 10 * H)]
    expected = expected_demand(history, [], NOW, END)
    assert demand_at(expected, T0 + 12 * H + 60_000) == pytest.approx(2 + 4)  # 08:00's again from now
    assert demand_at(expected, T0 + 13 * H + 60_000) == pytest.approx(2)
    assert demand_at(expected, T0 + 14 * H + 60_000) == pytest.approx(2 + 4)  # 10:00's, 4 h on
    assert demand_at(expected, T0 + 16 * H + 60_000) == pytest.approx(2 + 4)  # 08:00's, 8 h on
    assert demand_at(expected, T0 + 32 * H + 60_000) == pytest.approx(2 + 4)  # 08:00's, a day on
    assert demand_at(expected, T0 + 33 * H + 60_000) == pytest.approx(2)
    assert max(e.end_ms for e in expected) <= END + H and min(e.start_ms for e in expected) >= NOW


def test_a_burst_is_expected_again_only_as_often_as_it_fills_the_day_so_far():
    # 100 tasks submitted at 08:00 at once, nothing since: one 5-minute bin of the 48 seen, where
    # 100 tasks coming steadily would have filled 42 of them
    burst = [Past(1, T0 + 8 * H) for _ in range(100)]
    expected = expected_demand(burst, [], NOW, END)
    steady_bins = 48 * (1 - math.exp(-100 / 48))
    assert demand_at(expected, T0 + 12 * H + 60_000) == pytest.approx(100 / steady_bins)
    assert demand_at(expected, T0 + 32 * H + 60_000) == pytest.approx(100)  # the same time tomorrow


def test_a_task_an_hour_is_a_steady_pace_too():
    # one task of 4 cores every hour from 07:00: five 5-minute bins of the 60 seen, as many as
    # five tasks coming at any steady pace fill
    history = [Past(4, T0 + (7 + k) * H) for k in range(5)]
    expected = expected_demand(history, [], NOW, END)
    assert demand_at(expected, T0 + 12 * H + 60_000) == pytest.approx(4)  # 07:00's again from now
    assert demand_at(expected, T0 + 15 * H + 60_000) == pytest.approx(4)  # 10:00's


def test_a_day_old_history_repeats_daily_only():
    history = [Past(4, NOW - DAY_MS - 2 * H), Past(2, NOW - 2 * H)]  # 10:00 yesterday and today
    expected = expected_demand(history, [], NOW, END)
    assert sorted({(e.start_ms - T0) // H for e in expected}) == [34, 58]  # 10:00 tomorrow, the day after
    assert demand_at(expected, T0 + 34 * H) == pytest.approx(3.0)  # over two days of history: their average
    assert demand_at(expected, T0 + 58 * H) == pytest.approx(3.0)


def test_less_history_than_the_first_span_expects_nothing():
    history = [Past(4, NOW - FIRST_SPAN_MS + 60_000), Past(4, NOW - 60_000)]
    assert expected_demand(history, [], NOW, END) == []
    assert expected_demand([Past(4, NOW - FIRST_SPAN_MS)], [], NOW, END) != []


def test_repeats_over_the_same_slots_are_summed_and_widened_to_whole_slots():
    # two tasks of the same slot of 5 minutes, a day ago; a third the slot after; three days of
    # history (the oldest at 18:00, after the hour asked for)
    history = [
        Past(4, NOW - DAY_MS + 60_000),
        Past(2, NOW - DAY_MS + 120_000),
        Past(1, NOW - DAY_MS + 300_000),
        Past(3, NOW - 3 * DAY_MS + 6 * H),
    ]
    expected = expected_demand(history, [], NOW, NOW + H, slot_ms=300_000)
    assert [(e.start_ms - NOW, e.end_ms - NOW, e.cores) for e in expected] == [
        (0, H + 300_000, pytest.approx(6 / 3)),  # 12:01 and 12:02 for an hour: 12:00 to 13:05
        (300_000, H + 300_000, pytest.approx(1 / 3)),
    ]
