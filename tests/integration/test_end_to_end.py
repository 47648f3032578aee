"""End to end over the running backend, embedded and over RabbitMQ + Cassandra + FerretDB:
readings posted in batches come back exactly once through raw paging and history, rollups agree
with the raw readings, and live readings and registry changes reach websocket subscribers."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from tests.integration.backend_rig import (
    Expected,
    assert_exactly_once,
    assert_history_matches,
    make_readings,
    running_backend,
    user_session,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(180)

HOUR_MS = 3_600_000


def hour_aligned_start(hours_ago: int) -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR_MS - hours_ago * HOUR_MS


async def test_batches_are_stored_exactly_once_and_history_agrees_with_raw(mode):
    start = hour_aligned_start(6)
    end = start + 5 * HOUR_MS
    async with running_backend(mode) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(2)]
        # 1,200 readings per server, 12 s apart: 4 hours, crossing minute and hour boundaries.
        readings = make_readings(servers, start, 1_200, 12_000, seed=7)
        expected = Expected()
        expected.add(readings)
        batches = [readings[i : i + 300] for i in range(0, len(readings), 300)]
        # A few batches go twice, as a sensor retrying after a timeout would send them.
        for results in await asyncio.gather(*(api.post(b) for b in batches + batches[:2])):
            assert results == (202, {"accepted": 300})

        found = await wait_until_stored(api, expected, start, end)
        assert_exactly_once(found, expected)
        assert expected.total == 2_400

        for server_id in servers:
            for metric in ("power", "co2"):
                series = expected.series[(server_id, metric)]
                hourly = await api.history(server_id, metric, start, end, points=5)
                assert hourly["resolution_s"] == 3600 and hourly["unit"] == ("W" if metric == "power" else "g/h")
                assert_history_matches(hourly, series)
                by_minute = await api.history(server_id, metric, start, end, points=300)
                assert by_minute["resolution_s"] == 60
                assert_history_matches(by_minute, series)
                # Fewer points than minutes: the server merges minute rollups into wider buckets.
                merged = await api.history(server_id, metric, start, end, points=100)
                assert merged["resolution_s"] == 180 and len(merged["points"]) <= 100
                assert_history_matches(merged, series)

        # The fleet view shows each server's newest reading.
        _, fleet = await api.call("GET", "/api/v1/servers", expect=200)
        for server_id in servers:
            newest = max(expected.series[(server_id, "power")].items())
            assert fleet["latest"][server_id]["power"] == {"ts": newest[0], "value": newest[1]}


async def next_frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = 15.0, skip: tuple[str, ...] = ()) -> dict:
    """The next frame, passing over frames of the types in `skip`."""
    while True:
        msg = await ws.receive(timeout=timeout)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        frame = json.loads(msg.data)
        if frame.get("type") not in skip:
            return frame


async def test_a_posted_reading_reaches_a_websocket_subscriber(mode):
    async with running_backend(mode) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url, role="engineer")
        writer = await user_session(backend, http, url, role="sysadmin")
        watched, other = (await writer.add_server())["id"], (await writer.add_server())["id"]
        async with http.ws_connect(f"{url}/api/v1/ws", headers=api.headers) as ws:
            hello = await next_frame(ws)
            assert hello["type"] == "hello" and hello["role"] == "engineer"
            await ws.send_json({"type": "subscribe", "servers": [watched], "metrics": ["power"]})
            await ws.send_json({"type": "ping"})
            assert await next_frame(ws) == {"type": "pong"}

            now = int(time.time() * 1000)
            # Posted first, so if filtering failed it would arrive first.
            await writer.post(
                [
                    {"server_id": other, "metric": "power", "ts": now, "value": 1.0},
                    {"server_id": watched, "metric": "co2", "ts": now, "value": 2.0},
                ]
            )
            status, _ = await writer.post([{"server_id": watched, "metric": "power", "ts": now, "value": 212.5}])
            assert status == 202
            # The servers' "added" events cross RabbitMQ and may come after the subscription.
            frame = await next_frame(ws, skip=("registry",))
            assert frame == {
                "type": "readings",
                "readings": [{"server_id": watched, "metric": "power", "ts": now, "value": 212.5}],
            }


async def test_registry_changes_reach_every_websocket_client(mode):
    async with running_backend(mode) as (backend, url), aiohttp.ClientSession() as http:
        writer = await user_session(backend, http, url)
        reader = await user_session(backend, http, url, role="engineer")
        # This client authenticates with its first frame instead of a header.
        async with http.ws_connect(f"{url}/api/v1/ws") as ws:
            await ws.send_json({"type": "auth", "token": reader.token})
            assert (await next_frame(ws))["type"] == "hello"
            server = await writer.add_server(name="ws-watch-1")
            frame = await next_frame(ws)
            assert frame == {"type": "registry", "event": "added", "server": server}
            _, updated = await writer.call("PATCH", f"/api/v1/servers/{server['id']}", json={"cores": 64}, expect=200)
            assert await next_frame(ws) == {"type": "registry", "event": "updated", "server": updated}
            await writer.call("DELETE", f"/api/v1/servers/{server['id']}?confirm=true", expect=204)
            removed = await next_frame(ws)
            assert (removed["event"], removed["server"]["id"]) == ("removed", server["id"])
