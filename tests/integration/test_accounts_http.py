"""Accounts over HTTP and the websocket of a real embedded backend (issue 14 item 7): each test
is the attack it stops. Revoked sessions, disabled users and the first password change; the
websocket of an ended session closes with 4401 and says why."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.http import ws as ws_module
from backend.services.auth import AuthService
from tests.integration.backend_rig import Api, login, running_backend, user_session

pytestmark = pytest.mark.timeout(90)

PASSWORD = "a decent passphrase"


@pytest.fixture
async def rig(embedded):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        admin = await user_session(backend, http, url, role="admin")
        yield backend, url, http, admin


async def new_user(backend, http, url, name: str, role: str = "sysadmin") -> Api:
    await backend.auth.add_user(name, role, PASSWORD)
    return await login(http, url, name, PASSWORD)


async def open_ws(api: Api) -> aiohttp.ClientWebSocketResponse:
    ws = await api.http.ws_connect(api.url.replace("http", "ws") + "/api/v1/ws", headers=api.headers)
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello"
    return ws


async def closed_by_server(ws: aiohttp.ClientWebSocketResponse, within_s: float) -> tuple[list[dict], int, float]:
    """Frames received until the server closes, the close code, and how long it took."""
    started = time.monotonic()
    frames = []
    while True:
        msg = await ws.receive(timeout=within_s)
        if msg.type == aiohttp.WSMsgType.TEXT:
            frames.append(json.loads(msg.data))
            continue
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED), msg
        return frames, ws.close_code, time.monotonic() - started


def shell_auth(embedded) -> tuple[SqliteRegistry, AuthService]:
    """What `tasker users ...` uses: its own process's view of the same registry file."""
    path = embedded.settings.registry_url.removeprefix("sqlite:///")
    registry = SqliteRegistry(path)
    return registry, AuthService(registry)


# --- revoked and disabled ---------------------------------------------------------------------------


async def test_a_revoked_session_is_refused(rig):
    backend, url, http, admin = rig
    mallory = await new_user(backend, http, url, "mallory")
    await mallory.call("GET", "/api/v1/servers", expect=200)
    _, listed = await admin.call("GET", "/api/v1/users/mallory/sessions", expect=200)
    assert len(listed["sessions"]) == 1 and listed["sessions"][0]["client"] == "127.0.0.1"
    _, ended = await admin.call("DELETE", "/api/v1/users/mallory/sessions", expect=200)
    assert ended == {"ended": 1}
    status, body = await mallory.call("GET", "/api/v1/servers")
    assert status == 401 and body["error"] == "invalid or expired token"
    _, log = await admin.call("GET", "/api/v1/audit", expect=200)
    assert (log["entries"][0]["action"], log["entries"][0]["target"]) == ("user.sessions_revoked", "mallory")


async def test_a_session_revoked_from_the_shell_stops_within_the_cache_ttl(rig, embedded):
    backend, url, http, admin = rig
    mallory = await new_user(backend, http, url, "mallory")
    await mallory.call("GET", "/api/v1/servers", expect=200)  # cached by the api process
    registry, shell = shell_auth(embedded)
    await registry.start()
    try:
        await shell.accounts.revoke_sessions("shell:ops", "mallory")
    finally:
        await registry.close()
    deadline = time.monotonic() + backend.auth._cache.ttl_s + 1
    while (await mallory.call("GET", "/api/v1/servers"))[0] != 401:
        assert time.monotonic() < deadline, "a revoked session still works past the cache TTL"
        await asyncio.sleep(0.2)


async def test_a_disabled_user_is_refused_and_its_websocket_closed_at_once(rig):
    backend, url, http, admin = rig
    mallory = await new_user(backend, http, url, "mallory")
    ws = await open_ws(mallory)
    _, answer = await admin.call("POST", "/api/v1/users/mallory/disable", expect=200)
    assert answer == {"username": "mallory", "disabled": True, "sessions_ended": 1}
    frames, code, took = await closed_by_server(ws, within_s=3)
    assert code == ws_module.CLOSE_UNAUTHORIZED and took < 2
    assert frames[-1]["type"] == "error" and frames[-1]["code"] == "unauthorized"
    assert "logged out or revoked" in frames[-1]["message"]
    assert (await mallory.call("GET", "/api/v1/servers"))[0] == 401
    async with http.post(f"{url}/api/v1/auth/login", json={"username": "mallory", "password": PASSWORD}) as r:
        assert r.status == 403 and "mallory is disabled" in (await r.json())["error"]
    async with http.post(f"{url}/api/v1/auth/login", json={"username": "mallory", "password": "wrong guess!"}) as r:
        assert r.status == 401  # only the right password learns that the account is disabled
    await admin.call("POST", "/api/v1/users/mallory/enable", expect=200)
    await login(http, url, "mallory", PASSWORD)


