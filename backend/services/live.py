"""Live fan-out: readings stored by any packager, and registry changes, pushed to the websocket
clients of this process that asked for them.

The hub knows clients only as `LiveClient`s (a subscription and a non-blocking `push`), so the
HTTP layer owns sockets and their bounded outboxes and this stays testable without a network.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Protocol

from backend.json_text import dumps
from backend.ports import Undecodable
from backend.services.plan_feed import PLAN_FEED, is_agent, plan_frame
from backend.services.wire import decode_readings
from tasker.domain import METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Subscription:
    """Which readings a client wants: some servers (None = every server) and some metrics."""

    servers: frozenset[str] | None = frozenset()
    metrics: frozenset[str] = frozenset(METRICS)

    def wants(self, server_id: str, metric: str) -> bool:
        return metric in self.metrics and (self.servers is None or server_id in self.servers)


class LiveClient(Protocol):
    subscription: Subscription

    def push(self, text: str) -> None:
        """Queue a text frame without waiting; a client that reads too slowly loses frames."""


def _is_agent(client: LiveClient) -> bool:
    """An agent's key hears only its server's plan frames (see plan_feed), nothing else."""
    return is_agent(getattr(client, "principal", None))


class LiveHub:
    """The websocket clients of this process, and the frames each one should get."""

    def __init__(self) -> None:
        self.clients: set[LiveClient] = set()

    def add(self, client: LiveClient) -> None:
        self.clients.add(client)

    def remove(self, client: LiveClient) -> None:
        self.clients.discard(client)

    async def on_readings_event(self, body: bytes) -> None:
        """A stored message from the live channel: each client gets the readings it watches."""
        if not self.clients:
            return
        try:
            message = decode_readings(body)
        except Undecodable as exc:
            log.warning("ignored an undecodable live event: %s", exc)
            return
        frames: dict[Subscription, str | None] = {}
        for client in list(self.clients):
            sub = client.subscription
            if sub not in frames:
                picked = [
                    {"server_id": r.server_id, "metric": r.metric, "ts": r.ts_ms, "value": r.value}
                    for r in message.readings
                    if sub.wants(r.server_id, r.metric)
                ]
                frames[sub] = dumps({"type": "readings", "readings": picked}) if picked else None
            text = frames[sub]
            if text is not None:
                client.push(text)

    async def on_registry_event(self, body: bytes) -> None:
        """A server added/updated/removed anywhere: every client hears of it."""
        if not self.clients:
            return
        try:
            event = json.loads(body)
            frame = {"type": "registry", "event": event["event"], "server": event["server"]}
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed registry event: %r", exc)
            return
        text = dumps(frame)
        for client in list(self.clients):
            if not _is_agent(client):
                client.push(text)

    async def on_plan_event(self, body: bytes) -> None:
        """A task submitted or cancelled, or a new plan, anywhere: each client hears of the
        tasks it may see as a `plan` frame (a sysadmin only of their own tasks; a connection that
        sent `agent.subscribe` only of that server's)."""
        if not self.clients:
            return
        try:
            event = json.loads(body)
            if not isinstance(event, dict) or not isinstance(event.get("event"), str):
                raise ValueError("no event name")
            tasks = event["tasks"] if "tasks" in event else [event["task"]]
            owners = [t["owner"] for t in tasks]
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed plan event: %r", exc)
            return
        everything = dumps({"type": "plan", **event})
        for client in list(self.clients):
            principal = getattr(client, "principal", None)
            visible = (
                tasks
                if principal is None or principal.role != "sysadmin"
                else [t for t, owner in zip(tasks, owners) if owner == principal.name]
            )
            feed = getattr(client, "extensions", {}).get(PLAN_FEED)
            if feed is not None or _is_agent(client):
                frame = None if feed is None else plan_frame(event, visible, feed)
            elif visible is tasks:
                client.push(everything)
                continue
            else:
                frame = (
                    {"type": "plan", **event, **({"tasks": visible} if "tasks" in event else {})} if visible else None
                )
            if frame is not None:
                client.push(dumps(frame))

    def broadcast(self, text: str) -> None:
        """Push a prepared frame to every client (used by other websocket features)."""
        for client in list(self.clients):
            if not _is_agent(client):
                client.push(text)
