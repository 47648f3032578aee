"""The broker message encoding: round trip, compactness, and refusal of malformed bodies."""

from __future__ import annotations

import json

import pytest

from backend.ports import Undecodable
from backend.services.wire import (
    READINGS_PER_MESSAGE,
    ReadingColumns,
    decode_readings,
    encode_columns,
    encode_readings,
)
from tasker.domain import Reading


def sample(n: int) -> list[Reading]:
    return [Reading(f"srv_{i % 7:010d}", "power", 1_795_000_000_000 + i, i * 0.25) for i in range(n)]


def test_readings_survive_the_round_trip_in_order():
    readings = sample(50)
    message = decode_readings(encode_readings("power", readings, sent_ms=123))
    assert message.metric == "power"
    assert message.sent_ms == 123
    assert message.readings == readings


def test_a_full_message_is_compact():
    body = encode_readings("power", sample(READINGS_PER_MESSAGE), sent_ms=1)
    # Each server id is written once; a reading costs its index, ts and value only.
    assert len(body) / READINGS_PER_MESSAGE < 30


def test_readings_made_from_columns_are_ordinary_readings():
    readings = sample(20)
    message = decode_readings(encode_readings("power", readings, sent_ms=1))
    assert message.readings == readings
    assert [hash(r) for r in message.readings] == [hash(r) for r in readings]
    assert [repr(r) for r in message.readings] == [repr(r) for r in readings]
    with pytest.raises(AttributeError):
        message.readings[0].value = 1.0  # still frozen
    assert all(type(r.value) is float for r in decode_readings(_body(value=[1, 2, 3])).readings)


def test_merged_columns_keep_every_reading_in_order_with_one_server_table():
    readings = sample(30)
    parts = []
    for start in (0, 10, 20):
        part = ReadingColumns()
        for r in readings[start : start + 10]:
            part.append(r.server_id, r.ts_ms, r.value)
        parts.append(part)
    merged = ReadingColumns.merged(parts)
    assert len(merged.servers) == 7  # each server once, though every part named it
    assert merged.readings("power") == readings
    assert parts[0].readings("power") == readings[:10]  # the parts are left as they were


def test_huge_finite_values_pass_even_when_their_sum_overflows():
    readings = [Reading("srv_a", "power", 1_795_000_000_000 + i, 1.5e308) for i in range(3)]
    assert decode_readings(encode_readings("power", readings, sent_ms=1)).readings == readings


def test_columns_split_into_messages_each_with_its_own_server_table():
    columns = ReadingColumns()
    readings = sample(4_500)
    for r in readings:
        columns.append(r.server_id, r.ts_ms, r.value)
    pieces = columns.chunks()
    assert [len(p) for p in pieces] == [2_000, 2_000, 500]
    decoded = [r for p in pieces for r in decode_readings(encode_columns("power", p, sent_ms=1)).readings]
    assert decoded == readings
    assert columns.chunks(5_000) == [columns]


def _body(**changes):
    data = json.loads(encode_readings("power", sample(3), sent_ms=1))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (_body(v=2), "unknown message version"),
        (_body(metric="voltage"), "unknown metric"),
        (_body(sent_ms="soon"), "sent_ms"),
        (_body(ts=[1, 2]), "differ in length"),
        (_body(server=[0, 1, 99]), "out of range"),
        (_body(servers=[1, 2, 3, 4, 5, 6, 7]), "not a string"),
        (_body(ts=[1, 2, "3"]), "timestamp"),
        (_body(value=[1, 2, None]), "finite number"),
        (b'{"v":1,"metric":"power","sent_ms":1,"servers":["s"],"server":[0],"ts":[1],"value":[NaN]}', "not JSON"),
        (_body(value=[1.5, "2", 3]), "finite number"),
        (_body(ts=[1, 2.5, 3]), "timestamp"),
        (_body(server=[0, 1.0, 2]), "out of range"),
        (_body(server=[0, -1, 2]), "out of range"),
        (_body(value=None), "must be lists"),
    ],
)
def test_malformed_messages_raise_undecodable(body, reason):
    with pytest.raises(Undecodable, match=reason):
        decode_readings(body)
