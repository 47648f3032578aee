"""One websocket connection's stream of chat messages: in id order, each message once.

Messages reach a connection from two sides: live events (from this or another api process,
in whatever order the broker delivers them) and the registry (the backlog after the `since` a
reconnecting client names). A cursor per conversation holds the last id this connection was
sent. A live message is sent only when it is exactly the next id; an older one is a duplicate
and is dropped; a newer one means something is missing, so the connection catches up from the
registry (`chat_after(cursor)`), which is the truth. Ids are consecutive per conversation
(see `Registry.append_chat`), so "exactly the next id" is well defined.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from backend.ports import ChatMessage, Unavailable

log = logging.getLogger(__name__)

CATCH_UP_PAGE = 100
"""Messages per registry read (and per `chat.messages` frame) while catching up."""

FrameSink = Callable[[dict[str, Any]], None]
FetchAfter = Callable[[str, int, int], Awaitable[list[ChatMessage]]]


def message_json(message: ChatMessage) -> dict[str, Any]:
    """A stored message as clients see it."""
    out: dict[str, Any] = {
        "conversation": message.conversation,
        "id": message.id,
        "sender": message.sender,
        "sender_role": message.sender_role,
        "text": message.text,
        "ts": message.ts_ms,
        "client_key": message.client_key,
    }
    server = message.extra.get("server")
    if isinstance(server, dict):
        out["server"] = server
    return out


def messages_frame(conversation: str, messages: Iterable[ChatMessage]) -> dict[str, Any]:
    return {"type": "chat.messages", "conversation": conversation, "messages": [message_json(m) for m in messages]}


class _Cursor:
    __slots__ = ("last_id", "task", "dirty")

    def __init__(self, last_id: int) -> None:
        self.last_id = last_id
        self.task: asyncio.Task[None] | None = None
        self.dirty = False  # a live message arrived while catching up: read once more


class ChatStream:
    """The conversations one connection follows and the last id it was sent of each."""

    def __init__(self, send: FrameSink, fetch_after: FetchAfter) -> None:
        self._send = send
        self._fetch_after = fetch_after
        self._cursors: dict[str, _Cursor] = {}
        self._held: list[ChatMessage] | None = None

    def hold(self) -> None:
        """Start (re)joining: forget the cursors and keep live messages until `resume`."""
        self.close()
        self._held = []

    def resume(self, cursors: dict[str, int], catch_up: Iterable[str] = ()) -> None:
        """Finish joining: follow from these last ids, deliver what was held, and read the
        registry for the conversations in `catch_up` (the client is behind in them)."""
        self._cursors = {conv: _Cursor(last_id) for conv, last_id in cursors.items()}
        held, self._held = self._held or [], None
        for message in held:
            self.offer(message)
        for conversation in catch_up:
            self._catch_up(conversation)

    def offer(self, message: ChatMessage) -> None:
        """A message just stored (live): send it if it is next, else catch up first."""
        if self._held is not None:
            self._held.append(message)
            return
        # A conversation this connection has not heard of started after it joined: all of it
        # is news to the client.
        cursor = self._cursors.setdefault(message.conversation, _Cursor(0))
        if cursor.task is not None:
            cursor.dirty = True
        elif message.id == cursor.last_id + 1:
            cursor.last_id = message.id
            self._send(messages_frame(message.conversation, [message]))
        elif message.id > cursor.last_id:
            self._catch_up(message.conversation)

    def _catch_up(self, conversation: str) -> None:
        cursor = self._cursors.setdefault(conversation, _Cursor(0))
        if cursor.task is None:
            cursor.task = asyncio.create_task(
                self._read_after(conversation, cursor), name=f"chat-catch-up-{conversation}"
            )

    async def _read_after(self, conversation: str, cursor: _Cursor) -> None:
        try:
            while True:
                cursor.dirty = False
                page = await self._fetch_after(conversation, cursor.last_id, CATCH_UP_PAGE)
                fresh = [m for m in page if m.id > cursor.last_id]
                if fresh:
                    cursor.last_id = fresh[-1].id
                    self._send(messages_frame(conversation, fresh))
                if len(page) < CATCH_UP_PAGE and not cursor.dirty:
                    return
        except Unavailable as exc:
            # The cursor stays where it was: the next live message of this conversation (or the
            # client's next reconnect) tries again.
            log.warning("chat catch-up of %s failed: %s", conversation, exc)
            self._send(
                {
                    "type": "chat.error",
                    "code": "unavailable",
                    "message": "the chat store is unavailable; messages will follow when it is back",
                }
            )
        finally:
            cursor.task = None

    def close(self) -> None:
        """Stop every catch-up of this connection (it is closing or re-joining)."""
        for cursor in self._cursors.values():
            if cursor.task is not None:
                cursor.task.cancel()
        self._cursors = {}
