"""An in-memory stand-in for `tasker.client.TaskerClient`, for fast TUI unit and snapshot tests.

It implements only the calls the TUI makes, with the wire shapes of docs/api.md. The must-hold Pilot
tests run against a real backend instead (see `test_against_backend.py`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from tasker.client import BackendUnavailable, NotFoundError, Unauthorized, ValidationFailed
from tasker.domain import default_carbon_intensity
from tasker.models import History, Me, Server, ServerPage
from tests.tui.fake_tasks import FakeTasks

BASE_MS = 1_795_000_000_000  # a fixed "now" for deterministic screens (2026-11-18)


def server_json(index: int, name: str, region: str, source: str, *, site: str = "", tags=(), idle=80, top=350) -> dict:
    intensity, origin = default_carbon_intensity(source, region)
    return {
        "id": f"srv_{index:010d}",
        "name": name,
        "location": {"region": region, "site": site},
        "energy_source": source,
        "carbon_intensity_g_per_kwh": intensity,
        "carbon_intensity_source": origin,
        "pue": 1.5,
        "idle_watts": idle,
        "max_watts": top,
        "cores": 32,
        "tags": list(tags),
        "created_at": "2026-11-18T00:00:00Z",
        "created_by": "alice",
        "updated_at": "2026-11-18T00:00:00Z",
    }


SAMPLE = [
    server_json(1, "web-1", "eu-west", "wind", site="Dublin", tags=["prod", "web"]),
    server_json(2, "web-2", "eu-west", "grid-mix", site="London", tags=["prod", "web"]),
    server_json(3, "db-1", "us-east", "coal", site="Ashburn", tags=["prod", "db"], idle=150, top=600),
    server_json(4, "batch-1", "eu-north", "hydro", tags=["batch"], idle=200, top=900),
    server_json(5, "ml-1", "ap-south", "gas", site="Mumbai", tags=["gpu"], idle=300, top=1400),
]


class FakeLive:
    def __init__(self, client: FakeClient) -> None:
        self.client = client
        self.queue: asyncio.Queue = asyncio.Queue()
        self.hello = {"type": "hello", "username": "alice", "role": "sysadmin", "server_time": BASE_MS}

    async def __aenter__(self) -> FakeLive:
        if self.client.down:
            raise BackendUnavailable(
                0, f"cannot reach the backend at {self.client.base_url}: connection refused", unreachable=True
            )
        self.client.lives.append(self)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self in self.client.lives:
            self.client.lives.remove(self)

    async def subscribe(self, servers="*", metrics=("power", "co2")) -> None:
        self.client.subscriptions.append((servers, list(metrics)))

    async def send(self, frame) -> None:
        self.client.sent.append(dict(frame))

    def __aiter__(self):
        return self._frames()

    async def _frames(self):
        while True:
            frame = await self.queue.get()
            if frame is None:
                raise BackendUnavailable(
                    0, f"cannot reach the backend at {self.client.base_url}: the websocket dropped", unreachable=True
                )
            yield frame


class FakeClient(FakeTasks):
    """Servers in a dict, readings in lists, tasks (see `FakeTasks`); `push()` sends frames to
    every open live connection."""

    def __init__(self, servers=SAMPLE, *, password: str = "secret", base_url: str = "http://fake:8470") -> None:
        self.base_url = base_url
        self.token: str | None = None
        self.password = password
        self.servers = {s["id"]: dict(s) for s in servers}
        self.latest: dict[str, dict] = {}
        self.raw: dict[tuple[str, str], list[tuple[int, float]]] = {}
        self.lives: list[FakeLive] = []
        self.subscriptions: list = []
        self.sent: list = []
        self.down = False
        self.calls: list[str] = []
        self.now_ms = BASE_MS
        self.init_tasks()

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable(
                0, f"cannot reach the backend at {self.base_url}: connection refused", unreachable=True
            )

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def login(self, username: str, password: str) -> dict[str, Any]:
        self._check()
        if password != self.password:
            raise Unauthorized(401, "invalid username or password")
        self.token = "tok"
        return {"token": "tok", "expires_at": BASE_MS + 3600_000, "role": "sysadmin", "username": username}

    async def logout(self) -> None:
        self.token = None

    async def me(self) -> Me:
        self._check()
        if self.token != "tok":
            raise Unauthorized(401, "session expired")
        return Me(username="alice", role="sysadmin")

    async def list_servers(self) -> dict[str, Any]:
        self._check()
        return {"servers": [dict(s) for s in self.servers.values()], "latest": self.latest}

    async def create_server(self, server) -> dict[str, Any]:
        self._check()
        self.calls.append("create")
        if server.get("max_watts", 0) < server.get("idle_watts", 0):
            raise ValidationFailed(
                400,
                "the server is invalid",
                [{"field": "max_watts", "reason": f"must be >= idle_watts ({server['idle_watts']:g})"}],
            )
        created = server_json(
            len(self.servers) + 100, server["name"], server["location"]["region"], server["energy_source"]
        )
        created.update({k: v for k, v in server.items() if k != "location"})
        created["location"] = dict(server["location"])
        self.servers[created["id"]] = created
        return created

    async def update_server(self, server_id: str, changes) -> dict[str, Any]:
        self._check()
        if server_id not in self.servers:
            raise NotFoundError(404, "no such server")
        self.servers[server_id].update(changes)
        return dict(self.servers[server_id])

    async def read_servers(self) -> ServerPage:
        return ServerPage.from_json(await self.list_servers())

    async def register_server(self, server) -> Server:
        return Server.from_json(await self.create_server(server))

    async def change_server(self, server_id: str, changes) -> Server:
        return Server.from_json(await self.update_server(server_id, changes))

    async def delete_server(self, server_id: str, *, purge: bool = False) -> None:
        self._check()
        self.servers.pop(server_id)

    async def history(self, server_id, metric, *, start=None, end=None, points=None) -> dict[str, Any]:
        self._check()
        samples = [(ts, v) for ts, v in self.raw.get((server_id, metric), []) if start <= ts < end]
        return {"metric": metric, "unit": "W", "resolution_s": 1, "points": [[ts, v, v, v] for ts, v in samples]}

    async def read_history(self, server_id, metric, *, start=None, end=None, points=None) -> History:
        return History.from_json(await self.history(server_id, metric, start=start, end=end, points=points))

    async def readings(self, server_id, metric, *, start=None, end=None, limit=100, cursor=None) -> dict[str, Any]:
        self._check()
        samples = sorted((s for s in self.raw.get((server_id, metric), []) if start <= s[0] < end), reverse=True)
        offset = int(cursor or 0)
        page = samples[offset : offset + limit]
        more = offset + limit < len(samples)
        return {
            "metric": metric,
            "unit": "W",
            "readings": [{"ts": ts, "value": v} for ts, v in page],
            "next_cursor": str(offset + limit) if more else None,
        }

    async def iter_readings(self, server_id, metric, **kwargs):
        cursor = None
        while True:
            page = await self.readings(server_id, metric, cursor=cursor, **kwargs)
            for item in page["readings"]:
                yield item
            cursor = page["next_cursor"]
            if not cursor:
                return

    def live(self, **_: Any) -> FakeLive:
        return FakeLive(self)

    # --- test controls ---

    def push(self, frame: dict) -> None:
        for live in self.lives:
            live.queue.put_nowait(frame)

    def drop(self) -> None:
        """The backend goes away: live connections end and new calls fail."""
        self.down = True
        for live in list(self.lives):
            live.queue.put_nowait(None)


def demo_fleet_client(stale_name: str = "cache-sin-1") -> FakeClient:
    """The demo's dozen servers with five minutes of deterministic readings up to BASE_MS.

    One server (`stale_name`) stopped reporting a minute before BASE_MS, so it shows as stale.
    """
    import math

    from tasker.domain import co2_g_per_h
    from tasker_tui.demo import sample_servers

    servers = []
    for index, body in enumerate(sample_servers(12)):
        server = server_json(
            index + 1,
            body["name"],
            body["location"]["region"],
            body["energy_source"],
            site=body["location"]["site"],
            tags=body["tags"],
            idle=body["idle_watts"],
            top=body["max_watts"],
        )
        server["cores"] = body["cores"]
        servers.append(server)
    client = FakeClient(servers)
    for k, server in enumerate(servers):
        last = 60 if server["name"] == stale_name else 0
        power_series, co2_series = [], []
        for i in range(300, last, -1):
            ts = BASE_MS - i * 1000
            load = 0.5 + 0.35 * math.sin(i / 40 + k) + 0.1 * math.sin(i / 7 + 2 * k)
            watts = server["idle_watts"] + (server["max_watts"] - server["idle_watts"]) * load
            power_series.append((ts, round(watts, 1)))
            co2_series.append((ts, round(co2_g_per_h(watts, server["pue"], server["carbon_intensity_g_per_kwh"]), 2)))
        client.raw[(server["id"], "power")] = power_series
        client.raw[(server["id"], "co2")] = co2_series
    return client


def live_frames(client: FakeClient, seconds_per_frame: int = 60) -> list[dict]:
    """The stored readings as websocket frames, oldest first, a minute of readings per frame
    (the backend too sends many readings per frame)."""
    by_window: dict[int, list[dict]] = {}
    for (server_id, metric), samples in client.raw.items():
        for ts, value in samples:
            window = ts // (seconds_per_frame * 1000)
            by_window.setdefault(window, []).append(
                {"server_id": server_id, "metric": metric, "ts": ts, "value": value}
            )
    return [{"type": "readings", "readings": sorted(by_window[w], key=lambda r: r["ts"])} for w in sorted(by_window)]
