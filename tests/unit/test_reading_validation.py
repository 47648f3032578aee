"""Validation of posted reading batches: every rejection names index, field and reason."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.services.readings import BatchRejected, validate_batch
from tasker.domain import EARLIEST_TS_MS, MAX_FUTURE_SKEW_MS, METRICS, value_ceilings

NOW = 1_795_000_000_000
SERVERS = {"srv_aaaaaaaaaa": value_ceilings(350.0), "srv_bbbbbbbbbb": value_ceilings(0.0)}
"""One server registered with max_watts 350, one without a max_watts (0)."""


def reading(**changes):
    item = {"server_id": "srv_aaaaaaaaaa", "metric": "power", "ts": NOW - 1000, "value": 120.5}
    item.update(changes)
    return item


def rejected(items, max_readings=10_000):
    with pytest.raises(BatchRejected) as caught:
        validate_batch({"readings": items}, SERVERS, NOW, max_readings)
    return caught.value


def reasons(exc):
    return [(d.index, d.field, d.reason) for d in exc.details]


def test_a_valid_batch_comes_back_typed_and_grouped_by_metric():
    batch = validate_batch(
        {
            "readings": [
                reading(),
                reading(metric="co2", value=3),
                reading(server_id="srv_bbbbbbbbbb", ts="2026-11-18T08:53:19.5Z"),
            ]
        },
        SERVERS,
        NOW,
    )
    assert len(batch) == 3
    assert [r.server_id for r in batch.by_metric["power"]] == ["srv_aaaaaaaaaa", "srv_bbbbbbbbbb"]
    expected = datetime(2026, 11, 18, 8, 53, 19, 500_000, tzinfo=timezone.utc)
    assert batch.by_metric["power"][1].ts_ms == int(expected.timestamp() * 1000)
    assert batch.by_metric["co2"][0].value == 3.0 and isinstance(batch.by_metric["co2"][0].value, float)


def test_rfc3339_with_an_offset_and_integral_floats_are_accepted():
    batch = validate_batch(
        {"readings": [reading(ts="2026-11-18T10:53:19+02:00"), reading(ts=float(NOW))]}, SERVERS, NOW
    )
    expected = datetime(2026, 11, 18, 8, 53, 19, tzinfo=timezone.utc)
    assert [r.ts_ms for r in batch.by_metric["power"]] == [int(expected.timestamp() * 1000), NOW]


@pytest.mark.parametrize(
    "changes, field, reason_part",
    [
        ({"server_id": "srv_unknown000"}, "server_id", "unknown server"),
        ({"server_id": 42}, "server_id", "must be a string"),
        ({"server_id": {"$gt": ""}}, "server_id", "must be a string"),
        ({"server_id": "x'; DROP TABLE readings; --"}, "server_id", "unknown server"),
        ({"metric": "voltage"}, "metric", "unknown metric 'voltage'"),
        ({"metric": ["power"]}, "metric", "must be a string"),
        ({"value": "12"}, "value", "must be a number"),
        ({"value": True}, "value", "must be a number"),
        ({"value": None}, "value", "must be a number"),
        ({"value": -0.5}, "value", "must be >= 0 for power (W)"),
        ({"metric": "co2", "value": -1}, "value", "must be >= 0 for co2 (g/h)"),
        ({"ts": EARLIEST_TS_MS - 1}, "ts", "before 2000-01-01"),
        ({"ts": 0}, "ts", "before 2000-01-01"),
        ({"ts": NOW + MAX_FUTURE_SKEW_MS + 1}, "ts", "in the future"),
        ({"ts": "2026-11-18T08:53:19"}, "ts", "lacks a zone"),
        ({"ts": "yesterday"}, "ts", "not an RFC 3339 timestamp"),
        ({"ts": 1.5e12 + 0.5}, "ts", "whole epoch milliseconds"),
        ({"ts": True}, "ts", "epoch milliseconds"),
        ({"ts": {"$gt": 0}}, "ts", "epoch milliseconds"),
    ],
)
def test_each_bad_field_is_named_with_its_reason(changes, field, reason_part):
    exc = rejected([reading(), reading(**changes)])
    assert exc.status == 400
    assert len(exc.details) == 1
    detail = exc.details[0]
    assert (detail.index, detail.field) == (1, field)
    assert reason_part in detail.reason


def test_the_future_edge_is_inclusive():
    batch = validate_batch({"readings": [reading(ts=NOW + MAX_FUTURE_SKEW_MS)]}, SERVERS, NOW)
    assert len(batch) == 1


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinities_sent_as_json_literals_are_refused(literal):
    # Python's json (like many senders) reads these non-standard literals; they must not pass.
    body = json.loads(
        f'{{"readings": [{{"server_id": "srv_aaaaaaaaaa", "metric": "power", "ts": {NOW}, "value": {literal}}}]}}'
    )
    with pytest.raises(BatchRejected) as caught:
        validate_batch(body, SERVERS, NOW)
    assert reasons(caught.value) == [(0, "value", "must be finite")]


def test_missing_fields_are_each_named():
    exc = rejected([{"value": 1}])
    assert sorted(d.field for d in exc.details) == ["metric", "server_id", "ts"]
    assert all(d.reason == "is required" for d in exc.details)


def test_every_bad_item_of_a_batch_is_named_and_nothing_is_returned():
    exc = rejected(
        [reading(), "not an object", reading(value=float("nan")), reading(ts=NOW - 2000), reading(metric="x")]
    )
    assert [(d.index, d.field) for d in exc.details] == [(1, "reading"), (2, "value"), (4, "metric")]
    assert "3 of 5 readings are invalid; nothing was accepted" == str(exc)


@pytest.mark.parametrize(
    "body, field",
    [
        ([], "readings"),
        ({"readings": {"server_id": "srv_aaaaaaaaaa"}}, "readings"),
        ({"data": []}, "readings"),
        ("readings", "readings"),
    ],
)
def test_a_body_without_a_readings_list_is_refused(body, field):
    with pytest.raises(BatchRejected) as caught:
        validate_batch(body, SERVERS, NOW)
    assert caught.value.status == 400
    assert caught.value.details[0].field == field


def test_a_batch_over_the_limit_is_413():
    exc = rejected([reading(ts=NOW - i) for i in range(11)], max_readings=10)
    assert exc.status == 413
    assert "over the limit of 10" in str(exc)


def test_the_error_json_has_index_field_reason():
    exc = rejected([reading(value=-3)])
    assert exc.details[0].as_json() == {"index": 0, "field": "value", "reason": "must be >= 0 for power (W)"}


@pytest.mark.parametrize("value", [1e308, 3.5e38, 1e10])
def test_a_value_no_store_could_hold_is_refused_naming_the_ceiling(value):
    # 1e308 W was accepted, then refused by Cassandra's 32-bit float column after the 202.
    exc = rejected([reading(), reading(server_id="srv_bbbbbbbbbb", value=value)])
    assert reasons(exc) == [(1, "value", "must be <= 1e+07 W for power on this server")]
    assert "nothing was accepted" in str(exc)


def test_power_above_ten_times_the_servers_max_watts_is_refused():
    assert len(validate_batch({"readings": [reading(value=3500.0)]}, SERVERS, NOW)) == 1
    exc = rejected([reading(value=3500.5), reading(metric="co2", value=3500.5)])
    assert reasons(exc) == [(0, "value", "must be <= 3500 W for power on this server (10 x its max_watts)")]


def test_co2_has_an_absolute_ceiling():
    exc = rejected([reading(metric="co2", value=1.5e9)])
    assert reasons(exc) == [(0, "value", "must be <= 1e+09 g/h for co2 on this server")]


def test_every_ceiling_fits_a_32_bit_float_with_room_for_sums():
    float32_max = 3.4028234663852886e38
    for metric in METRICS.values():
        # a year of one reading a second summed in a rollup stays far from overflow
        assert metric.maximum * 366 * 86_400 < float32_max


@given(
    value=st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400),
    metric=st.sampled_from(sorted(METRICS)),
    server=st.sampled_from(sorted(SERVERS)),
    as_text=st.booleans(),
)
def test_a_value_is_accepted_exactly_when_it_lies_in_its_metrics_domain(value, metric, server, as_text):
    # as_text sends ts as RFC 3339, which takes the slow path: both paths must agree.
    ts = datetime.fromtimestamp((NOW - 1000) / 1000, tz=timezone.utc).isoformat() if as_text else NOW - 1000
    ceiling = SERVERS[server][metric]
    try:
        in_domain = math.isfinite(value) and METRICS[metric].minimum <= value <= ceiling
    except OverflowError:  # an integer beyond any float
        in_domain = False
    body = {"readings": [reading(server_id=server, metric=metric, ts=ts, value=value)]}
    if in_domain:
        stored = validate_batch(body, SERVERS, NOW).by_metric[metric][0].value
        assert stored == float(value) and math.isfinite(stored)
    else:
        with pytest.raises(BatchRejected) as caught:
            validate_batch(body, SERVERS, NOW)
        assert [(d.index, d.field) for d in caught.value.details] == [(0, "value")]


def test_a_batch_that_repeats_a_reading_is_refused_naming_both():
    # It used to be counted as two accepted readings and stored as one.
    exc = rejected(
        [
            reading(),
            reading(metric="co2"),
            reading(value=99.0),
            reading(ts=datetime.fromtimestamp((NOW - 1000) / 1000, tz=timezone.utc).isoformat()),
        ]
    )
    assert reasons(exc) == [
        (2, "ts", "repeats reading 0 (same server, metric and ts)"),
        (3, "ts", "repeats reading 0 (same server, metric and ts)"),
    ]
