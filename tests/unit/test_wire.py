"""The broker message encoding: round trip, compactness, and refusal of malformed bodies."""

from __future__ import annotations

import json

import pytest

from backend.ports import Undecodable
from backend.services.wire import READINGS_PER_MESSAGE, chunked, decode_readings, encode_readings
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


def test_batches_are_chunked_to_the_message_size():
    chunks = chunked(sample(4_500))
    assert [len(c) for c in chunks] == [2_000, 2_000, 500]


def _body(**changes):
    data = json.loads(encode_readings("power", sample(3), sent_ms=1))
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize("body, reason", [
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
    (b'{"v":1,"metric":"power","sent_ms":1,"servers":["s"],"server":[0],"ts":[1],"value":[NaN]}', "finite"),
    (_body(value=None), "must be lists"),
])
def test_malformed_messages_raise_undecodable(body, reason):
    with pytest.raises(Undecodable, match=reason):
        decode_readings(body)
