"""The emulator's registry follower keeps listening after a quiet spell on the websocket."""

from __future__ import annotations

import asyncio
import contextlib

from sensors.registry import RegistryFollower
from tasker.models import ServerPage
from tests.unit.virtual_clock import VirtualClock


def server(sid: str) -> dict:
    return {
        "id": sid,
        "name": sid,
        "location": {"region": "eu-west"},
        "energy_source": "wind",
        "idle_watts": 50,
        "max_watts": 200,
    }


class QuietThenChattyClient:
    """Lists one server; its websocket stays silent longer than the resync period, then
    announces a second server."""

    def __init__(self, silence_s: float, clock: VirtualClock) -> None:
        self.silence_s = silence_s
        self.clock = clock
        self.lists = 0

    async def read_servers(self) -> ServerPage:
        self.lists += 1
        return ServerPage.from_json({"servers": [server("srv_a")], "latest": {}})

    @contextlib.asynccontextmanager
    async def live(self):
        async def frames():
            await self.clock.sleep(self.silence_s)
            yield {"type": "registry", "event": "added", "server": server("srv_b")}
            await self.clock.sleep(3600)

        yield frames()


async def test_an_added_server_is_seen_after_resync_periods_without_events() -> None:
    clock = VirtualClock()
    client = QuietThenChattyClient(silence_s=35, clock=clock)
    follower = RegistryFollower(client, resync_s=10, sleep=clock.sleep)  # type: ignore[arg-type]
    task = asyncio.create_task(follower.run())
    try:
        await clock.advance(34)
        assert set(follower.specs) == {"srv_a"}
        await clock.advance(1)
        assert set(follower.specs) == {"srv_a", "srv_b"}
        assert client.lists >= 3  # the quiet spell triggered resyncs, and the stream survived them
        assert follower.mode == "websocket"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
