"""The emulator's registry follower keeps listening after a quiet spell on the websocket."""

from __future__ import annotations

import asyncio
import contextlib

from sensors.registry import RegistryFollower


def server(sid: str) -> dict:
    return {"id": sid, "name": sid, "location": {"region": "eu-west"}, "energy_source": "wind",
            "idle_watts": 50, "max_watts": 200}


class QuietThenChattyClient:
    """Lists one server; its websocket stays silent longer than the resync period, then
    announces a second server."""

    def __init__(self, silence_s: float) -> None:
        self.silence_s = silence_s
        self.lists = 0

    async def list_servers(self) -> dict:
        self.lists += 1
        return {"servers": [server("srv_a")], "latest": {}}

    @contextlib.asynccontextmanager
    async def live(self):
        async def frames():
            await asyncio.sleep(self.silence_s)
            yield {"type": "registry", "event": "added", "server": server("srv_b")}
            await asyncio.sleep(3600)

        yield frames()


async def test_an_added_server_is_seen_after_resync_periods_without_events() -> None:
    client = QuietThenChattyClient(silence_s=0.35)
    follower = RegistryFollower(client, resync_s=0.1)  # type: ignore[arg-type]
    task = asyncio.create_task(follower.run())
    try:
        for _ in range(100):
            if "srv_b" in follower.specs:
                break
            await asyncio.sleep(0.02)
        assert set(follower.specs) == {"srv_a", "srv_b"}
        assert client.lists >= 3  # the quiet spell triggered resyncs, and the stream survived them
        assert follower.mode == "websocket"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
