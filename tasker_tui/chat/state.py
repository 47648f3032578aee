"""App-level chat state. Until chat lands (issue 6) it only knows that it is not connected."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

FrameSender = Callable[[Mapping[str, Any]], Awaitable[None]]


class ChatState:
    """What the chat pane and the header badge show; fed by the live link, no I/O of its own."""

    def __init__(self) -> None:
        self.unread = 0
        self.connected = False
        self.status = "chat: not connected yet"
        self._send: FrameSender | None = None
        # Bumped whenever something visible changed, so the app repaints only then.
        self.version = 0

    def attach_sender(self, send: FrameSender | None) -> None:
        """The live link's websocket send (None while disconnected)."""
        self._send = send

    def handle_frame(self, frame: Mapping[str, Any]) -> bool:
        """A `chat.*` frame from the websocket. Returns True when the pane needs a repaint.

        Chat is not wired yet, so frames are not interpreted (and never shown as if they were a
        conversation).
        """
        return False

    def mark_read(self) -> None:
        """The user opened the pane: everything shown counts as read."""
        if self.unread:
            self.unread = 0
            self.version += 1
