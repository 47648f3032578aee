"""Live fan-out: each client gets exactly the readings its subscription names."""

from __future__ import annotations

import json

from backend.services.live import LiveHub, Subscription
from backend.services.wire import encode_readings
from tasker.domain import Reading


class Client:
    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.frames: list[dict] = []

    def push(self, text: str) -> None:
        self.frames.append(json.loads(text))


def body(metric: str, servers: list[str]) -> bytes:
    return encode_readings(metric, [Reading(s, metric, 1_000 + i, float(i)) for i, s in enumerate(servers)], 0)


async def test_readings_reach_only_subscribers_of_their_server_and_metric():
    hub = LiveHub()
    a_power = Client(Subscription(frozenset({"srv_a"}), frozenset({"power"})))
    everything = Client(Subscription(None, frozenset({"power", "co2"})))
    co2_only = Client(Subscription(None, frozenset({"co2"})))
    nothing = Client(Subscription())
    for client in (a_power, everything, co2_only, nothing):
        hub.add(client)
    await hub.on_readings_event(body("power", ["srv_a", "srv_b", "srv_a"]))
    assert a_power.frames == [
        {
            "type": "readings",
            "readings": [
                {"server_id": "srv_a", "metric": "power", "ts": 1000, "value": 0.0},
                {"server_id": "srv_a", "metric": "power", "ts": 1002, "value": 2.0},
            ],
        }
    ]
    assert len(everything.frames[0]["readings"]) == 3
    assert co2_only.frames == [] and nothing.frames == []


async def test_registry_events_reach_every_client_and_removed_clients_get_nothing():
    hub = LiveHub()
    stays, leaves = Client(Subscription()), Client(Subscription())
    hub.add(stays)
    hub.add(leaves)
    hub.remove(leaves)
    event = {"event": "removed", "server": {"id": "srv_a", "name": "web-1"}}
    await hub.on_registry_event(json.dumps(event).encode())
    assert stays.frames == [{"type": "registry", **event}]
    assert leaves.frames == []


async def test_malformed_events_are_ignored():
    hub = LiveHub()
    client = Client(Subscription(None))
    hub.add(client)
    await hub.on_readings_event(b"garbage")
    await hub.on_registry_event(b'{"event": "added"}')
    assert client.frames == []
