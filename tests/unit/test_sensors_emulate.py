"""The emulator's moving parts without a real backend: following the registry (websocket events,
polling fallback, outages), ticks on the interval grid, a synthetic fleet."""

from __future__ import annotations

import asyncio

import pytest

from sensors.emulate import FleetEmulator
from sensors.model import ServerSpec
from sensors.registry import RegistryFollower, RegistryRefused
from sensors.sender import sensor_backoff
from sensors.synthetic import create_fleet, synthetic_servers
from tasker.client import TaskerClient
from tasker.domain import ENERGY_SOURCES, REGIONS
from tests.unit.test_client import SERVER, TOKEN
from tests.unit.virtual_clock import VirtualClock

FAST = sensor_backoff(0.01, 0.05)


async def until(predicate, timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


async def test_follower_sees_adds_and_removals_at_once_over_the_websocket(fake):
    async with TaskerClient(fake.url, TOKEN) as api:
        first = await api.create_server(SERVER)
        follower = RegistryFollower(api, poll_s=60, backoff=FAST)  # polling would be far too slow
        task = asyncio.create_task(follower.run())
        await asyncio.wait_for(follower.loaded.wait(), 3)
        assert set(follower.specs) == {first["id"]} and follower.mode == "websocket"
        second = await api.create_server(dict(SERVER, name="web-2", idle_watts=10, max_watts=20))
        await until(lambda: second["id"] in follower.specs, timeout=1.0)
        assert follower.specs[second["id"]].max_watts == 20
        await api.delete_server(first["id"])
        await until(lambda: first["id"] not in follower.specs, timeout=1.0)
        task.cancel()


async def test_follower_polls_when_the_websocket_refuses(fake):
    fake.ws_open = False
    async with TaskerClient(fake.url, TOKEN) as api:
        follower = RegistryFollower(api, poll_s=0.1, backoff=FAST)
        task = asyncio.create_task(follower.run())
        await asyncio.wait_for(follower.loaded.wait(), 3)
        assert follower.specs == {}
        created = await api.create_server(SERVER)
        await until(lambda: created["id"] in follower.specs, timeout=1.0)
        assert follower.mode == "polling"
        task.cancel()


async def test_follower_with_credentials_that_cannot_read_the_registry_stops_with_advice(fake):
    async with TaskerClient(fake.url, "tik_k1_secret") as api:
        with pytest.raises(RegistryRefused, match="tasker login"):
            await asyncio.wait_for(RegistryFollower(api, backoff=FAST).run(), 3)


async def test_follower_keeps_the_last_fleet_when_its_session_stops_working(fake):
    async with TaskerClient(fake.url, TOKEN) as api:
        await api.create_server(SERVER)
        follower = RegistryFollower(api, poll_s=0.05, use_websocket=False, backoff=FAST)
        task = asyncio.create_task(follower.run())
        await asyncio.wait_for(follower.loaded.wait(), 3)
        api.token = "expired"
        await until(lambda: follower.mode == "refused")
        assert len(follower.specs) == 1 and not task.done()
        assert "tasker login" in follower.last_error
        task.cancel()


async def test_follower_keeps_the_last_fleet_through_an_outage(fake):
    async with TaskerClient(fake.url, TOKEN) as api:
        await api.create_server(SERVER)
        follower = RegistryFollower(api, poll_s=0.05, use_websocket=False, backoff=FAST)
        task = asyncio.create_task(follower.run())
        await asyncio.wait_for(follower.loaded.wait(), 3)
        await fake.runner.cleanup()
        await until(lambda: follower.mode == "retrying")
        assert len(follower.specs) == 1
        assert "connection refused" in follower.last_error
        task.cancel()


class StubFollower:
    def __init__(self, specs: dict[str, ServerSpec]):
        self.specs = specs
        self.version = 1
        self.loaded = asyncio.Event()
        self.loaded.set()
        self.mode = "websocket"
        self.last_error = ""


class CollectingSender:
    def __init__(self) -> None:
        self.items: list[tuple] = []

    def submit(self, items) -> None:
        self.items.extend(items)


def spec(sid: str) -> ServerSpec:
    return ServerSpec(sid, 50, 150, 1.3, 400.0, "grid-mix", "us-east")


async def test_each_tick_gives_every_server_both_metrics_and_follows_the_registry():
    follower = StubFollower({"a": spec("a"), "b": spec("b")})
    emulator = FleetEmulator(follower, CollectingSender(), interval_s=1.0, seed=1)
    first = emulator.tick(1_800_000_000_000)
    assert sorted((sid, metric) for sid, metric, _, _ in first) == [
        ("a", "co2"),
        ("a", "power"),
        ("b", "co2"),
        ("b", "power"),
    ]
    assert {ts for _, _, ts, _ in first} == {1_800_000_000_000}
    follower.specs = {"b": spec("b"), "c": spec("c")}
    follower.version += 1
    second = emulator.tick(1_800_000_001_000)
    assert {sid for sid, *_ in second} == {"b", "c"}
    assert emulator.state.servers == 2


def on_virtual_time(interval_s: float, start: float) -> tuple[VirtualClock, CollectingSender, FleetEmulator]:
    clock = VirtualClock(start=start)
    sender = CollectingSender()
    emulator = FleetEmulator(
        StubFollower({"a": spec("a")}), sender, interval_s=interval_s, seed=1, clock=clock.time, sleep=clock.sleep
    )
    return clock, sender, emulator


async def test_ticks_fall_on_the_interval_grid():
    clock, sender, emulator = on_virtual_time(0.05, start=1_800_000_000.02)
    task = asyncio.create_task(emulator._ticks())
    await clock.advance(0.4)
    task.cancel()
    stamps = sorted({ts for _, _, ts, _ in sender.items})
    assert len(stamps) == 8 and stamps[0] == 1_800_000_000_050
    assert all(b - a == 50 for a, b in zip(stamps, stamps[1:])) and not emulator.state.skipped_ticks


async def test_ticks_missed_while_stalled_are_skipped_not_burst():
    clock, sender, emulator = on_virtual_time(1.0, start=1_800_000_000.0)
    task = asyncio.create_task(emulator._ticks())
    await clock.advance(1)
    clock.now += 10  # the event loop stalled for ten seconds
    await clock.advance(1)
    task.cancel()
    stamps = sorted({ts // 1000 for _, _, ts, _ in sender.items})
    assert emulator.state.skipped_ticks > 0 and len(stamps) < 5


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        FleetEmulator(StubFollower({}), CollectingSender(), interval_s=0)


def test_a_synthetic_fleet_spans_regions_and_sources_and_is_valid():
    servers = synthetic_servers(60, seed=4)
    assert len({s["name"] for s in servers}) == 60
    assert {s["location"]["region"] for s in servers} == set(REGIONS)
    assert {s["energy_source"] for s in servers} == set(ENERGY_SOURCES)
    assert all(0 < s["idle_watts"] < s["max_watts"] and s["pue"] >= 1 for s in servers)
    assert synthetic_servers(60, seed=4) == servers


async def test_creating_the_synthetic_fleet_twice_tops_it_up(fake):
    async with TaskerClient(fake.url, TOKEN) as api:
        assert await create_fleet(api, synthetic_servers(5)) == (5, 0)
        assert await create_fleet(api, synthetic_servers(8)) == (3, 5)
        assert len((await api.list_servers())["servers"]) == 8
