"""TaskerClient against a tiny in-test aiohttp server that speaks docs/api.md.

The fake keeps just enough state (one user, a server dict, posted readings) to check that the
client sends what the contract says and turns every kind of answer into the right result or error.
"""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web

from tasker.client import (
    BackendUnavailable,
    Conflict,
    Forbidden,
    NotFoundError,
    TaskerClient,
    Unauthorized,
    ValidationFailed,
)
from tasker.domain import Reading

TOKEN = "tok_alice"
VIEWER_TOKEN = "tok_eve"  # an engineer: may read, may not write


def _err(status: int, message: str, details=None) -> web.Response:
    return web.json_response({"error": message, "details": details or []}, status=status)


class FakeBackend:
    """The routes of docs/api.md with in-memory state; `requests` records (method, path, query, body)."""

    def __init__(self) -> None:
        self.servers: dict[str, dict] = {}
        self.readings: list[dict] = []
        self.requests: list[tuple[str, str, dict, object]] = []
        self.ready = True
        self.ws_open = True  # False: the websocket refuses every token (REST still works)
        self.ws_clients: list[web.WebSocketResponse] = []
        self.subscriptions: list[dict] = []
        self.next_id = 1

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_post("/api/v1/auth/login", self.login)
        r.add_post("/api/v1/auth/logout", self.logout)
        r.add_get("/api/v1/auth/me", self.me)
        r.add_get("/api/v1/servers", self.list_servers)
        r.add_post("/api/v1/servers", self.create_server)
        r.add_get("/api/v1/servers/{id}", self.get_server)
        r.add_patch("/api/v1/servers/{id}", self.update_server)
        r.add_delete("/api/v1/servers/{id}", self.delete_server)
        r.add_get("/api/v1/servers/{id}/history", self.history)
        r.add_get("/api/v1/servers/{id}/readings", self.raw_readings)
        r.add_post("/api/v1/readings", self.post_readings)
        r.add_get("/api/v1/ws", self.ws)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler):
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, dict(request.query), body))
        return await handler(request)

    def _role(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        return {f"Bearer {TOKEN}": "sysadmin", f"Bearer {VIEWER_TOKEN}": "engineer"}.get(auth)

    def _need(self, request: web.Request, write: bool = False) -> web.Response | None:
        role = self._role(request)
        if role is None:
            return _err(401, "missing or invalid session token")
        if write and role not in ("sysadmin", "admin"):
            return _err(403, f"role {role} may not change the registry")
        return None

    async def healthz(self, request):
        return web.json_response({"status": "ok"})

    async def readyz(self, request):
        if self.ready:
            return web.json_response({"status": "ready"})
        return _err(503, "broker is down", [{"component": "broker", "reason": "connection refused"}])

    async def login(self, request):
        body = await request.json()
        if body == {"username": "alice", "password": "s3cret"}:
            return web.json_response(
                {"token": TOKEN, "expires_at": "2099-01-01T00:00:00Z", "role": "sysadmin", "username": "alice"}
            )
        return _err(401, "unknown user or wrong password")

    async def logout(self, request):
        return self._need(request) or web.Response(status=204)

    async def me(self, request):
        return self._need(request) or web.json_response(
            {"username": "alice", "role": self._role(request), "expires_at": "2099-01-01T00:00:00Z"}
        )

    async def list_servers(self, request):
        latest = {sid: {"power": {"ts": 1, "value": 100.0}} for sid in self.servers}
        return self._need(request) or web.json_response({"servers": list(self.servers.values()), "latest": latest})

    async def create_server(self, request):
        if denied := self._need(request, write=True):
            return denied
        body = await request.json()
        if body.get("max_watts", 0) < body.get("idle_watts", 0):
            return _err(400, "invalid server: max_watts", [{"field": "max_watts", "reason": "must be >= idle_watts"}])
        if any(s["name"].lower() == body["name"].lower() for s in self.servers.values()):
            return _err(409, f"a server named {body['name']} already exists")
        server = dict(body, id=f"srv_{self.next_id:010d}")
        self.next_id += 1
        self.servers[server["id"]] = server
        await self._broadcast({"type": "registry", "event": "added", "server": server})
        return web.json_response(server, status=201)

    async def get_server(self, request):
        if denied := self._need(request):
            return denied
        server = self.servers.get(request.match_info["id"])
        return web.json_response(server) if server else _err(404, "no such server")

    async def update_server(self, request):
        if denied := self._need(request, write=True):
            return denied
        server = self.servers.get(request.match_info["id"])
        if not server:
            return _err(404, "no such server")
        server.update(await request.json())
        return web.json_response(server)

    async def delete_server(self, request):
        if denied := self._need(request, write=True):
            return denied
        if request.query.get("confirm") != "true":
            return _err(400, "deleting a server needs ?confirm=true")
        if self.servers.pop(request.match_info["id"], None) is None:
            return _err(404, "no such server")
        await self._broadcast({"type": "registry", "event": "removed", "server": {"id": request.match_info["id"]}})
        return web.Response(status=204)

    async def history(self, request):
        return self._need(request) or web.json_response(
            {"metric": request.query["metric"], "unit": "W", "resolution_s": 60, "points": [[1000, 1.0, 2.0, 3.0]]}
        )

    async def raw_readings(self, request):
        if denied := self._need(request):
            return denied
        # Three pages of two readings, newest first; the cursor is the page number.
        page = int(request.query.get("cursor") or 0)
        items = [{"ts": 6000 - 1000 * (2 * page + i), "value": float(2 * page + i)} for i in range(2)]
        return web.json_response(
            {"metric": "power", "unit": "W", "readings": items, "next_cursor": str(page + 1) if page < 2 else None}
        )

    async def post_readings(self, request):
        if request.headers.get("Authorization") != "Bearer tik_k1_secret":
            return _err(401, "invalid ingest key")
        if not self.ready:
            return _err(503, "broker unavailable")
        batch = (await request.json())["readings"]
        bad = [{"index": i, "field": "value", "reason": "must be >= 0"} for i, r in enumerate(batch) if r["value"] < 0]
        if bad:
            return _err(400, "batch rejected", bad)
        self.readings.extend(batch)
        return web.json_response({"accepted": len(batch)}, status=202)

    async def ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        if self._role(request) is None or not self.ws_open:
            await ws.send_json({"type": "error", "code": "unauthorized", "message": "token refused"})
            await ws.close(code=4401)
            return ws
        await ws.send_json({"type": "hello", "username": "alice", "role": "sysadmin", "server_time": 1})
        self.ws_clients.append(ws)
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["type"] == "subscribe":
                self.subscriptions.append(frame)
                await ws.send_json(
                    {"type": "readings", "readings": [{"server_id": "srv_x", "metric": "power", "ts": 5, "value": 1.5}]}
                )
            elif frame["type"] == "ping":
                await ws.send_json({"type": "pong"})
            else:
                await ws.send_json({"type": "error", "code": "unknown_type", "message": "unknown frame type"})
        return ws

    async def _broadcast(self, frame: dict) -> None:
        for ws in list(self.ws_clients):
            if not ws.closed:
                await ws.send_json(frame)


@pytest.fixture
async def fake():
    backend = FakeBackend()
    runner = web.AppRunner(backend.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    backend.url = f"http://127.0.0.1:{port}"
    backend.runner = runner
    yield backend
    await runner.cleanup()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SERVER = {
    "name": "web-1",
    "location": {"region": "eu-west", "site": "Dublin"},
    "energy_source": "wind",
    "pue": 1.4,
    "idle_watts": 80,
    "max_watts": 350,
    "cores": 32,
    "tags": ["prod"],
}


async def test_login_keeps_the_token_and_me_uses_it(fake):
    async with TaskerClient(fake.url) as api:
        answer = await api.login("alice", "s3cret")
        assert answer["role"] == "sysadmin"
        assert api.token == TOKEN
        assert (await api.me()).username == "alice"
        await api.logout()
        assert api.token is None
    assert fake.requests[-1][:2] == ("POST", "/api/v1/auth/logout")


async def test_wrong_password_is_unauthorized_with_the_backends_message(fake):
    async with TaskerClient(fake.url) as api:
        with pytest.raises(Unauthorized) as err:
            await api.login("alice", "nope")
    assert err.value.status == 401
    assert str(err.value) == "unknown user or wrong password"


async def test_server_crud_round_trip(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        created = await api.create_server(SERVER)
        assert created["id"].startswith("srv_")
        fleet = await api.list_servers()
        assert [s["name"] for s in fleet["servers"]] == ["web-1"]
        assert fleet["latest"][created["id"]]["power"]["value"] == 100.0
        changed = await api.update_server(created["id"], {"pue": 1.2})
        assert changed["pue"] == 1.2
        assert (await api.get_server(created["id"]))["pue"] == 1.2
        typed = await api.read_servers()
        assert [s.name for s in typed.servers] == ["web-1"]
        assert typed.latest_of(created["id"])["power"].value == 100.0
        assert (await api.find_server("WEB-1")).id == created["id"]
        assert (await api.change_server(created["id"], {"pue": 1.3})).pue == 1.3
        await api.delete_server(created["id"], purge=True)
        assert fake.requests[-1][2] == {"confirm": "true", "purge": "true"}
        with pytest.raises(NotFoundError):
            await api.get_server(created["id"])


async def test_delete_without_purge_sends_only_confirm(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        created = await api.create_server(SERVER)
        await api.delete_server(created["id"])
    assert fake.requests[-1][2] == {"confirm": "true"}


async def test_validation_failure_carries_field_details(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        with pytest.raises(ValidationFailed) as err:
            await api.create_server(dict(SERVER, idle_watts=400))
    assert err.value.details == [{"field": "max_watts", "reason": "must be >= idle_watts"}]
    assert err.value.describe() == "invalid server: max_watts must be >= idle_watts"


async def test_duplicate_name_is_a_conflict(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        await api.create_server(SERVER)
        with pytest.raises(Conflict, match="already exists"):
            await api.create_server(dict(SERVER, name="WEB-1"))


async def test_wrong_role_is_forbidden_and_no_token_unauthorized(fake):
    async with TaskerClient(fake.url, token=VIEWER_TOKEN) as api:
        with pytest.raises(Forbidden, match="may not change"):
            await api.create_server(SERVER)
        assert (await api.list_servers())["servers"] == []
    async with TaskerClient(fake.url) as api:
        with pytest.raises(Unauthorized):
            await api.list_servers()


async def test_readings_are_posted_in_wire_form_and_count_returned(fake):
    async with TaskerClient(fake.url, token="tik_k1_secret") as api:
        accepted = await api.post_readings(
            [
                Reading("srv_a", "power", 1_700_000_000_000, 120.5),
                {"server_id": "srv_a", "metric": "co2", "ts": "2026-01-01T00:00:00Z", "value": 3.0},
            ]
        )
    assert accepted == 2
    assert fake.readings[0] == {"server_id": "srv_a", "metric": "power", "ts": 1_700_000_000_000, "value": 120.5}
    assert fake.readings[1]["ts"] == "2026-01-01T00:00:00Z"


async def test_a_rejected_batch_names_each_bad_item(fake):
    async with TaskerClient(fake.url, token="tik_k1_secret") as api:
        with pytest.raises(ValidationFailed) as err:
            await api.post_readings([Reading("s", "power", 1, 5.0), Reading("s", "power", 2, -1.0)])
    assert err.value.details == [{"index": 1, "field": "value", "reason": "must be >= 0"}]
    assert err.value.describe() == "batch rejected: item 1 value must be >= 0"
    assert fake.readings == []


async def test_503_is_backend_unavailable_but_reachable(fake):
    fake.ready = False
    async with TaskerClient(fake.url, token="tik_k1_secret") as api:
        with pytest.raises(BackendUnavailable) as err:
            await api.post_readings([Reading("s", "power", 1, 5.0)])
        assert err.value.status == 503 and not err.value.unreachable
        assert fake.url in str(err.value)
        readiness = await api.readyz()
    assert readiness.ready is False
    assert readiness.body["error"].endswith("broker is down")


async def test_health_and_ready(fake):
    async with TaskerClient(fake.url) as api:
        assert await api.healthz() is True
        assert (await api.readyz()).ready is True


async def test_history_and_readings_pass_the_query(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        series = await api.history("srv_a", "power", start="-1h", points=200)
        assert series["points"] == [[1000, 1.0, 2.0, 3.0]]
        assert fake.requests[-1][2] == {"metric": "power", "from": "-1h", "points": "200"}
        everything = [r async for r in api.iter_readings("srv_a", "power", limit=2)]
    assert [r["ts"] for r in everything] == [6000, 5000, 4000, 3000, 2000, 1000]


async def test_connection_refused_names_the_url():
    url = f"http://127.0.0.1:{_free_port()}"
    async with TaskerClient(url, token=TOKEN) as api:
        with pytest.raises(BackendUnavailable) as err:
            await api.list_servers()
    assert err.value.unreachable
    assert str(err.value) == f"cannot reach the backend at {url}: connection refused"


async def test_timeout_is_backend_unavailable():
    # A listening socket that never answers: the request times out instead of hanging.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        async with TaskerClient(url, timeout=0.3) as api:
            with pytest.raises(BackendUnavailable, match="timed out"):
                await api.healthz()


async def test_a_non_json_error_body_still_gives_a_clear_error(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        with pytest.raises(NotFoundError) as err:
            await api.request("GET", "/api/v1/nothing-here")
    assert err.value.status == 404
    assert "Not Found" in str(err.value)


def test_a_bad_url_is_refused_up_front():
    with pytest.raises(ValueError, match="expected http://host:port"):
        TaskerClient("127.0.0.1:8470")


# --- websocket -----------------------------------------------------------------------------


async def test_live_says_hello_subscribes_and_yields_frames(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        async with api.live() as live:
            assert live.hello["role"] == "sysadmin"
            await live.subscribe(["srv_x"], ["power"])
            frames = aiter(live)
            first = await anext(frames)
            assert first["readings"][0]["value"] == 1.5
            await live.ping()
            assert (await anext(frames)) == {"type": "pong"}
            await live.send({"type": "bogus"})
            assert (await anext(frames))["code"] == "unknown_type"
    assert fake.subscriptions == [{"type": "subscribe", "servers": ["srv_x"], "metrics": ["power"]}]


async def test_live_receives_registry_events(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        async with api.live() as live:
            await api.create_server(SERVER)
            frame = await anext(aiter(live))
    assert frame["type"] == "registry" and frame["event"] == "added"
    assert frame["server"]["name"] == "web-1"


async def test_live_with_a_bad_token_is_unauthorized(fake):
    async with TaskerClient(fake.url, token="wrong") as api:
        with pytest.raises(Unauthorized):
            async with api.live():
                pass


async def test_live_raises_backend_unavailable_when_the_socket_drops(fake):
    async with TaskerClient(fake.url, token=TOKEN) as api:
        async with api.live() as live:
            for ws in fake.ws_clients:
                await ws.close()
            with pytest.raises(BackendUnavailable, match="websocket"):
                await asyncio.wait_for(anext(aiter(live)), 5)


async def test_live_against_a_stopped_backend_is_unavailable():
    async with TaskerClient(f"http://127.0.0.1:{_free_port()}", token=TOKEN) as api:
        with pytest.raises(BackendUnavailable, match="connection refused"):
            async with api.live():
                pass
