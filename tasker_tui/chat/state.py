"""App-level chat state: conversations, unread counts, presence, typing, and the outbox.

Owned by the app and fed by the live link: `handle_frame` gets every `chat.*` frame, and
`attach_sender` the websocket's send (None while disconnected). On every (re)connect it joins
with the last id it holds of each conversation, so the backend sends exactly what was missed,
then sends the outbox: messages typed while disconnected (or not yet acknowledged), in order,
one at a time, each with the idempotency key it got when typed, so none is stored twice.

Nothing here draws; the pane subscribes to changes (`subscribe`) and reads the state.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from tasker.client import ApiError
from tasker.models import ChatMessage, ModelError, OnlineUser, ServerLink
from tasker_tui.chat.model import TYPING_SHOWN_S, Conversation, OutboxEntry

FrameSender = Callable[[Mapping[str, Any]], Awaitable[None]]
Listener = Callable[[], None]

SUPPORT_ROLES = frozenset({"engineer", "admin"})
ACK_TIMEOUT_S = 10.0
"""How long a sent message may wait for its acknowledgement before the link is presumed dead
(it stays in the outbox and goes again on the next connection)."""
RETRY_S = 2.0
TYPING_EVERY_S = 3.0
HISTORY_PAGE = 50
DEFAULT_MAX_BYTES = 4096


class ChatState:
    """What the chat pane and the header badge show; fed by the live link."""

    def __init__(self) -> None:
        self.unread = 0
        self.connected = False
        self.status = "chat: not connected yet"
        # Bumped whenever something visible changed, so the app repaints only then.
        self.version = 0
        self.me = ""
        self.role = ""
        self.conversations: dict[str, Conversation] = {}
        self.selected: str | None = None
        self.online: list[OnlineUser] = []
        self.outbox: list[OutboxEntry] = []
        self.refused: list[OutboxEntry] = []
        self.viewing: str | None = None
        """The conversation an open pane shows (its messages are read as they come)."""
        self.alerts: list[tuple[str, str]] = []
        """(title, text) of messages that arrived unseen, for the pane to announce."""
        self.notice = ""
        self.max_bytes = DEFAULT_MAX_BYTES
        self._send: FrameSender | None = None
        self._since_sent: dict[str, int] = {}
        self._answers: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self._pump: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._listeners: list[Listener] = []
        self._typing_sent = 0.0

    # --- the seam the live link uses -------------------------------------------------------

    def attach_sender(self, send: FrameSender | None) -> None:
        """The live link's websocket send (None while disconnected): join on connect."""
        self._send = send
        for answer in self._answers.values():
            if not answer.done():
                answer.cancel()
        if send is None:
            self.connected = False
            self.status = "chat: offline; messages you send wait in the outbox"
            self._changed()
            return
        self.status = "chat: joining…"
        self._since_sent = {name: c.stream_id for name, c in self.conversations.items() if c.stream_id}
        frame: dict[str, Any] = {"type": "chat.join"}
        if self._since_sent:
            frame["since"] = dict(self._since_sent)
        self._fire(frame)
        self._changed()

    def handle_frame(self, frame: Mapping[str, Any]) -> bool:
        """A `chat.*` frame from the websocket. Returns True when the pane needs a repaint."""
        handler = {
            "chat.joined": self._on_joined,
            "chat.messages": self._on_messages,
            "chat.history": self._on_history,
            "chat.ack": self._on_answer,
            "chat.error": self._on_answer,
            "chat.read": self._on_read,
            "chat.typing": self._on_typing,
            "chat.presence": self._on_presence,
        }.get(str(frame.get("type")))
        if handler is None:
            return False  # a newer backend's frame: ignored
        try:
            handler(frame)
        except (KeyError, TypeError, ValueError):
            return False  # a malformed frame is not worth breaking the pane for
        self._changed()
        return True

    def mark_read(self) -> None:
        """The user opened the pane: the conversation shown counts as read."""
        conversation = self.shown()
        if conversation is not None and conversation.unread:
            conversation.read_id = conversation.last_id
            self._fire({"type": "chat.read", "conversation": conversation.name, "id": conversation.read_id})
            self._changed()

    # --- what the pane reads and does ------------------------------------------------------

    @property
    def is_support(self) -> bool:
        return self.role in SUPPORT_ROLES

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def ordered_conversations(self) -> list[Conversation]:
        """Newest activity first (a support user's list)."""
        return sorted(self.conversations.values(), key=lambda c: (-c.last_ts, c.name))

    def shown(self) -> Conversation | None:
        """The conversation the pane shows: a sysadmin's own, or the one support selected."""
        name = self.me if self.role == "sysadmin" else self.selected
        return self.conversations.get(name) if name else None

    def pending_for(self, name: str | None) -> list[OutboxEntry]:
        """Unacknowledged and refused messages of a conversation, to show below its messages."""
        own = self.role == "sysadmin" or not self.role
        return [e for e in [*self.refused, *self.outbox] if e.conversation == name or (e.conversation is None and own)]

    def select(self, name: str) -> None:
        """Show another conversation (support); loads its latest page the first time."""
        if name not in self.conversations or name == self.selected:
            return
        self.selected = name
        self._load_latest(self.conversations[name])
        self._changed()

    def set_viewing(self, open_: bool) -> None:
        """Told by the pane whether it is open; an open pane reads what it shows."""
        shown = self.shown()
        self.viewing = shown.name if open_ and shown is not None else None
        if self.viewing is not None:
            self.mark_read()

    def submit(self, text: str, attach: ServerLink | None = None) -> str | None:
        """Queue a message; returns why it cannot be sent (nothing queued) or None."""
        if not text.strip():
            return "type a message first"
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > self.max_bytes:
            return f"too long: {size} bytes, at most {self.max_bytes} fit in one message"
        if self.is_support and self.selected is None:
            return "choose a conversation first"
        conversation = self.selected if self.is_support else (self.me or None)
        self.outbox.append(OutboxEntry(text, conversation, attach))
        self._changed()
        self._start_pump()
        return None

    def typing(self) -> None:
        """The user is typing in the input: tell the other side, at most every few seconds."""
        shown = self.shown()
        now = time.monotonic()
        if self._send is None or shown is None or now - self._typing_sent < TYPING_EVERY_S:
            return
        self._typing_sent = now
        self._fire({"type": "chat.typing", "conversation": shown.name})

    def load_older(self) -> bool:
        """Ask for the page before the oldest message shown; False when there is none."""
        shown = self.shown()
        if shown is None or not shown.more_before or self._send is None:
            return False
        self._fire(
            {"type": "chat.history", "conversation": shown.name, "before": shown.oldest_id(), "limit": HISTORY_PAGE}
        )
        return True

    def take_alerts(self) -> list[tuple[str, str]]:
        alerts, self.alerts = self.alerts, []
        return alerts

    def dismiss_refused(self) -> None:
        if self.refused:
            self.refused.clear()
            self._changed()

    # --- frames ------------------------------------------------------------------------------

    def _conversation(self, name: str) -> Conversation:
        if name not in self.conversations:
            self.conversations[name] = Conversation(name)
        return self.conversations[name]

    def _on_joined(self, frame: Mapping[str, Any]) -> None:
        username = str(frame["username"])
        if self.me and username != self.me:
            # Someone else logged in on this TUI: nothing of the previous user's chat carries
            # over, above all not their unsent messages.
            self.conversations.clear()
            self.outbox.clear()
            self.refused.clear()
            self.selected = self.viewing = None
            self.online, self.alerts, self.notice = [], [], ""
        self.me, self.role = username, str(frame["role"])
        self.max_bytes = int(frame.get("limits", {}).get("max_message_bytes", DEFAULT_MAX_BYTES))
        for row in frame["conversations"]:
            conversation = self._conversation(str(row["conversation"]))
            conversation.last_id, conversation.last_ts = int(row["last_id"]), int(row["last_ts"])
            conversation.read_id = int(row["read_id"])
            since = self._since_sent.get(conversation.name)
            # Messages after `since` follow as chat.messages; otherwise the stream starts now.
            conversation.stream_id = conversation.last_id if since is None else min(since, conversation.last_id)
        self.online = _online(frame.get("online"))
        self.connected = True
        self.status = "chat: connected"
        self._ensure_selected()
        for entry in self.outbox:
            if entry.conversation is None and self.role == "sysadmin":
                entry.conversation = self.me
        self._start_pump()

    def _on_messages(self, frame: Mapping[str, Any]) -> None:
        conversation = self._conversation(str(frame["conversation"]))
        messages = _messages(frame["messages"])
        if not messages:
            return
        if messages[0].id > conversation.stream_id + 1:
            # Frames were dropped on the way (the backend said "lagging"): fetch the gap.
            self._fire(
                {
                    "type": "chat.history",
                    "conversation": conversation.name,
                    "after": conversation.stream_id,
                    "limit": 100,
                }
            )
        fresh = [m for m in messages if conversation.add(m)]
        self._ensure_selected()
        conversation.stream_id = max(conversation.stream_id, messages[-1].id)
        from_others = [m for m in fresh if m.sender != self.me and m.id > conversation.read_id]
        if not from_others:
            return
        if self.viewing == conversation.name:
            conversation.read_id = conversation.last_id
            self._fire({"type": "chat.read", "conversation": conversation.name, "id": conversation.read_id})
            return
        last = from_others[-1]
        more = f" (+{len(from_others) - 1} more)" if len(from_others) > 1 else ""
        sender = last.sender
        if not self.is_support:
            title = f"{sender} (support)"
        else:
            title = sender if sender == conversation.name else f"{sender} in {conversation.name}'s chat"
        self.alerts.append((title, last.text[:200] + more))

    def _ensure_selected(self) -> None:
        """Support always has a conversation shown once there is one: the newest with unread
        messages, else the newest. The shown conversation's latest page is loaded once."""
        if self.is_support and self.selected is None and self.conversations:
            unread = [c for c in self.ordered_conversations() if c.unread]
            self.selected = (unread or self.ordered_conversations())[0].name
        shown = self.shown()
        if shown is not None:
            self._load_latest(shown)

    def _on_history(self, frame: Mapping[str, Any]) -> None:
        conversation = self._conversation(str(frame["conversation"]))
        for message in _messages(frame["messages"]):
            conversation.add(message)
        if "after" not in frame:
            conversation.more_before = bool(frame.get("more"))

    def _on_answer(self, frame: Mapping[str, Any]) -> None:
        if frame["type"] == "chat.ack":
            # Your own message is read by you; the backend moved your marker already.
            conversation = self._conversation(str(frame["conversation"]))
            conversation.read_id = max(conversation.read_id, int(frame["id"]))
        key = frame.get("client_key")
        answer = self._answers.get(key) if isinstance(key, str) else None
        if answer is not None and not answer.done():
            answer.set_result(frame)
        elif frame["type"] == "chat.error":
            self.notice = str(frame.get("message", "chat refused a request"))

    def _on_read(self, frame: Mapping[str, Any]) -> None:
        conversation = self._conversation(str(frame["conversation"]))
        username, read_id = str(frame["username"]), int(frame["id"])
        if username == self.me:
            conversation.read_id = max(conversation.read_id, read_id)
        else:
            conversation.seen_by[username] = max(conversation.seen_by.get(username, 0), read_id)

    def _on_typing(self, frame: Mapping[str, Any]) -> None:
        conversation = self._conversation(str(frame["conversation"]))
        conversation.typing[str(frame["username"])] = time.monotonic() + TYPING_SHOWN_S

    def _on_presence(self, frame: Mapping[str, Any]) -> None:
        self.online = _online(frame["online"])

    # --- sending -------------------------------------------------------------------------------

    def _load_latest(self, conversation: Conversation) -> None:
        if not conversation.history_asked and self._send is not None:
            conversation.history_asked = True
            self._fire({"type": "chat.history", "conversation": conversation.name, "limit": HISTORY_PAGE})

    def _fire(self, frame: Mapping[str, Any]) -> None:
        """Send a frame in the background; a failure means the link is down, which the live
        link notices and reports on its own."""
        send = self._send
        if send is None:
            return

        async def run() -> None:
            try:
                await send(frame)
            except (ApiError, OSError, RuntimeError):
                pass

        self._spawn(run())

    def _spawn(self, work: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_pump(self) -> None:
        if self._send is not None and self.connected and self.outbox and (self._pump is None or self._pump.done()):
            self._pump = self._spawn(self._send_outbox(self._send))

    async def _send_outbox(self, send: FrameSender) -> None:
        """Send the outbox in order, one message at a time, while this connection lasts."""
        loop = asyncio.get_running_loop()
        while self._send is send and self.outbox:
            entry = self.outbox[0]
            answer: asyncio.Future[Mapping[str, Any]] = loop.create_future()
            self._answers[entry.client_key] = answer
            try:
                await send(entry.frame())
                frame = await asyncio.wait_for(answer, ACK_TIMEOUT_S)
            except (ApiError, OSError, RuntimeError, TimeoutError, asyncio.CancelledError):
                return  # the link is down or dying: the next connection sends it again
            finally:
                self._answers.pop(entry.client_key, None)
            if entry not in self.outbox:
                continue  # an earlier connection's sender got the answer first
            if frame.get("type") == "chat.ack":
                self.outbox.remove(entry)
            elif frame.get("code") in ("rate_limited", "unavailable"):
                entry.waiting = str(frame.get("message", "waiting"))
                self._changed()
                await asyncio.sleep(float(frame.get("retry_after_ms") or RETRY_S * 1000) / 1000)
                entry.waiting = ""
            else:
                self.outbox.remove(entry)
                entry.error = str(frame.get("message", "refused"))
                self.refused.append(entry)
            self._changed()

    def _changed(self) -> None:
        self.unread = sum(c.unread for c in self.conversations.values())
        self.version += 1
        for listener in list(self._listeners):
            listener()


def _messages(raw: Any) -> list[ChatMessage]:
    """A frame's messages, parsed; one that does not parse is dropped rather than the frame."""
    out = []
    for index, item in enumerate(raw if isinstance(raw, list) else []):
        try:
            out.append(ChatMessage.from_json(item, f"messages[{index}]"))
        except ModelError:
            continue
    return out


def _online(raw: Any) -> list[OnlineUser]:
    """Who is online, parsed; an entry that does not parse is left out."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(OnlineUser.from_json(item))
        except ModelError:
            continue
    return out