async def test_a_websocket_closes_when_its_user_is_disabled_from_the_shell(rig, embedded, monkeypatch):
    """Another process (here `tasker users disable`) cannot wake this one: the periodic check
    closes the socket within SESSION_CHECK_S."""
    monkeypatch.setattr(ws_module, "SESSION_CHECK_S", 0.5)
    backend, url, http, admin = rig
    mallory = await new_user(backend, http, url, "mallory")
    ws = await open_ws(mallory)
    registry, shell = shell_auth(embedded)
    await registry.start()
    try:
        await shell.accounts.disable("shell:ops", "mallory")
    finally:
        await registry.close()
    frames, code, took = await closed_by_server(ws, within_s=5)
    assert code == ws_module.CLOSE_UNAUTHORIZED and took < 2.5
    assert frames[-1]["code"] == "unauthorized"


async def test_a_logout_closes_the_websocket_of_that_session_only(rig):
    backend, url, http, admin = rig
    mallory = await new_user(backend, http, url, "mallory")
    laptop = await login(http, url, "mallory", PASSWORD)
    ws, other = await open_ws(mallory), await open_ws(laptop)
    await mallory.call("POST", "/api/v1/auth/logout", expect=204)
    frames, code, _ = await closed_by_server(ws, within_s=3)
    assert code == 4401 and "logged out" in frames[-1]["message"]
    await other.send_json({"type": "ping"})
    assert (await other.receive_json(timeout=3))["type"] == "pong"  # the laptop's session holds
    await other.close()


async def test_a_websocket_closes_when_its_session_expires(rig):
    backend, url, http, admin = rig
    backend.auth.session_ttl_ms = 1_500
    mallory = await new_user(backend, http, url, "mallory")
    ws = await open_ws(mallory)
    frames, code, took = await closed_by_server(ws, within_s=5)
    assert code == 4401 and "expired" in frames[-1]["message"] and took < 3


# --- the first password must change; weak ones are refused ------------------------------------------


async def test_a_one_time_password_opens_nothing_until_it_is_changed(rig):
    backend, url, http, admin = rig
    one_time = await backend.auth.add_user("newbie", "sysadmin")  # generated: shown once
    async with http.post(f"{url}/api/v1/auth/login", json={"username": "newbie", "password": one_time}) as r:
        answer = await r.json()
    assert answer["must_change_password"] is True and answer["password_change_reason"]
    newbie = Api(url, http, answer["token"], {"Authorization": f"Bearer {answer['token']}"})
    for method, path in (
        ("GET", "/api/v1/servers"),
        ("POST", "/api/v1/servers"),
        ("GET", "/api/v1/tasks"),
        ("GET", "/api/v1/me/sessions"),
    ):
        status, body = await newbie.call(method, path, json={})
        assert status == 403 and body["error"].startswith("password change required: newbie must choose")
    ws = await newbie.http.ws_connect(url.replace("http", "ws") + "/api/v1/ws", headers=newbie.headers)
    frames, code, _ = await closed_by_server(ws, within_s=3)
    assert code == ws_module.CLOSE_PASSWORD_CHANGE and frames[0]["code"] == "password_change_required"
    _, me = await newbie.call("GET", "/api/v1/auth/me", expect=200)
    assert me["must_change_password"] is True

    status, body = await newbie.call(
        "POST", "/api/v1/me/password", json={"current_password": "a wrong guess", "new_password": "mauve kettle orbit"}
    )
    assert status == 400 and body["details"] == [{"field": "current_password", "reason": "is not the current password"}]
    status, body = await newbie.call(
        "POST", "/api/v1/me/password", json={"current_password": one_time, "new_password": "newbie2024!"}
    )
    assert status == 400 and body["details"][0]["field"] == "new_password"
    assert "username" in body["error"]
    _, changed = await newbie.call(
        "POST",
        "/api/v1/me/password",
        json={"current_password": one_time, "new_password": "mauve kettle orbit"},
        expect=200,
    )
    assert changed == {"username": "newbie", "must_change_password": False, "other_sessions_ended": 0}
    await newbie.call("GET", "/api/v1/servers", expect=200)
    _, me = await newbie.call("GET", "/api/v1/auth/me", expect=200)
    assert me["must_change_password"] is False


