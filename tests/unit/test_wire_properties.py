"""Properties of the broker messages' wire format over readings hypothesis makes up: what is
encoded decodes to the same readings in the same order, however it is split and merged; and
whatever bytes arrive, decoding gives readings or Undecodable, never another exception (which
would stop a consumer instead of dead-lettering the message)."""

from __future__ import annotations

import math

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.ports import Undecodable
from backend.services.wire import (
    ReadingColumns,
    decode_readings,
    encode_columns,
    encode_readings,
)
from tasker.domain import METRICS, Reading

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

server_ids = st.sampled_from(["srv_aaaaaaaaaa", "srv_bbbbbbbbbb"]) | st.text(max_size=20)
stamps = st.integers(-(2**63), 2**63 - 1)
values = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def batches(draw) -> tuple[str, list[Reading]]:
    metric = draw(st.sampled_from(sorted(METRICS)))
    rows = draw(st.lists(st.tuples(server_ids, stamps, values), max_size=60))
    return metric, [Reading(s, metric, t, v) for s, t, v in rows]


@PROPERTY
@given(batches(), st.integers(0, 2**53))
def test_readings_come_back_as_sent(batch, sent_ms):
    metric, readings = batch
    message = decode_readings(encode_readings(metric, readings, sent_ms))
    assert (message.metric, message.sent_ms) == (metric, sent_ms)
    assert message.readings == readings


@PROPERTY
@given(batches(), st.integers(1, 25))
def test_split_into_messages_and_merged_again_the_readings_are_the_same(batch, size):
    metric, readings = batch
    columns = ReadingColumns()
    for r in readings:
        columns.append(r.server_id, r.ts_ms, r.value)
    pieces = columns.chunks(size)
    assert all(len(p) <= size for p in pieces)
    # Each message's server table holds the servers it carries, each once.
    assert all(
        sorted(set(p.servers)) == sorted(p.servers) == sorted({p.servers[i] for i in p.server})
        for p in pieces
        if len(p)
    )
    decoded = [r for p in pieces for r in decode_readings(encode_columns(metric, p, 0)).readings]
    assert decoded == readings
    assert ReadingColumns.merged(pieces).readings(metric) == readings


@PROPERTY
@given(st.binary(max_size=300))
def test_any_bytes_decode_to_readings_or_undecodable(body):
    try:
        decode_readings(body)
    except Undecodable:
        pass


json_scalars = st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8)
any_column = st.lists(json_scalars | st.lists(json_scalars, max_size=2), max_size=5)


@st.composite
def near_messages(draw) -> dict:
    """Messages one field or column off a well-formed one."""
    n = draw(st.integers(0, 5))
    message = {
        "v": 1,
        "metric": draw(st.sampled_from(sorted(METRICS))),
        "sent_ms": draw(st.integers(0, 2**53)),
        "servers": draw(st.lists(st.text(max_size=5), min_size=1, max_size=3)),
        "server": [0] * n,
        "ts": draw(st.lists(stamps, min_size=n, max_size=n)),
        "value": draw(st.lists(values, min_size=n, max_size=n)),
    }
    broken = draw(st.sampled_from(["v", "metric", "sent_ms", "servers", "server", "ts", "value", None]))
    if broken is not None:
        message[broken] = draw(any_column | json_scalars)
    return message


@PROPERTY
@given(near_messages())
def test_a_malformed_message_is_undecodable_or_gives_well_formed_readings(message):
    try:
        decoded = decode_readings(orjson.dumps(message))
    except Undecodable:
        return
    for r in decoded.readings:
        assert isinstance(r.server_id, str) and r.metric == decoded.metric
        # JSON true and false count as 1 and 0 here: checking each item's type would cost the
        # decoder of every message, and only a foreign producer could send them.
        assert isinstance(r.ts_ms, int)
        assert isinstance(r.value, float) and math.isfinite(r.value)
