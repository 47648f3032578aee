"""An agent's connection hears plan events of its server only; a task that leaves it is told as
a stub that does not say where it went."""

from __future__ import annotations

import json

from backend.services.auth import INGEST_ROLE, Principal
from backend.services.live import LiveHub, Subscription
from backend.services.plan_feed import PLAN_FEED, PlanFeed


class AgentClient:
    def __init__(self, server_id: str, subscribed: bool = True) -> None:
        self.principal = Principal("key:abc", INGEST_ROLE, server_id=server_id)
        self.subscription = Subscription()
        self.extensions = {PLAN_FEED: PlanFeed(server_id)} if subscribed else {}
        self.frames: list[dict] = []

    def push(self, text: str) -> None:
        self.frames.append(json.loads(text))


def task(task_id: str, server_id: str | None, state: str = "planned") -> dict:
    return {
        "id": task_id,
        "owner": "alice",
        "state": state,
        "plan": None if server_id is None else {"server_id": server_id},
    }


def event(name: str, *tasks: dict) -> bytes:
    return json.dumps({"event": name, "epoch": 3, "tasks": list(tasks)}).encode()


async def test_an_agent_hears_its_server_s_tasks_and_a_stub_when_one_leaves():
    hub = LiveHub()
    agent, unsubscribed = AgentClient("srv_a"), AgentClient("srv_a", subscribed=False)
    hub.add(agent)
    hub.add(unsubscribed)
    await hub.on_plan_event(event("replanned", task("t1", "srv_a"), task("t2", "srv_b")))
    await hub.on_plan_event(event("replanned", task("t2", "srv_a"), task("t1", "srv_b")))
    await hub.on_plan_event(event("requeued", task("t2", None, "queued")))
    await hub.on_plan_event(event("replanned", task("t1", "srv_b")))
    await hub.on_registry_event(json.dumps({"event": "added", "server": {"id": "srv_c"}}).encode())
    assert [(f["event"], f["server_id"], f["tasks"]) for f in agent.frames] == [
        ("replanned", "srv_a", [task("t1", "srv_a")]),
        ("replanned", "srv_a", [task("t2", "srv_a"), {"id": "t1", "state": "planned", "elsewhere": True}]),
        ("requeued", "srv_a", [{"id": "t2", "state": "queued", "elsewhere": True}]),
    ]
    assert unsubscribed.frames == []
