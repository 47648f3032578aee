"""Every JSON body and websocket frame is JSON: NaN and Infinity are written as null.

The attack: one reading of 1e308 W made an hourly rollup Infinity, history answered `Infinity`
(not JSON) and every client reading that history failed to parse it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from backend.http.json_body import json_response
from backend.json_text import dumps
from backend.services.live import LiveHub, Subscription

ROOT = Path(__file__).resolve().parents[2]


def strict_loads(text: str):
    """A parser that refuses NaN and Infinity, as browsers and most JSON libraries do."""

    def refuse(constant: str):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_floats_are_written_as_null_at_any_depth():
    history = {
        "resolution_s": 60,
        "points": [[1, math.nan, math.inf, -math.inf], [2, 1e308, 0.0, 1e-300]],
        "unit": "W",
        "nested": ({"x": math.nan},),
    }
    parsed = strict_loads(dumps(history))
    assert parsed["points"] == [[1, None, None, None], [2, 1e308, 0.0, 1e-300]]
    assert parsed["nested"] == [{"x": None}]


def test_json_that_needs_no_repair_is_written_unchanged():
    body = {"name": "web-1", "tags": ["a", "b"], "n": 3, "ok": True, "none": None}
    assert strict_loads(dumps(body)) == body


def test_an_http_body_with_infinity_is_strict_json():
    response = json_response({"points": [[0, math.inf, math.nan, 1.0]]}, status=200)
    assert response.content_type == "application/json"
    assert strict_loads(response.text) == {"points": [[0, None, None, 1.0]]}


class Client:
    subscription = Subscription(None)

    def __init__(self) -> None:
        self.texts: list[str] = []

    def push(self, text: str) -> None:
        self.texts.append(text)


async def test_a_registry_event_holding_nan_reaches_websockets_as_strict_json():
    hub = LiveHub()
    client = Client()
    hub.add(client)
    # The broker event is parsed with Python's lenient json, which accepts NaN.
    await hub.on_registry_event(b'{"event":"updated","server":{"id":"srv_a","pue":NaN,"max_watts":Infinity}}')
    assert [strict_loads(t) for t in client.texts] == [
        {"type": "registry", "event": "updated", "server": {"id": "srv_a", "pue": None, "max_watts": None}}
    ]


WRITERS = re.compile(r"\bweb\.json_response\(|\bjson\.dumps\(|\borjson\.dumps\(")


@pytest.mark.parametrize(
    "path",
    sorted(
        [*(ROOT / "backend" / "http").glob("*.py"), ROOT / "backend" / "services" / "live.py"],
        key=str,
    ),
    ids=lambda p: p.name,
)
def test_api_bodies_and_frames_are_written_only_by_the_one_serialiser(path):
    if path.name == "json_body.py":
        return
    found = [line.strip() for line in path.read_text().splitlines() if WRITERS.search(line)]
    assert not found, (
        f"{path.relative_to(ROOT)} writes JSON itself; use backend.http.json_body.json_response "
        f"(HTTP) or backend.json_text.dumps (frames), which never emit NaN/Infinity: {found}"
    )
