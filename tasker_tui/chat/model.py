"""What the TUI knows of chat: conversations with their messages and markers, and the outbox.

Plain data, no I/O, no Textual. Messages are `tasker.models.ChatMessage`, parsed from the frames
of docs/websocket.md section 8 by `ChatState`.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from tasker.models import ChatMessage, ServerLink

TYPING_SHOWN_S = 5.0
"""How long "x is typing…" stays up after the last typing notice."""
MESSAGES_KEPT = 2_000
"""Messages kept per conversation; older ones are dropped (history can fetch them again)."""


@dataclass
class Conversation:
    """One sysadmin's support conversation as this user sees it."""

    name: str
    messages: dict[int, ChatMessage] = field(default_factory=dict)
    last_id: int = 0
    """Newest id known to exist (from the join summary or from messages)."""
    last_ts: int = 0
    read_id: int = 0
    """This user's read marker."""
    stream_id: int = 0
    """Last id the live stream delivered; what a reconnect names in `since`."""
    more_before: bool = True
    history_asked: bool = False
    typing: dict[str, float] = field(default_factory=dict)
    seen_by: dict[str, int] = field(default_factory=dict)
    """Other users' read markers (to show "seen")."""

    @property
    def unread(self) -> int:
        return max(0, self.last_id - self.read_id)

    def add(self, message: ChatMessage) -> bool:
        """Keep a message; False when it was already known (duplicates are ignored)."""
        mid = message.id
        if mid in self.messages:
            return False
        self.messages[mid] = message
        if mid >= self.last_id:
            self.last_id, self.last_ts = mid, message.ts_ms
        self.typing.pop(message.sender, None)
        if len(self.messages) > MESSAGES_KEPT:
            for old in sorted(self.messages)[: len(self.messages) - MESSAGES_KEPT]:
                del self.messages[old]
            self.more_before = True
        return True

    def ordered(self) -> list[ChatMessage]:
        return [self.messages[i] for i in sorted(self.messages)]

    def oldest_id(self) -> int | None:
        return min(self.messages) if self.messages else None

    def typists(self, now: float | None = None) -> list[str]:
        now = time.monotonic() if now is None else now
        return sorted(name for name, until in self.typing.items() if until > now)


@dataclass
class OutboxEntry:
    """A message the user sent that the backend has not acknowledged yet."""

    text: str
    conversation: str | None  # None: a sysadmin's own (known once joined)
    attach: ServerLink | None = None
    client_key: str = field(default_factory=lambda: f"tui-{secrets.token_hex(12)}")
    error: str = ""
    """Why the backend refused it for good (it is then no longer sent)."""
    waiting: str = ""
    """Why it waits (e.g. the rate limit), shown beside it."""

    def frame(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "chat.send", "client_key": self.client_key, "text": self.text}
        if self.conversation is not None:
            out["conversation"] = self.conversation
        if self.attach is not None:
            out["attach"] = {"server_id": self.attach.id}
        return out
