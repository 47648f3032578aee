"""The HTTP and websocket surface of the running backend (embedded mode): credentials and roles,
refused input with errors that name what was wrong, size limits, registry CRUD, probes."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from backend.http import ws as ws_module
from tests.integration.backend_rig import Api, login, running_backend, user_session

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def rig(embedded):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        admin = await user_session(backend, http, url, role="admin")
        yield backend, url, http, admin


def now_ms() -> int:
    return int(time.time() * 1000)


async def wait_stored(api: Api, server_id: str, ts: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        _, page = await api.call(
            "GET", f"/api/v1/servers/{server_id}/readings", params={"from": str(ts - 1), "to": str(ts + 1)}, expect=200
        )
        if page["readings"]:
            return
        assert time.monotonic() < deadline, "marker reading never stored"
        await asyncio.sleep(0.05)


# --- credentials and roles ------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", "/api/v1/servers"),
        ("POST", "/api/v1/servers"),
        ("POST", "/api/v1/readings"),
        ("GET", "/api/v1/servers/srv_aaaaaaaaaa/history"),
        ("GET", "/api/v1/auth/me"),
    ],
)
async def test_protected_routes_answer_401_without_valid_credentials(rig, method, path):
    _, url, http, admin = rig
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic eDp5"}):
        async with http.request(method, url + path, headers=headers, json={}) as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await response.json())["error"]


async def test_login_logout_and_me(rig):
    backend, url, http, admin = rig
    await backend.auth.add_user("dana", "sysadmin", "dana's long pass")
    session = await login(http, url, "dana", "dana's long pass")
    _, me = await session.call("GET", "/api/v1/auth/me", expect=200)
    assert (me["username"], me["role"]) == ("dana", "sysadmin") and me["expires_at"].endswith("Z")
    await session.call("POST", "/api/v1/auth/logout", expect=204)
    await session.call("GET", "/api/v1/auth/me", expect=401)


async def test_unknown_user_and_wrong_password_are_indistinguishable(rig):
    backend, url, http, admin = rig
    await backend.auth.add_user("erin", "engineer", "erin's long pass")
    answers = []
    for body in ({"username": "erin", "password": "wrong pass"}, {"username": "nobody", "password": "x"}):
        async with http.post(f"{url}/api/v1/auth/login", json=body) as response:
            answers.append((response.status, await response.json()))
    assert answers[0] == answers[1] and answers[0][0] == 401


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": {"$gt": ""}, "password": {"$gt": ""}}, "username"),
        ({"username": "admin", "password": {"$ne": "x"}}, "password"),
    ],
)
async def test_operator_injection_in_a_login_is_refused_naming_the_field(rig, body, field):
    _, url, http, admin = rig
    async with http.post(f"{url}/api/v1/auth/login", json=body) as response:
        assert response.status == 400
        assert (await response.json())["details"] == [{"field": field, "reason": "must be a string"}]


async def test_engineers_read_but_do_not_write(rig):
    backend, url, http, admin = rig
    engineer = await user_session(backend, http, url, role="engineer")
    server = await admin.add_server()
    await engineer.call("GET", "/api/v1/servers", expect=200)
    await engineer.call("GET", f"/api/v1/servers/{server['id']}/history", expect=200)
    status, body = await engineer.call("POST", "/api/v1/servers", json={"name": "x"})
    assert status == 403 and "sysadmin or admin" in body["error"]
    await engineer.call("PATCH", f"/api/v1/servers/{server['id']}", json={"cores": 2}, expect=403)
    await engineer.call("DELETE", f"/api/v1/servers/{server['id']}?confirm=true", expect=403)
    status, _ = await engineer.post([{"server_id": server["id"], "metric": "power", "ts": now_ms(), "value": 1}])
    assert status == 403


async def test_an_ingest_key_posts_readings_and_reads_the_fleet_but_writes_nothing_else(rig):
    backend, url, http, admin = rig
    server = await admin.add_server()
    _, key = await backend.auth.create_ingest_key("rack-1", "admin")
    reading = {"server_id": server["id"], "metric": "power", "ts": now_ms(), "value": 99.5}
    assert await admin.post([reading], token=key) == (202, {"accepted": 1})
    # Sensors read the fleet and each spec with their key, and can change nothing.
    _, listed = await admin.call("GET", "/api/v1/servers", token=key, expect=200)
    assert [s["id"] for s in listed["servers"]] == [server["id"]]
    await admin.call("GET", f"/api/v1/servers/{server['id']}", token=key, expect=200)
    await admin.call("DELETE", f"/api/v1/servers/{server['id']}?confirm=true", token=key, expect=401)
    await admin.call("GET", f"/api/v1/servers/{server['id']}/history?metric=power", token=key, expect=401)
    record, revoked = await backend.auth.create_ingest_key("old", "admin")
    await backend.registry.revoke_ingest_key(record.key_id, now_ms())
    status, body = await admin.post([reading], token=revoked)
    assert status == 401 and "revoked" in body["error"]


# --- readings refused ------------------------------------------------------------------------


async def test_a_bad_batch_names_every_bad_item_and_stores_nothing(rig):
    _, url, http, admin = rig
    server = (await admin.add_server())["id"]
    ts = now_ms() - 10_000
    good = {"server_id": server, "metric": "power", "ts": ts, "value": 10.0}
    status, body = await admin.post(
        [
            good,
            {"server_id": server, "metric": "power", "ts": ts + 1, "value": -5},
            {"server_id": "srv_doesnotexi", "metric": "power", "ts": ts + 2, "value": 1},
            {"server_id": server, "metric": "watts", "ts": ts + 3, "value": 1},
            {"server_id": server, "metric": "power", "ts": "2199-01-01T00:00:00Z", "value": 1},
            {"server_id": server, "metric": "power", "ts": 86_400_000, "value": 1},
            {"server_id": server, "metric": "power", "ts": ts + 6, "value": "12"},
        ]
    )
    assert status == 400
    assert [(d["index"], d["field"]) for d in body["details"]] == [
        (1, "value"),
        (2, "server_id"),
        (3, "metric"),
        (4, "ts"),
        (5, "ts"),
        (6, "value"),
    ]
    assert body["error"] == "6 of 7 readings are invalid; nothing was accepted"
    # A later valid reading gets through; the good item of the refused batch never does.
    marker = {"server_id": server, "metric": "power", "ts": ts + 100, "value": 1.0}
    assert (await admin.post([marker]))[0] == 202
    await wait_stored(admin, server, ts + 100)
    _, page = await admin.call(
        "GET", f"/api/v1/servers/{server}/readings", params={"from": str(ts - 1), "to": str(ts + 50)}, expect=200
    )
    assert page["readings"] == []


async def test_malformed_json_is_a_400_saying_so(rig):
    _, url, http, admin = rig
    async with http.post(f"{url}/api/v1/readings", data=b'{"readings": [', headers=admin.headers) as response:
        assert response.status == 400
        assert "not valid JSON" in (await response.json())["error"]


async def test_oversized_bodies_and_batches_are_413(rig):
    _, url, http, admin = rig
    server = (await admin.add_server())["id"]
    too_big = b'{"readings": [' + b" " * (5 * 1024 * 1024) + b"]}"
    async with http.post(f"{url}/api/v1/readings", data=too_big, headers=admin.headers) as response:
        assert response.status == 413
        assert "over the limit" in (await response.json())["error"]
    many = [{"server_id": server, "metric": "power", "ts": now_ms() - i, "value": 1} for i in range(10_001)]
    status, body = await admin.post(many)
    assert status == 413 and "10000" in body["error"]


async def test_a_server_registered_a_moment_ago_is_accepted_at_once(rig):
    _, url, http, admin = rig
    known = (await admin.add_server())["id"]
    assert (await admin.post([{"server_id": known, "metric": "co2", "ts": now_ms(), "value": 1}]))[0] == 202
    fresh = (await admin.add_server())["id"]
    assert (await admin.post([{"server_id": fresh, "metric": "co2", "ts": now_ms(), "value": 1}]))[0] == 202


# --- the registry ------------------------------------------------------------------------------


async def test_server_crud_with_validation_conflicts_and_purge(rig):
    _, url, http, admin = rig
    async with http.post(
        f"{url}/api/v1/servers",
        headers=admin.headers,
        json={
            "name": "db-1",
            "location": {"region": "us-east", "site": "Ashburn"},
            "energy_source": "grid-mix",
            "idle_watts": 120,
            "max_watts": 600,
            "cores": 64,
            "pue": 1.3,
        },
    ) as response:
        assert response.status == 201
        server = await response.json()
        assert response.headers["Location"] == f"/api/v1/servers/{server['id']}"
    assert server["carbon_intensity_g_per_kwh"] == 380.0 and "us-east" in server["carbon_intensity_source"]
    status, body = await admin.call("POST", "/api/v1/servers", json={**server, "name": "DB-1"})
    assert status == 409 and "DB-1" in body["error"]
    status, body = await admin.call("PATCH", f"/api/v1/servers/{server['id']}", json={"idle_watts": 700, "pue": 0.5})
    assert status == 400
    assert {d["field"] for d in body["details"]} == {"pue"}
    status, body = await admin.call("PATCH", f"/api/v1/servers/{server['id']}", json={"idle_watts": 700})
    assert body["details"] == [{"field": "max_watts", "reason": "must be >= idle_watts (700)"}]
    await admin.call("GET", "/api/v1/servers/srv_x'%20OR%201=1", expect=404)

    ts = now_ms()
    await admin.post([{"server_id": server["id"], "metric": "power", "ts": ts, "value": 5}])
    await wait_stored(admin, server["id"], ts)
    status, body = await admin.call("DELETE", f"/api/v1/servers/{server['id']}")
    assert status == 400 and "confirm=true" in body["error"]
    await admin.call("DELETE", f"/api/v1/servers/{server['id']}?confirm=true&purge=true", expect=204)
    await admin.call("GET", f"/api/v1/servers/{server['id']}", expect=404)
    _, page = await admin.call(
        "GET", f"/api/v1/servers/{server['id']}/readings", params={"from": str(ts - 1), "to": str(ts + 1)}, expect=200
    )
    assert page["readings"] == []


async def test_deleting_without_purge_keeps_the_history(rig):
    _, url, http, admin = rig
    server = (await admin.add_server())["id"]
    ts = now_ms()
    await admin.post([{"server_id": server, "metric": "power", "ts": ts, "value": 5}])
    await wait_stored(admin, server, ts)
    await admin.call("DELETE", f"/api/v1/servers/{server}?confirm=true", expect=204)
    await wait_stored(admin, server, ts)


# --- probes and errors -------------------------------------------------------------------------


async def test_probes_metrics_and_json_errors_for_unknown_routes(rig):
    backend, url, http, admin = rig
    server = (await admin.add_server())["id"]
    await admin.post([{"server_id": server, "metric": "power", "ts": now_ms(), "value": 5}])
    await admin.post([{"server_id": server, "metric": "power", "ts": 5, "value": 5}])
    async with http.get(f"{url}/healthz") as response:
        assert response.status == 200
    async with http.get(f"{url}/readyz") as response:
        assert response.status == 200
        assert (await response.json())["checks"] == {"broker": "ok", "timeseries": "ok", "registry": "ok"}
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    assert 'tasker_readings_accepted_total{metric="power"} 1' in text
    assert "tasker_readings_rejected_total 1" in text
    assert 'tasker_queue_depth{queue="readings.power"}' in text
    async with http.get(f"{url}/api/v1/nothing") as response:
        assert response.status == 404 and (await response.json())["error"]
    async with http.put(f"{url}/api/v1/servers", headers=admin.headers) as response:
        assert response.status == 405 and (await response.json())["error"]


async def test_readyz_names_what_is_down(rig):
    backend, url, http, admin = rig
    await backend.timeseries.close()  # the embedded store gone, as a broken disk would be
    async with http.get(f"{url}/readyz") as response:
        body = await response.json()
    assert response.status == 503
    assert body["checks"]["timeseries"].startswith("down:") and "timeseries unavailable" in body["error"]


# --- websocket protocol errors -------------------------------------------------------------------


async def test_websocket_refuses_bad_tokens_with_4401(rig, monkeypatch):
    _, url, http, admin = rig
    async with http.ws_connect(f"{url}/api/v1/ws", headers={"Authorization": "Bearer nope"}) as ws:
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["type"] == "error" and frame["code"] == "unauthorized"
        await ws.receive(timeout=5)
        assert ws.close_code == 4401
    monkeypatch.setattr(ws_module, "AUTH_TIMEOUT_S", 0.3)
    async with http.ws_connect(f"{url}/api/v1/ws") as ws:  # says nothing
        frame = json.loads((await ws.receive(timeout=5)).data)
        assert frame["code"] == "unauthorized"
        await ws.receive(timeout=5)
        assert ws.close_code == 4401


async def test_websocket_bad_frames_get_errors_and_the_connection_stays(rig):
    _, url, http, admin = rig
    async with http.ws_connect(f"{url}/api/v1/ws", headers=admin.headers) as ws:
        assert json.loads((await ws.receive(timeout=5)).data)["type"] == "hello"
        sent_and_codes = [
            ("not json", "bad_frame"),
            (json.dumps([1, 2]), "bad_frame"),
            (json.dumps({"type": "launch"}), "unknown_type"),
            (json.dumps({"type": "subscribe", "servers": {"$in": []}}), "bad_request"),
            (json.dumps({"type": "subscribe", "servers": "*", "metrics": ["volts"]}), "bad_request"),
        ]
        for text, code in sent_and_codes:
            await ws.send_str(text)
            frame = json.loads((await ws.receive(timeout=5)).data)
            assert (frame["type"], frame["code"]) == ("error", code), frame
        await ws.send_json({"type": "ping"})
        assert json.loads((await ws.receive(timeout=5)).data) == {"type": "pong"}
