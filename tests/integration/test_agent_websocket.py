"""The agent's websocket: a key scoped to a server hears that server's plan frames and nothing
else; `tasker agent` acts on a cancel at once though its poll is long, and polls when the
websocket is refused.
"""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import aiohttp
import pytest

from backend.http import ws as ws_module
from backend.services.agents import AgentSettings
from backend.services.errors import Unauthorized
from tests.integration.backend_rig import running_backend, user_session
from tests.integration.test_agent import (
    FAST_SCHEDULER,
    PY,
    agent_running,
    alive,
    submit,
    wait_task,
)

pytestmark = [pytest.mark.timeout(90)]


@asynccontextmanager
async def fleet(mode, poll_s: float):
    """A backend whose agents poll every `poll_s`, an admin, servers A and B, a key scoped to A."""
    settings = AgentSettings(lease_ttl_s=max(2.5, poll_s + 5), poll_s=poll_s, lookahead_s=60)
    async with (
        running_backend(mode, (), scheduler_settings=FAST_SCHEDULER, agent_settings=settings) as (backend, url),
        aiohttp.ClientSession() as http,
    ):
        admin = await user_session(backend, http, url, "admin")
        a = await admin.add_server(cores=8, tags=["a"])
        b = await admin.add_server(cores=8, tags=["b"])
        _, key = await backend.auth.create_ingest_key("agent", "admin", a["id"])
        yield backend, url, http, admin, a, b, key


def later() -> int:
    """A minute from now (epoch ms): planned, inside the horizon, not started while the test runs."""
    return int(time.time() * 1000) + 60_000


async def next_frame(ws, frame_type: str | None = None) -> dict:
    while True:
        frame = json.loads((await ws.receive(timeout=10)).data)
        if frame_type is None or frame["type"] == frame_type:
            return frame


async def test_a_scoped_key_hears_only_its_server_s_plan_frames(embedded) -> None:
    async with fleet(embedded, poll_s=0.2) as (backend, url, http, admin, a, b, key):
        _, unscoped = await backend.auth.create_ingest_key("any", "admin")
        async with http.ws_connect(f"{url}/api/v1/ws", headers={"Authorization": f"Bearer {unscoped}"}) as ws:
            frame = await next_frame(ws)
            assert frame["code"] == "unauthorized" and "scoped" in frame["message"]
            await ws.receive(timeout=5)
            assert ws.close_code == 4401

        async with (
            http.ws_connect(f"{url}/api/v1/ws", headers={"Authorization": f"Bearer {key}"}) as agent,
            http.ws_connect(f"{url}/api/v1/ws", headers=admin.headers) as watcher,
        ):
            hello = await next_frame(agent)
            assert (hello["type"], hello["role"], hello["server_id"]) == ("hello", "ingest", a["id"])
            refused = [
                {"type": "subscribe", "servers": [a["id"]], "metrics": ["power"]},
                {"type": "subscribe", "servers": "*"},
                {"type": "chat.join"},
                {"type": "chat.send", "client_key": "k1", "text": "hi", "conversation": "admin"},
                {"type": "agent.subscribe", "server_id": b["id"]},
            ]
            for frame in refused:
                await agent.send_json(frame)
                error = await next_frame(agent)
                assert (error["type"], error["code"]) == ("error", "forbidden"), (frame, error)
                assert error["message"]
            await agent.send_json({"type": "agent.subscribe", "server_id": a["id"]})
            assert await next_frame(agent) == {"type": "agent.subscribed", "server_id": a["id"]}

            mine = await submit(admin, [PY, "-c", "pass"], tags=["a"], duration=30, earliest_start=later())
            theirs = await submit(admin, [PY, "-c", "pass"], tags=["b"], duration=30, earliest_start=later())
            await admin.post(
                [{"server_id": a["id"], "metric": "power", "ts": int(time.time() * 1000), "value": 100.0}], token=key
            )
            await admin.add_server(cores=4)  # a registry frame, for sessions only
            for task, server in ((mine, a), (theirs, b)):
                planned = await wait_task(admin, task["id"], lambda t: t["state"] == "planned")
                assert planned["plan"]["server_id"] == server["id"]
            await admin.call("DELETE", f"/api/v1/tasks/{mine['id']}", expect=200)
            await admin.call("DELETE", f"/api/v1/tasks/{theirs['id']}", expect=200)
            # The hub pushes each plan event to every connection at once: once the session has
            # seen both cancels, the agent's frames are queued before the pong.
            cancelled = set()
            while cancelled != {mine["id"], theirs["id"]}:
                frame = await next_frame(watcher, "plan")
                if frame["event"] == "cancelled":
                    cancelled.add(frame["task"]["id"])
            await agent.send_json({"type": "ping"})
            heard = []
            while (frame := await next_frame(agent))["type"] != "pong":
                heard.append(frame)

        assert {f["type"] for f in heard} == {"plan"}, heard
        tasks = [t for f in heard for t in (f["tasks"] if "tasks" in f else [f["task"]])]
        assert all(f["server_id"] == a["id"] for f in heard)
        assert {t["id"] for t in tasks} == {mine["id"]}, "heard of another server's task"
        assert all(t["plan"]["server_id"] == a["id"] for t in tasks)
        assert [f["event"] for f in heard][-1] == "cancelled"
        assert "replanned" in [f["event"] for f in heard]


async def test_a_cancel_reaches_the_agent_long_before_its_poll(embedded, tmp_path) -> None:
    async with fleet(embedded, poll_s=30) as (_, url, _http, admin, a, _b, key):
        task = await submit(admin, [PY, "-c", "import time; time.sleep(60)"], tags=["a"], duration=40)
        async with agent_running(url, key, a["id"], tmp_path / "state") as agent:
            await wait_task(admin, task["id"], lambda t: t["state"] == "running")
            assert agent.watch is not None and agent.watch.connected
            pid = agent.procs[task["id"]].pid()
            assert pid and alive(pid)
            await admin.call("DELETE", f"/api/v1/tasks/{task['id']}", expect=200)
            cancelled_at = time.monotonic()
            while alive(pid):
                assert time.monotonic() - cancelled_at < 5, "the cancel waited for the poll"
                await asyncio.sleep(0.05)
            assert agent.stats.transport.startswith("websocket")
        _, after = await admin.call("GET", f"/api/v1/tasks/{task['id']}", expect=200)
        assert after["state"] == "cancelled"


async def test_with_the_websocket_refused_the_agent_polls(embedded, tmp_path, monkeypatch) -> None:
    async def refuse(request, ws):
        raise Unauthorized("websocket closed for this test")

    monkeypatch.setattr(ws_module, "_authenticate", refuse)
    async with fleet(embedded, poll_s=0.2) as (_, url, _http, admin, a, _b, key):
        task = await submit(admin, [PY, "-c", "print('polled')"], tags=["a"])
        async with agent_running(url, key, a["id"], tmp_path / "state") as agent:
            done = await wait_task(admin, task["id"], lambda t: t["state"] in ("done", "failed"))
            assert agent.watch is not None and not agent.watch.connected
            assert agent.stats.transport.startswith("polling") and "websocket" in agent.stats.transport
        assert done["state"] == "done" and "polled" in done["run"]["output_tail"]
