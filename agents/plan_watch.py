"""The agent's websocket: plan frames about its server wake it to heartbeat at once.

The heartbeat stays the one source of truth (what to run, what to stop); the websocket only
shortens the wait for it, so a cancel or a new plan is acted on within a fraction of a second
instead of at the next poll. When the websocket cannot connect or drops, the agent simply goes
on polling, and this reconnects with backoff.
"""

from __future__ import annotations

import asyncio
import logging

from tasker.backoff import RetryBackoff
from tasker.client import ApiError, LiveConnection, TaskerClient

log = logging.getLogger("tasker.agent")

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
SUBSCRIBE_TIMEOUT_S = 10.0
QUIET_EVENTS = frozenset({"running", "paused", "resumed", "done", "failed", "measured"})
"""Plan events the agent's own reports cause: nothing new for it to act on."""


class PlanWatch:
    """Follows the plan frames of one server and sets `wake` when one may matter."""

    def __init__(self, client: TaskerClient, server_id: str, wake: asyncio.Event) -> None:
        self.client = client
        self.server_id = server_id
        self.wake = wake
        self.connected = False
        self.last_error = "not connected yet"

    def describe(self, poll_s: float) -> str:
        """How the agent hears of plan changes, for its status line."""
        if self.connected:
            return f"websocket (poll every {poll_s:g} s as fallback)"
        return f"polling every {poll_s:g} s (websocket: {self.last_error})"

    async def run(self) -> None:
        """Stay connected until cancelled, reconnecting with backoff (0.5 s doubling to 30 s)."""
        backoff = RetryBackoff(BACKOFF_FIRST_S, BACKOFF_MAX_S, jitter=0.2)
        while True:
            try:
                async with LiveConnection(self.client, heartbeat=15.0) as live:
                    await self._subscribe(live)
                    backoff.succeeded()
                    self._up()
                    async for frame in live:
                        if self._concerns(frame):
                            self.wake.set()
            except ApiError as exc:
                self.last_error = exc.message[:160]
            except Exception as exc:  # noqa: BLE001 - the poll goes on whatever breaks here
                log.exception("agent websocket of %s failed", self.server_id)
                self.last_error = f"failed: {exc!r}"[:160]
            if self.connected:
                log.warning("agent websocket of %s dropped (%s); polling meanwhile", self.server_id, self.last_error)
            self.connected = False
            await asyncio.sleep(backoff.failed())

    async def _subscribe(self, live: LiveConnection) -> None:
        await live.send({"type": "agent.subscribe", "server_id": self.server_id})

        async def answer() -> dict:
            async for frame in live:
                if frame.get("type") in ("agent.subscribed", "error"):
                    return frame
            raise ApiError(0, "the websocket ended")

        try:
            frame = await asyncio.wait_for(answer(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            raise ApiError(0, "no answer to agent.subscribe") from None
        if frame["type"] == "error":
            raise ApiError(0, f"agent.subscribe refused: {frame.get('message')}")

    def _up(self) -> None:
        self.connected = True
        self.last_error = ""
        log.info("agent websocket of %s connected", self.server_id)
        # Whatever changed while it was down is heard of at the next heartbeat: make it now.
        self.wake.set()

    def _concerns(self, frame: dict) -> bool:
        return (
            frame.get("type") == "plan"
            and frame.get("server_id") == self.server_id
            and frame.get("event") not in QUIET_EVENTS
        )
