"""The pure time-series arithmetic both time-series stores answer queries with."""

from __future__ import annotations

import random

import pytest

from backend import downsample as ds
from backend.ports import Series

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, a day, hour and minute boundary


def test_bucket_start_and_day_are_epoch_aligned():
    assert ds.bucket_start(T0 + 59_999, ds.MINUTE_MS) == T0
    assert ds.bucket_start(T0 + 60_000, ds.MINUTE_MS) == T0 + 60_000
    assert ds.day_of(T0 - 1) == ds.day_of(T0) - 1
    assert ds.day_of(T0 + ds.DAY_MS - 1) == ds.day_of(T0)


def test_rollup_aggregates_points_per_bucket():
    points = [(T0 + 1_000, 5.0), (T0 + 59_000, 1.0), (T0 + 30_000, 3.0), (T0 + 60_000, 7.0)]
    assert ds.rollup(points, ds.MINUTE_MS) == [
        ds.Rollup(T0, 1.0, 5.0, 9.0, 3),
        ds.Rollup(T0 + 60_000, 7.0, 7.0, 7.0, 1),
    ]


def test_merging_minute_rollups_equals_rolling_up_the_raw_points_by_hour():
    rng = random.Random(7)
    points = [(T0 + rng.randrange(3 * ds.HOUR_MS), rng.uniform(-50, 50)) for _ in range(2_000)]
    by_hour = ds.rollup(points, ds.HOUR_MS)
    merged = ds.merge(ds.rollup(points, ds.MINUTE_MS), ds.HOUR_MS)
    assert [(r.start_ms, r.min, r.max, r.n) for r in merged] == [(r.start_ms, r.min, r.max, r.n) for r in by_hour]
    for a, b in zip(merged, by_hour):
        assert a.avg == pytest.approx(b.avg)


@pytest.mark.parametrize(
    ("span_ms", "max_points", "expected_s"),
    [
        (ds.DAY_MS, 500, 60),  # 1440 one-minute rows, not 86,400 raw ones
        (30 * ds.DAY_MS, 500, 3600),  # 720 hourly rows
        (30 * ds.DAY_MS, 1_000, 60),  # 720 hours are too few; 43,200 minutes still fit the budget
        (30 * ds.DAY_MS, 100_000, 60),  # raw would be the only one giving that many: not for 30 days
        (400 * ds.DAY_MS, 20_000, 3600),  # minutes would mean 576,000 rows: over the scan budget
        (ds.HOUR_MS, 100, 1),  # an hour at 100 points needs raw (60 minutes are too few)
        (ds.HOUR_MS, 60, 60),
        (ds.HOUR_MS, 1, 3600),
        (7 * ds.HOUR_MS, 1_000, 60),  # raw only for ranges of a few hours
        (10 * ds.MINUTE_MS, 5_000, 1),  # nothing gives 5,000: the finest
    ],
)
def test_choose_resolution_picks_the_coarsest_giving_enough_points(span_ms, max_points, expected_s):
    assert ds.choose_resolution(T0, T0 + span_ms, max_points) == expected_s


@pytest.mark.parametrize("bad", [(T0, T0, 10), (T0 + 1, T0, 10), (T0, T0 + 1000, 0)])
def test_choose_resolution_rejects_empty_ranges_and_no_points(bad):
    with pytest.raises(ValueError, match="to .* must be after from|max_points"):
        ds.choose_resolution(*bad)


def test_downsample_keeps_at_most_max_points_with_count_weighted_average():
    rng = random.Random(3)
    for _ in range(200):
        start = T0 + rng.randrange(-ds.DAY_MS, ds.DAY_MS)
        span = rng.randrange(1, 3 * ds.DAY_MS)
        max_points = rng.randrange(1, 700)
        width = ds.output_width_ms(start, start + span, 60, max_points)
        assert width % ds.MINUTE_MS == 0
        assert ds.bucket_count(start, start + span, width) <= max_points
        if width > ds.MINUTE_MS:  # the next finer multiple would have given too many
            assert ds.bucket_count(start, start + span, width - ds.MINUTE_MS) > max_points


def test_downsample_merges_rollups_into_epoch_aligned_buckets():
    rows = [
        ds.Rollup(T0, 1.0, 3.0, 4.0, 2),  # avg 2
        ds.Rollup(T0 + 60_000, 10.0, 10.0, 10.0, 1),  # avg 10
        ds.Rollup(T0 + 120_000, 5.0, 6.0, 22.0, 4),  # next output bucket
        ds.Rollup(T0 + 180_000, 100.0, 100.0, 100.0, 1),  # outside [from, to): left out
    ]
    series = ds.downsample(rows, 60, T0, T0 + 180_000, 2)
    assert series.resolution_s == 120
    assert series.points == [(T0, 1.0, pytest.approx(14.0 / 3), 10.0), (T0 + 120_000, 5.0, 5.5, 6.0)]


def test_downsample_of_empty_rows_is_empty():
    assert ds.downsample([], 3600, T0, T0 + ds.DAY_MS, 10) == Series(3 * 3600, [])


def test_cursor_round_trips_and_is_opaque():
    cursor = ds.encode_cursor(T0 + 123)
    assert str(T0) not in cursor
    assert ds.decode_cursor(cursor) == T0 + 123


@pytest.mark.parametrize("garbled", ["", "abc", "!!!", "dGFza2VyLXJhdy12MTp4", "é", "12345"])
def test_garbled_cursor_is_a_clear_value_error(garbled):
    with pytest.raises(ValueError, match="invalid cursor"):
        ds.decode_cursor(garbled)
