"""Support chat over the websocket: the `chat.*` frames (docs/websocket.md, section 8).

Messages are stored in the registry first (which gives each one the next id of its
conversation and makes a resent `client_key` a no-op), then fanned out: straight to this
process's connections, and through the broker's `chat.events` channel to the other api
processes. Each connection's `ChatStream` turns those deliveries into an in-order,
exactly-once stream. Read markers, typing and presence travel on the same channel; only
messages and read markers are stored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from backend.ports import Broker, ChatMessage, NotFound, Registry, Unavailable
from backend.services.auth import Principal
from backend.services.chat.access import (
    HISTORY_PAGE_MAX,
    ChatRefused,
    RateLimit,
    can_see,
    client_key_of,
    conversation_of,
    is_support,
    optional_count,
    page_limit,
    require_client_key,
    since_of,
)
from backend.services.chat.presence import HEARTBEAT_S, Presence
from backend.services.chat.stream import ChatStream, message_json
from backend.services.chat.text import MAX_MESSAGE_BYTES, neutralise, utf8_size
from backend.services.timestamps import now_ms

if TYPE_CHECKING:
    from backend.http.ws import WsConnection, WsDispatcher

log = logging.getLogger(__name__)

CHAT_CHANNEL = "chat.events"
"""Broker event channel carrying chat messages, read markers, typing and presence."""
TYPING_EVERY_S = 1.0
"""A connection's typing notices are passed on at most this often (more are dropped quietly)."""
READ_EVERY_S = 1.0
"""Read markers stored per conversation and connection at most this often (the rest merged)."""

_EXTENSION = "chat"


@dataclass(eq=False, slots=True)
class ChatSession:
    """Chat state of one websocket connection."""

    conn: WsConnection
    stream: ChatStream
    last_typing: float = 0.0
    presence_sent: list[dict[str, str]] | None = None
    read_at: dict[str, float] = field(default_factory=dict)
    """conversation -> when this connection last stored a read marker."""
    read_waiting: dict[str, int] = field(default_factory=dict)
    """conversation -> highest marker received since, to store when READ_EVERY_S has passed."""

    @property
    def owner(self) -> Principal:
        return self.conn.principal


def _message_from_json(data: Any) -> ChatMessage:
    """The message of a `message` event; ValueError when it is not one."""
    if not isinstance(data, dict):
        raise ValueError("message is not an object")
    fields = {"conversation": str, "sender": str, "sender_role": str, "text": str, "client_key": str}
    if not all(isinstance(data.get(k), t) for k, t in fields.items()):
        raise ValueError("message lacks a string field")
    if not all(type(data.get(k)) is int for k in ("id", "ts")):
        raise ValueError("message id/ts are not integers")
    extra = {"server": data["server"]} if isinstance(data.get("server"), dict) else {}
    return ChatMessage(
        data["conversation"],
        data["id"],
        data["sender"],
        data["sender_role"],
        data["text"],
        data["ts"],
        data["client_key"],
        extra,
    )


