"""Ingest's cache of registered servers and their value ceilings: loaded once, refreshed in the background (requests
never wait for a routine refresh), re-read at once for an id it does not know."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import pytest

from backend.ports import Unavailable
from backend.services.ingest import ServerDirectory


class Registry:
    """`list_servers` answering from `ids`, waiting for `open`, failing while `down`."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.open = asyncio.Event()
        self.open.set()
        self.down = False
        self.calls = 0

    async def list_servers(self) -> list[SimpleNamespace]:
        self.calls += 1
        await self.open.wait()
        if self.down:
            raise Unavailable("registry: connection refused (test)")
        return [SimpleNamespace(id=i, max_watts=100.0) for i in sorted(self.ids)]


class Clock:
    """The directory's clock: a test moves it on instead of waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def ids(directory: ServerDirectory, wanted: set[str] | None = None) -> set[str]:
    return set(await directory.ceilings(wanted))


@pytest.fixture
async def directory_and_registry():
    registry, clock = Registry({"a"}), Clock()
    directory = ServerDirectory(registry, ttl_s=0.1, miss_refresh_s=0.05, clock=clock)  # type: ignore[arg-type]
    yield directory, registry, clock
    await directory.close()


async def test_a_stale_list_is_refreshed_behind_the_requests(directory_and_registry):
    directory, registry, clock = directory_and_registry
    assert (
        await ids(
            directory,
        )
        == {"a"}
        and registry.calls == 1
    )  # the first use loads
    registry.ids = {"a", "b"}
    clock.now += 0.15
    registry.open.clear()  # a slow registry: requests must not wait for it
    for _ in range(3):
        async with asyncio.timeout(0.05):
            assert await ids(directory, {"a"}) == {"a"}
    await asyncio.sleep(0.01)
    assert registry.calls == 2  # one refresh for the three requests
    registry.open.set()
    await asyncio.sleep(0.01)
    assert await ids(
        directory,
    ) == {"a", "b"}


async def test_an_unknown_id_is_looked_up_before_answering(directory_and_registry):
    directory, registry, clock = directory_and_registry
    await ids(
        directory,
    )
    registry.ids = {"a", "new"}
    clock.now += 0.06
    assert await ids(directory, {"new"}) == {"a", "new"}


async def test_a_failed_background_refresh_keeps_the_ids_in_hand(directory_and_registry):
    directory, registry, clock = directory_and_registry
    await ids(
        directory,
    )
    registry.down = True
    clock.now += 0.15
    assert await ids(
        directory,
    ) == {"a"}
    await asyncio.sleep(0.01)
    assert registry.calls == 2
    registry.down = False
    clock.now += 0.15
    await ids(
        directory,
    )
    await asyncio.sleep(0.01)
    assert registry.calls == 3


async def test_ceilings_follow_the_servers_max_watts_through_events(directory_and_registry):
    directory, _, _ = directory_and_registry
    assert (await directory.ceilings())["a"]["power"] == 1_000.0  # 10 x 100 W
    directory.on_registry_event(json.dumps({"event": "updated", "server": {"id": "a", "max_watts": 350}}).encode())
    directory.on_registry_event(json.dumps({"event": "added", "server": {"id": "b", "max_watts": 0}}).encode())
    ceilings = await directory.ceilings()
    assert ceilings["a"]["power"] == 3_500.0 and ceilings["b"]["power"] == 1e7
    directory.on_registry_event(json.dumps({"event": "removed", "server": {"id": "a"}}).encode())
    directory.on_registry_event(b"not json")
    assert set(await directory.ceilings()) == {"b"}
