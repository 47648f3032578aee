"""Ingest's cache of registered server ids: loaded once, refreshed in the background (requests
never wait for a routine refresh), re-read at once for an id it does not know."""

from __future__ import annotations

import asyncio

import pytest

from backend.ports import Unavailable
from backend.services.ingest import ServerDirectory


class Registry:
    """`server_ids` answering from `ids`, waiting for `open`, failing while `down`."""

    def __init__(self, ids: set[str]) -> None:
        self.ids = ids
        self.open = asyncio.Event()
        self.open.set()
        self.down = False
        self.calls = 0

    async def server_ids(self) -> list[str]:
        self.calls += 1
        await self.open.wait()
        if self.down:
            raise Unavailable("registry: connection refused (test)")
        return sorted(self.ids)


@pytest.fixture
async def directory_and_registry():
    registry = Registry({"a"})
    directory = ServerDirectory(registry, ttl_s=0.1, miss_refresh_s=0.05)  # type: ignore[arg-type]
    yield directory, registry
    await directory.close()


async def test_a_stale_list_is_refreshed_behind_the_requests(directory_and_registry):
    directory, registry = directory_and_registry
    assert await directory.ids() == {"a"} and registry.calls == 1  # the first use loads
    registry.ids = {"a", "b"}
    await asyncio.sleep(0.15)
    registry.open.clear()  # a slow registry: requests must not wait for it
    for _ in range(3):
        async with asyncio.timeout(0.05):
            assert await directory.ids({"a"}) == {"a"}
    await asyncio.sleep(0.01)
    assert registry.calls == 2  # one refresh for the three requests
    registry.open.set()
    await asyncio.sleep(0.01)
    assert await directory.ids() == {"a", "b"}


async def test_an_unknown_id_is_looked_up_before_answering(directory_and_registry):
    directory, registry = directory_and_registry
    await directory.ids()
    registry.ids = {"a", "new"}
    await asyncio.sleep(0.06)
    assert await directory.ids({"new"}) == {"a", "new"}


async def test_a_failed_background_refresh_keeps_the_ids_in_hand(directory_and_registry):
    directory, registry = directory_and_registry
    await directory.ids()
    registry.down = True
    await asyncio.sleep(0.15)
    assert await directory.ids() == {"a"}
    await asyncio.sleep(0.01)
    assert registry.calls == 2
    registry.down = False
    await asyncio.sleep(0.15)
    await directory.ids()
    await asyncio.sleep(0.01)
    assert registry.calls == 3