@pytest.mark.parametrize(
    "weak, says",
    [
        ("password123", "common password"),
        ("        ", "only whitespace"),
        ("short1", "too short"),
        ("dana-ops", "too short"),
        ("dana-ops2024", "username"),
        ("qwertyuiop", "common"),
    ],
)
async def test_weak_passwords_are_refused_naming_what_is_wrong(rig, weak, says):
    backend, url, http, admin = rig
    dana = await new_user(backend, http, url, "dana-ops")
    status, body = await admin.call("PUT", "/api/v1/users/dana-ops/password", json={"password": weak})
    assert status == 400 and body["details"][0]["field"] == "password" and says in body["error"]
    status, body = await dana.call(
        "POST", "/api/v1/me/password", json={"current_password": PASSWORD, "new_password": weak}
    )
    assert status == 400 and says in body["error"]
    await dana.call("GET", "/api/v1/servers", expect=200)  # nothing changed, nobody logged out


async def test_an_admin_reset_ends_the_sessions_and_can_force_a_change(rig):
    backend, url, http, admin = rig
    dana = await new_user(backend, http, url, "dana")
    _, answer = await admin.call(
        "PUT",
        "/api/v1/users/dana/password",
        json={"password": "temporary passphrase", "must_change_password": True},
        expect=200,
    )
    assert answer["sessions_ended"] == 1
    assert (await dana.call("GET", "/api/v1/servers"))[0] == 401
    again = await login(http, url, "dana", "temporary passphrase")
    assert (await again.call("GET", "/api/v1/servers"))[0] == 403


# --- who may administer accounts ---------------------------------------------------------------------


async def test_only_admins_administer_other_accounts(rig):
    backend, url, http, admin = rig
    ops = await new_user(backend, http, url, "ops")
    await new_user(backend, http, url, "victim")
    for method, path in (
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users/victim/disable"),
        ("PUT", "/api/v1/users/victim/password"),
        ("DELETE", "/api/v1/users/victim?confirm=true"),
        ("GET", "/api/v1/users/victim/sessions"),
        ("DELETE", "/api/v1/users/victim/sessions"),
    ):
        status, body = await ops.call(method, path, json={"password": "mauve kettle orbit"})
        assert status == 403, (method, path, body)
    # a user manages their own sessions
    laptop = await login(http, url, "ops", PASSWORD)
    _, mine = await ops.call("GET", "/api/v1/users/ops/sessions", expect=200)
    assert sorted(s["current"] for s in mine["sessions"]) == [False, True]
    _, ended = await ops.call("DELETE", "/api/v1/me/sessions", expect=200)
    assert ended == {"ended": 1}
    assert (await laptop.call("GET", "/api/v1/servers"))[0] == 401
    await ops.call("GET", "/api/v1/servers", expect=200)


async def test_deleting_a_user_needs_confirmation_and_an_heir_for_their_servers(rig):
    backend, url, http, admin = rig
    leaver = await new_user(backend, http, url, "leaver")
    await new_user(backend, http, url, "heir")
    server = await leaver.add_server()
    await admin.call("DELETE", "/api/v1/users/leaver", expect=400)
    status, body = await admin.call("DELETE", "/api/v1/users/leaver?confirm=true")
    assert status == 409 and "owns 1 server(s)" in body["error"] and "transfer_to" in body["error"]
    _, removal = await admin.call("DELETE", "/api/v1/users/leaver?confirm=true&transfer_to=heir", expect=200)
    assert removal == {"servers_transferred": [server["name"]], "tasks_transferred": 0, "sessions_ended": 1}
    _, got = await admin.call("GET", f"/api/v1/servers/{server['id']}", expect=200)
    assert got["owner"] == "heir"
    assert (await leaver.call("GET", "/api/v1/servers"))[0] == 401
    _, users = await admin.call("GET", "/api/v1/users", expect=200)
    assert "leaver" not in [u["username"] for u in users["users"]]
    admin_name = (await admin.call("GET", "/api/v1/auth/me"))[1]["username"]
    status, body = await admin.call("POST", f"/api/v1/users/{admin_name}/disable")
    assert status == 403 and "themselves" in body["error"]