class ChatService:
    """Chat of one api process: frame handlers, presence and the fan-out between processes."""

    def __init__(self, registry: Registry, broker: Broker, rate: RateLimit | None = None) -> None:
        self.registry = registry
        self.broker = broker
        self.rate = rate or RateLimit()
        self.process = secrets.token_hex(6)
        self.presence = Presence()
        self.sessions: set[ChatSession] = set()
        """Joined connections of this process: they get messages, typing and presence."""
        self._last_ts: dict[str, int] = {}
        self._append_locks: dict[str, asyncio.Lock] = {}
        self._sysadmins: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    # --- wiring -----------------------------------------------------------------------------

    def register(self, dispatcher: WsDispatcher) -> None:
        """Add the chat frame types and the presence hooks to the websocket dispatcher."""
        handlers: dict[str, Callable[[ChatSession, dict[str, Any]], Awaitable[None]]] = {
            "chat.join": self._join,
            "chat.send": self._send,
            "chat.history": self._history,
            "chat.read": self._read,
            "chat.typing": self._typing,
        }
        for frame_type, handler in handlers.items():
            dispatcher.register(frame_type, self._answering_errors(handler))
        dispatcher.on_open.append(self._opened)
        dispatcher.on_close.append(self._closed)

    async def start(self) -> None:
        """Follow the chat channel, ask the other processes who is online, keep telling them."""
        await self.broker.subscribe_events(CHAT_CHANNEL, self._on_event)
        self._spawn(self._publish({"kind": "presence_query"}))
        self._heartbeat = asyncio.create_task(self._beat(), name="chat-presence-heartbeat")

    async def close(self) -> None:
        """Stop the heartbeat, the catch-ups and the fan-out still in flight."""
        for session in list(self.sessions):
            session.stream.close()
        tasks = [*self._tasks, *([self._heartbeat] if self._heartbeat else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answering_errors(
        self, handler: Callable[[ChatSession, dict[str, Any]], Awaitable[None]]
    ) -> Callable[[WsConnection, dict[str, Any]], Awaitable[None]]:
        async def run(conn: WsConnection, frame: dict[str, Any]) -> None:
            session = conn.extensions[_EXTENSION]
            try:
                await handler(session, frame)
            except ChatRefused as exc:
                conn.send(exc.frame(client_key_of(frame)))
            except Unavailable as exc:
                log.warning("chat %s from %s failed: %s", frame.get("type"), conn.principal.name, exc)
                conn.send(
                    ChatRefused("unavailable", "the chat store is unavailable right now; try again shortly").frame(
                        client_key_of(frame)
                    )
                )

        return run

    # --- connections and presence -----------------------------------------------------------

    async def _opened(self, conn: WsConnection) -> None:
        conn.extensions[_EXTENSION] = ChatSession(conn, ChatStream(conn.send, self.registry.chat_after))
        if self.presence.connect(conn.principal.name, conn.principal.role):
            self._presence_changed()

    async def _closed(self, conn: WsConnection) -> None:
        session: ChatSession | None = conn.extensions.get(_EXTENSION)
        if session is not None:
            session.stream.close()
            self.sessions.discard(session)
        if self.presence.disconnect(conn.principal.name):
            self._presence_changed()

    def _presence_changed(self) -> None:
        """Tell this process's clients now, and the other processes in the background."""
        self._send_presence()
        self._spawn(self._publish_snapshot(apply_here=False))

    def _send_presence(self) -> None:
        for session in list(self.sessions):
            online = self.presence.visible_to(session.owner.role)
            if online != session.presence_sent:
                session.presence_sent = online
                session.conn.send({"type": "chat.presence", "online": online})

    async def _publish_snapshot(self, apply_here: bool = True) -> None:
        await self._publish({"kind": "presence", "users": self.presence.local_snapshot()}, apply_here=apply_here)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self._publish_snapshot(apply_here=False)
            self._send_presence()  # drops processes whose snapshots expired

    # --- fan-out ----------------------------------------------------------------------------

    async def _publish(self, event: dict[str, Any], apply_here: bool = True) -> None:
        """Apply an event to this process's connections and send it to the other processes.

        A broker outage does not fail the sender: the message is stored, local clients have it,
        and other processes' clients get it on their next catch-up or reconnect.
        """
        event["origin"] = self.process
        if apply_here:
            self._apply(event)
        try:
            await self.broker.publish_event(CHAT_CHANNEL, json.dumps(event, separators=(",", ":")).encode())
        except Unavailable as exc:
            log.warning("chat %s event not fanned out to other api processes: %s", event["kind"], exc)

    async def _on_event(self, body: bytes) -> None:
        try:
            event = json.loads(body)
            if not isinstance(event, dict) or not isinstance(event.get("origin"), str):
                raise ValueError("not an event object")
        except ValueError as exc:
            log.warning("ignored a malformed chat event: %s", exc)
            return
        if event["origin"] == self.process:
            return  # applied here when it was published
        try:
            self._apply(event)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignored a malformed chat %r event: %r", event.get("kind"), exc)

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("kind")
        if kind == "message":
            message = _message_from_json(event["message"])
            self._last_ts[message.conversation] = max(self._last_ts.get(message.conversation, 0), message.ts_ms)
            for session in self._audience(message.conversation):
                session.stream.offer(message)
        elif kind == "read":
            conversation, username, read_id = str(event["conversation"]), str(event["username"]), int(event["id"])
            frame = {"type": "chat.read", "conversation": conversation, "username": username, "id": read_id}
            for session in self._audience(conversation):
                session.conn.send(frame)
        elif kind == "typing":
            conversation, username = str(event["conversation"]), str(event["username"])
            frame = {
                "type": "chat.typing",
                "conversation": conversation,
                "username": username,
                "role": str(event["role"]),
            }
            for session in self._audience(conversation):
                if session.owner.name != username:
                    session.conn.send(frame)
        elif kind == "presence":
            users = event["users"]
            if not isinstance(users, dict):
                raise ValueError("presence users is not an object")
            self.presence.apply_snapshot(event["origin"], {str(k): str(v) for k, v in users.items()})
            self._send_presence()
        elif kind == "presence_query":
            self._spawn(self._publish_snapshot(apply_here=False))

    def _audience(self, conversation: str) -> list[ChatSession]:
        return [s for s in list(self.sessions) if can_see(s.owner, conversation)]

    # --- frame handlers ---------------------------------------------------------------------

    async def _join(self, session: ChatSession, frame: dict[str, Any]) -> None:
        """Start following chat: a summary of every visible conversation, then (in order) the
        messages after each `since` id, then live messages."""
        me = session.owner
        since = since_of(frame)
        hidden = sorted(c for c in since if not can_see(me, c))
        session.stream.hold()
        self.sessions.add(session)
        try:
            stored = await self.registry.list_conversations()
            markers = await self.registry.read_markers(me.name)
        except BaseException:
            self.sessions.discard(session)
            session.stream.close()
            raise
        last = {conv: (last_id, ts) for conv, last_id, ts in stored if can_see(me, conv)}
        if me.role == "sysadmin":
            last.setdefault(me.name, (0, 0))
        cursors = {conv: last_id for conv, (last_id, _) in last.items()}
        behind = []
        for conv, after in since.items():
            if conv in hidden:
                continue
            # A client claiming more than is stored (e.g. a restored registry) resumes from the
            # store's end, so it never misses messages that reuse those ids.
            cursors[conv] = min(after, cursors.get(conv, 0))
            if cursors[conv] < last.get(conv, (0, 0))[0]:
                behind.append(conv)
        session.presence_sent = self.presence.visible_to(me.role)
        session.conn.send(
            {
                "type": "chat.joined",
                "username": me.name,
                "role": me.role,
                "conversations": [
                    {
                        "conversation": conv,
                        "last_id": last_id,
                        "last_ts": ts,
                        "read_id": min(markers.get(conv, 0), last_id),
                        "unread": max(0, last_id - markers.get(conv, 0)),
                    }
                    for conv, (last_id, ts) in sorted(last.items(), key=lambda kv: (-kv[1][1], kv[0]))
                ],
                "online": session.presence_sent,
                "limits": {
                    "max_message_bytes": MAX_MESSAGE_BYTES,
                    "history_page_max": HISTORY_PAGE_MAX,
                    "rate_burst": self.rate.burst,
                    "rate_per_minute": round(self.rate.per_s * 60),
                },
            }
        )
        if hidden:
            session.conn.send(
                ChatRefused("forbidden", f"not your conversation, ignored in since: {', '.join(hidden)}").frame(None)
            )
        session.stream.resume(cursors, behind)

    async def _send(self, session: ChatSession, frame: dict[str, Any]) -> None:
        me = session.owner
        client_key = require_client_key(frame)
        conversation = conversation_of(me, frame)
        text = frame.get("text")
        if not isinstance(text, str) or not text.strip():
            raise ChatRefused("bad_request", "text must be a non-empty string")
        size = utf8_size(text)
        if size > MAX_MESSAGE_BYTES:
            raise ChatRefused(
                "too_long", f"the message is {size} bytes; at most {MAX_MESSAGE_BYTES} bytes (UTF-8) fit in one message"
            )
        if is_support(me) and not await self._is_sysadmin(conversation):
            raise ChatRefused(
                "unknown_conversation", f"no sysadmin named {conversation!r}: conversations are named after sysadmins"
            )
        extra = await self._attachment(frame.get("attach"))
        self.rate.take(me.name)
        # One append at a time per conversation in this process, so that a later id never gets
        # an earlier timestamp here.
        async with self._append_locks.setdefault(conversation, asyncio.Lock()):
            ts = max(now_ms(), await self._latest_ts(conversation))
            message, created = await self.registry.append_chat(
                conversation, me.name, me.role, neutralise(text), ts, client_key, extra
            )
            if created:
                self._last_ts[conversation] = max(self._last_ts.get(conversation, 0), message.ts_ms)
        # Your own message is read by you (it never counts as unread for its sender).
        await self.registry.set_read_marker(conversation, me.name, message.id)
        session.conn.send(
            {
                "type": "chat.ack",
                "client_key": client_key,
                "conversation": conversation,
                "id": message.id,
                "ts": message.ts_ms,
                "duplicate": not created,
            }
        )
        if created:
            await self._publish({"kind": "message", "message": message_json(message)})

    async def _history(self, session: ChatSession, frame: dict[str, Any]) -> None:
        conversation = conversation_of(session.owner, frame)
        limit = page_limit(frame)
        before = optional_count(frame, "before", 1)
        after = optional_count(frame, "after")
        if before is not None and after is not None:
            raise ChatRefused("bad_request", "give before or after, not both")
        answer: dict[str, Any] = {"type": "chat.history", "conversation": conversation}
        if after is not None:
            messages = await self.registry.chat_after(conversation, after, limit)
            answer.update(after=after, more=len(messages) == limit)
        else:
            messages = await self.registry.chat_before(conversation, before, limit)
            answer.update(before=before, more=bool(messages) and len(messages) == limit and messages[0].id > 1)
        answer["messages"] = [message_json(m) for m in messages]
        session.conn.send(answer)

    async def _read(self, session: ChatSession, frame: dict[str, Any]) -> None:
        conversation = conversation_of(session.owner, frame)
        read_id = optional_count(frame, "id")
        if read_id is None:
            raise ChatRefused("bad_request", "id (the last message id read) is required")
        # At most one stored marker per conversation and connection every READ_EVERY_S: markers
        # arriving faster (a client sending one per message scrolled past, or a flood) are merged
        # into the highest, stored when the interval is over. Each costs a registry write and a
        # broadcast to every api process.
        now = asyncio.get_running_loop().time()
        if conversation in session.read_waiting:
            session.read_waiting[conversation] = max(session.read_waiting[conversation], read_id)
            return
        wait = session.read_at.get(conversation, -READ_EVERY_S) + READ_EVERY_S - now
        if wait > 0:
            session.read_waiting[conversation] = read_id
            self._spawn(self._read_later(session, conversation, wait))
            return
        await self._store_read(session, conversation, read_id)

    async def _read_later(self, session: ChatSession, conversation: str, wait: float) -> None:
        await asyncio.sleep(wait)
        read_id = session.read_waiting.pop(conversation)
        try:
            await self._store_read(session, conversation, read_id)
        except Exception as exc:  # noqa: BLE001 - nobody waits for this answer; the next marker retries
            log.warning("read marker of %s in %s not stored: %s", session.owner.name, conversation, exc)

    async def _store_read(self, session: ChatSession, conversation: str, read_id: int) -> None:
        session.read_at[conversation] = asyncio.get_running_loop().time()
        # A marker past the newest message would hide messages still to come.
        newest = await self.registry.chat_before(conversation, None, 1)
        read_id = min(read_id, newest[-1].id if newest else 0)
        await self.registry.set_read_marker(conversation, session.owner.name, read_id)
        await self._publish(
            {"kind": "read", "conversation": conversation, "username": session.owner.name, "id": read_id}
        )

    async def _typing(self, session: ChatSession, frame: dict[str, Any]) -> None:
        conversation = conversation_of(session.owner, frame)
        now = asyncio.get_running_loop().time()
        if now - session.last_typing < TYPING_EVERY_S:
            return
        session.last_typing = now
        await self._publish(
            {"kind": "typing", "conversation": conversation, "username": session.owner.name, "role": session.owner.role}
        )

    # --- helpers ----------------------------------------------------------------------------

    async def _is_sysadmin(self, username: str) -> bool:
        if username in self._sysadmins:
            return True
        user = await self.registry.get_user(username)
        if user is not None and user.role == "sysadmin":
            self._sysadmins.add(username)  # roles do not change, so a yes can be kept
            return True
        return False

    async def _latest_ts(self, conversation: str) -> int:
        """The newest timestamp of a conversation, so a new message never goes back in time
        (another api process's clock may be ahead of ours)."""
        if conversation not in self._last_ts:
            newest = await self.registry.chat_before(conversation, None, 1)
            self._last_ts[conversation] = newest[-1].ts_ms if newest else 0
        return self._last_ts[conversation]

    async def _attachment(self, attach: Any) -> dict[str, Any] | None:
        """`extra` for an attached server: its id and its name as registered (never the name the
        client sent), so the reference is one the receiver can open."""
        if attach is None:
            return None
        server_id = attach.get("server_id") if isinstance(attach, dict) else None
        if not isinstance(server_id, str) or not 1 <= len(server_id) <= 64:
            raise ChatRefused("bad_request", 'attach must be {"server_id": "srv_..."}')
        try:
            server = await self.registry.get_server(server_id)
        except NotFound:
            raise ChatRefused("unknown_server", f"no server {server_id!r} to attach") from None
        return {"server": {"id": server.id, "name": server.name}}
