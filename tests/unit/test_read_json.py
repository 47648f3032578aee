"""Request bodies are decoded with orjson, and read exactly as the standard library reads them:
the same values, the same non-standard literals (which validation then names per item) and the
same error messages."""

from __future__ import annotations

import json
import math

import pytest

from backend.http.errors import read_json
from backend.services.errors import InvalidField


class Body:
    """The one thing read_json asks of an aiohttp request."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    async def read(self) -> bytes:
        return self.raw


async def reason(raw: bytes) -> str:
    with pytest.raises(InvalidField) as caught:
        await read_json(Body(raw))  # type: ignore[arg-type]
    assert caught.value.field == "body"
    return caught.value.reason


@pytest.mark.parametrize(
    "raw",
    [
        b'{"readings": [{"server_id": "srv_aaaaaaaaaa", "metric": "power", "ts": 1795000000000, "value": 212.5}]}',
        b'[1, -2.5e3, "caf\\u00e9", "\xc3\xa9", null, true, {"a": {}}]',
        '{"name": "utf-16"}'.encode("utf-16"),
    ],
)
async def test_bodies_read_as_the_standard_library_reads_them(raw):
    assert await read_json(Body(raw)) == json.loads(raw)  # type: ignore[arg-type]


async def test_integers_beyond_64_bits_come_back_as_numbers_of_their_size():
    # orjson reads them as floats where json gave ints; validation refuses either as a timestamp
    # (beyond year 9999) and reads either as a value.
    body = await read_json(Body(b'{"ts": 123456789012345678901234567890}'))  # type: ignore[arg-type]
    assert body["ts"] == pytest.approx(1.2345678901234568e29)


async def test_nan_and_infinity_literals_still_reach_validation():
    body = await read_json(Body(b'{"value": NaN, "other": -Infinity}'))  # type: ignore[arg-type]
    assert math.isnan(body["value"]) and body["other"] == -math.inf


async def test_bad_bodies_are_named_with_the_same_messages():
    assert await reason(b"") == "is empty; expected JSON"
    assert await reason(b'{"readings": [') == "is not valid JSON (Expecting value: line 1 column 15 (char 14))"
    assert await reason(b'{"a": 1} trailing') == "is not valid JSON (Extra data: line 1 column 10 (char 9))"
    assert await reason(b'{"name": "\xff"}') == "is not UTF-8 text"
