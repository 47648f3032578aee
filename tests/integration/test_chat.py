"""Chat over the real websocket of a real (embedded) backend, with `websockets` clients.

What a user would notice: who may join, who sees which conversation, that the sender is who
logged in, that a reconnect gets every missed message in order and once, that history
survives a restart, that nothing in a message can drive a terminal, and that the limits
answer with errors saying what was wrong.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from backend.ports import SessionRecord
from backend.services.passwords import token_digest
from backend.services.timestamps import now_ms
from tests.integration.backend_rig import running_backend, user_session

pytestmark = pytest.mark.timeout(120)

WAIT_S = 10.0


class ChatClient:
    """One websocket of one user, as a chat client uses it: frames are read in the background
    and taken in arrival order by `next`; `abort` cuts the TCP connection without a close."""

    def __init__(self, url: str, token: str, username: str = "") -> None:
        self.ws_url = url.replace("http://", "ws://") + "/api/v1/ws"
        self.token = token
        self.username = username
        self.ws: ClientConnection | None = None
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.joined: dict[str, Any] = {}
        self.skipped: list[dict[str, Any]] = []
        self._reader: asyncio.Task[None] | None = None

    async def open(self, since: dict[str, int] | None = None) -> dict[str, Any]:
        """Connect, wait for hello, join chat; returns the chat.joined frame."""
        self.inbox, self.skipped = asyncio.Queue(), []
        self.ws = await connect(
            self.ws_url, additional_headers={"Authorization": f"Bearer {self.token}"}, proxy=None, open_timeout=WAIT_S
        )
        self._reader = asyncio.create_task(self._read(self.ws))
        hello = await self.next("hello")
        self.username = hello["username"]
        await self.send_frame({"type": "chat.join", **({"since": since} if since is not None else {})})
        self.joined = await self.next("chat.joined")
        return self.joined

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                self.inbox.put_nowait(json.loads(text))
        except ConnectionClosed:
            pass

    async def send_frame(self, frame: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(frame))

    async def next(
        self, frame_type: str, where: Callable[[dict], bool] = lambda f: True, timeout: float = WAIT_S
    ) -> dict[str, Any]:
        """The first frame whose type starts with `frame_type` and matches `where`, not taken
        yet (frames passed over stay for later calls)."""
        for i, frame in enumerate(self.skipped):
            if frame["type"].startswith(frame_type) and where(frame):
                return self.skipped.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"{self.username}: no {frame_type} frame within {timeout:g}s")
            try:
                frame = await asyncio.wait_for(self.inbox.get(), left)
            except TimeoutError:
                continue
            if frame["type"].startswith(frame_type) and where(frame):
                return frame
            self.skipped.append(frame)

    async def messages(self, count: int, timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """The next `count` chat messages pushed to this client, in arrival order."""
        got: list[dict[str, Any]] = []
        while len(got) < count:
            got.extend((await self.next("chat.messages", timeout=timeout))["messages"])
        return got

    async def quiet(self, frame_type: str = "chat.messages") -> list[dict[str, Any]]:
        """The frames of `frame_type` not taken yet, up to a ping's pong (frames of a connection
        are handled in order, so the pong proves anything already due has been sent)."""
        await self.send_frame({"type": "ping"})
        await self.next("pong")
        seen = [f for f in self.skipped if f["type"] == frame_type]
        self.skipped = [f for f in self.skipped if f["type"] != frame_type]
        return seen

    async def say(
        self, text: str, conversation: str | None = None, client_key: str | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send a message; returns its chat.ack (or fails with the chat.error)."""
        key = client_key or secrets.token_hex(8)
        frame = {"type": "chat.send", "text": text, "client_key": key, **fields}
        if conversation is not None:
            frame["conversation"] = conversation
        await self.send_frame(frame)
        answer = await self.next_answer(key)
        assert answer["type"] == "chat.ack", answer
        return answer

    async def next_answer(self, client_key: str) -> dict[str, Any]:
        """The chat.ack or chat.error that answers the message with `client_key`."""
        return await self.next(
            "chat.", lambda f: f["type"] in ("chat.ack", "chat.error") and f.get("client_key") == client_key
        )

    async def abort(self) -> None:
        """Kill the connection as a dropped network would: no close handshake."""
        assert self.ws is not None
        self.ws.transport.abort()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


class People:
    """Users of each role on one backend, and their chat clients (closed at the end)."""

    def __init__(self, backend, http: aiohttp.ClientSession, url: str) -> None:
        self.backend, self.http, self.url = backend, http, url
        self.clients: list[ChatClient] = []

    async def user(self, role: str) -> tuple[str, str]:
        api = await user_session(self.backend, self.http, self.url, role)
        _, me = await api.call("GET", "/api/v1/auth/me", expect=200)
        return me["username"], api.token

    async def client(self, role: str) -> ChatClient:
        username, token = await self.user(role)
        client = ChatClient(self.url, token, username)
        self.clients.append(client)
        await client.open()
        return client

    async def another(self, client: ChatClient) -> ChatClient:
        """A second connection of the same user."""
        twin = ChatClient(self.url, client.token)
        self.clients.append(twin)
        await twin.open()
        return twin

    async def close(self) -> None:
        for client in self.clients:
            await client.close()


@pytest.fixture
async def chat(embedded):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        people = People(backend, http, url)
        try:
            yield people
        finally:
            await people.close()


def texts(messages: list[dict[str, Any]]) -> list[str]:
    return [m["text"] for m in messages]


# --- authentication ---------------------------------------------------------------------------


async def refused(url: str, headers: dict[str, str] | None = None, first: dict | None = None) -> tuple[dict, int]:
    """Connect (with a header or a first frame) and return the error frame and the close code."""
    ws_url = url.replace("http://", "ws://") + "/api/v1/ws"
    async with connect(ws_url, additional_headers=headers or {}, proxy=None) as ws:
        if first is not None:
            await ws.send(json.dumps(first))
        frame = json.loads(await asyncio.wait_for(ws.recv(), WAIT_S))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT_S)
        return frame, ws.close_code


async def test_unauthenticated_expired_and_logged_out_sessions_cannot_chat(chat):
    # No credentials: a chat frame first is refused, nothing is sent.
    frame, code = await refused(
        chat.url, first={"type": "chat.send", "text": "hi", "client_key": "k1", "sender": "alice"}
    )
    assert (frame["code"], code) == ("unauthorized", 4401)
    frame, code = await refused(chat.url, headers={"Authorization": "Bearer not-a-session"})
    assert (frame["code"], code) == ("unauthorized", 4401)

    # An expired session (stored with an expiry in the past).
    username, _ = await chat.user("sysadmin")
    expired = secrets.token_urlsafe(32)
    await chat.backend.registry.add_session(
        SessionRecord(token_digest(expired), username, "sysadmin", now_ms() - 1_000, now_ms() - 60_000)
    )
    frame, code = await refused(chat.url, first={"type": "auth", "token": expired})
    assert code == 4401 and "expired" in frame["message"]

    # A session that logged out.
    _, token = await chat.user("engineer")
    async with chat.http.post(f"{chat.url}/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"}) as r:
        assert r.status == 204
    frame, code = await refused(chat.url, headers={"Authorization": f"Bearer {token}"})
    assert (frame["code"], code) == ("unauthorized", 4401)

    # None of them left a message anywhere.
    assert await chat.backend.registry.list_conversations() == []


# --- who sees what ----------------------------------------------------------------------------


async def test_sender_comes_from_the_session_and_sysadmins_never_see_each_other(chat):
    alice = await chat.client("sysadmin")
    bob = await chat.client("sysadmin")
    eve = await chat.client("engineer")
    root = await chat.client("admin")

    # Alice pretends to be the engineer: the stored sender is still alice.
    ack = await alice.say("restart web-1?", sender=eve.username, sender_role="engineer")
    assert ack["conversation"] == alice.username and ack["id"] == 1
    for viewer in (alice, eve, root):
        [message] = await viewer.messages(1)
        assert (message["sender"], message["sender_role"], message["text"]) == (
            alice.username,
            "sysadmin",
            "restart web-1?",
        )
        assert message["conversation"] == alice.username

    # Alice cannot write into bob's conversation, read its history, or follow it.
    await alice.send_frame({"type": "chat.send", "conversation": bob.username, "text": "psst", "client_key": "x1"})
    assert (await alice.next_answer("x1"))["code"] == "forbidden"
    await alice.send_frame({"type": "chat.history", "conversation": bob.username})
    assert (await alice.next("chat.error"))["code"] == "forbidden"

    # The engineer answers alice; bob writes his own conversation.
    await eve.say("yes, go ahead", conversation=alice.username)
    await bob.say("disk full on db-1")
    assert texts(await alice.messages(1)) == ["yes, go ahead"]
    assert texts(await eve.messages(2)) == ["yes, go ahead", "disk full on db-1"]
    assert texts(await root.messages(2)) == ["yes, go ahead", "disk full on db-1"]

    # Bob saw only his own conversation, live and at join, and gets nothing of alice's by asking.
    assert [m["conversation"] for f in await bob.quiet() for m in f["messages"]] == [bob.username]
    bob_again = await chat.another(bob)
    assert [c["conversation"] for c in bob_again.joined["conversations"]] == [bob.username]
    await bob_again.send_frame({"type": "chat.join", "since": {alice.username: 0}})
    assert (await bob_again.next("chat.error"))["code"] == "forbidden"
    assert await bob_again.quiet() == []

    # Support staff list both conversations; an engineer may not open one for a non-sysadmin.
    eve_again = await chat.another(eve)
    assert {c["conversation"] for c in eve_again.joined["conversations"]} == {alice.username, bob.username}
    await eve.send_frame({"type": "chat.send", "conversation": root.username, "text": "hi", "client_key": "x2"})
    assert (await eve.next_answer("x2"))["code"] == "unknown_conversation"


# --- reconnecting ------------------------------------------------------------------------------


async def test_reconnect_with_since_gets_every_missed_message_in_order_once(chat):
    alice = await chat.client("sysadmin")
    eve = await chat.client("engineer")
    me = alice.username
    await alice.say("hello?")
    await eve.say("hi alice", conversation=me)
    seen = await alice.messages(2)
    last_seen = seen[-1]["id"]

    # Alice's network drops while she has just sent a message: it reached the backend, but she
    # never got the acknowledgement, so her outbox still holds it.
    await alice.send_frame({"type": "chat.send", "text": "are you there?", "client_key": "outbox-1"})
    await eve.messages(3)
    await alice.abort()

    # (8 answers: with her first one, the engineer stays within the burst of the rate limit.)
    for i in range(8):
        await eve.say(f"answer {i}", conversation=me)

    # Reconnect naming the last id seen, then send the outbox again with the same keys.
    await alice.open(since={me: last_seen})
    assert alice.joined["conversations"][0]["last_id"] == last_seen + 9
    first = await alice.say("are you there?", client_key="outbox-1")
    second = await alice.say("typed while offline", client_key="outbox-2")
    assert first["duplicate"] is True and first["id"] == last_seen + 1
    assert second["duplicate"] is False

    got = await alice.messages(10)
    assert [m["id"] for m in got] == list(range(last_seen + 1, last_seen + 11))
    assert texts(got) == ["are you there?"] + [f"answer {i}" for i in range(8)] + ["typed while offline"]
    assert await alice.quiet() == []  # nothing more, nothing twice

    # The engineer saw "are you there?" once, and the history holds it once.
    await eve.send_frame({"type": "chat.history", "conversation": me, "limit": 100})
    history = (await eve.next("chat.history"))["messages"]
    assert texts(history).count("are you there?") == 1
    assert [m["id"] for m in history] == list(range(1, 13))
    stamps = [m["ts"] for m in history]
    assert stamps == sorted(stamps)


async def test_backend_restart_keeps_history_and_ids_go_on(embedded):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        people = People(backend, http, url)
        alice = await people.client("sysadmin")
        eve = await people.client("engineer")
        await alice.say("before the restart")
        await eve.say("noted", conversation=alice.username)
        token, name = alice.token, alice.username
        await people.close()

    async with running_backend(embedded) as (backend, url):
        alice = ChatClient(url, token)
        joined = await alice.open(since={name: 0})
        try:
            assert joined["conversations"][0]["last_id"] == 2
            assert texts(await alice.messages(2)) == ["before the restart", "noted"]
            assert (await alice.say("after the restart"))["id"] == 3
            await alice.send_frame({"type": "chat.history"})
            history = (await alice.next("chat.history"))["messages"]
            assert texts(history) == ["before the restart", "noted", "after the restart"]
            assert [m["sender"] for m in history][:2] == [name, eve.username]
        finally:
            await alice.close()


# --- what a message may contain ---------------------------------------------------------------


async def test_escape_sequences_arrive_as_harmless_visible_text(chat):
    alice = await chat.client("sysadmin")
    eve = await chat.client("engineer")
    nasty = (
        "title\x1b]0;pwned\x07 clear\x1b[2J csi\x9b31m bidi\u202eevil\u202c bell\x07 nul\x00 "
        "cr\rover del\x7f\r\nline two\ttabbed"
    )
    await alice.say(nasty)
    [message] = await eve.messages(1)
    text = message["text"]
    assert text == (
        "title␛]0;pwned␇ clear␛[2J csi<U+009B>31m bidi<U+202E>evil<U+202C> bell␇ nul␀ cr␍over del␡\nline two\ttabbed"
    )
    assert all(c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") for c in text)
    # What was stored is what was sent: history shows the same harmless text.
    await eve.send_frame({"type": "chat.history", "conversation": alice.username})
    assert (await eve.next("chat.history"))["messages"][0]["text"] == text


async def test_limits_answer_with_errors_that_say_what_was_wrong(chat):
    alice = await chat.client("sysadmin")

    # 4 KiB of UTF-8: 1,024 four-byte characters fit, one more byte does not.
    assert (await alice.say("😀" * 1024))["id"] == 1
    await alice.send_frame({"type": "chat.send", "text": "😀" * 1024 + "!", "client_key": "big"})
    error = await alice.next_answer("big")
    assert error["code"] == "too_long" and "4097 bytes" in error["message"] and "4096" in error["message"]

    for bad, field in (({"text": "  "}, "text"), ({"text": "hi", "client_key": {"$gt": ""}}, "client_key")):
        await alice.send_frame({"type": "chat.send", "client_key": "k", **bad})
        error = await alice.next("chat.error")
        assert error["code"] == "bad_request" and field in error["message"]

    # The rate limit: the burst (10, including the one above) goes through, then a refusal that
    # says when to retry.
    for i in range(9):
        await alice.say(f"burst {i}")
    await alice.send_frame({"type": "chat.send", "text": "one too many", "client_key": "rl"})
    error = await alice.next_answer("rl")
    assert error["code"] == "rate_limited" and 0 < error["retry_after_ms"] <= 1000
    await asyncio.sleep(error["retry_after_ms"] / 1000)
    assert (await alice.say("one too many", client_key="rl"))["duplicate"] is False

    # History pages are capped.
    await alice.send_frame({"type": "chat.history", "limit": 101})
    error = await alice.next("chat.error")
    assert error["code"] == "bad_request" and "1 to 100" in error["message"]
    await alice.send_frame({"type": "chat.history", "limit": 5})
    page = await alice.next("chat.history")
    assert [m["id"] for m in page["messages"]] == [7, 8, 9, 10, 11] and page["more"] is True
    await alice.send_frame({"type": "chat.history", "limit": 5, "before": 7})
    assert [m["id"] for m in (await alice.next("chat.history"))["messages"]] == [2, 3, 4, 5, 6]

    # Nothing refused was stored; the socket stayed open throughout.
    assert [c[1] for c in await chat.backend.registry.list_conversations()] == [11]


# --- presence, read markers, unread counts, typing ---------------------------------------------


def online_names(frame: dict[str, Any]) -> set[str]:
    return {u["username"] for u in frame["online"]}


async def test_presence_read_markers_unread_counts_and_typing(chat):
    alice = await chat.client("sysadmin")
    bob = await chat.client("sysadmin")
    # An engineer coming online is announced to sysadmins; other sysadmins are not.
    assert online_names(alice.joined) == set()
    eve = await chat.client("engineer")
    assert online_names(await alice.next("chat.presence")) == {eve.username}
    assert online_names(eve.joined) == {alice.username, bob.username, eve.username}

    for i in range(3):
        await alice.say(f"question {i}")
    await eve.messages(3)

    # Unread counts come with the join; a read marker lowers them, and never moves back.
    eve_laptop = await chat.another(eve)
    [row] = [c for c in eve_laptop.joined["conversations"] if c["conversation"] == alice.username]
    assert (row["last_id"], row["read_id"], row["unread"]) == (3, 0, 3)
    await eve.send_frame({"type": "chat.read", "conversation": alice.username, "id": 2})
    read = await eve_laptop.next("chat.read")
    assert (read["conversation"], read["username"], read["id"]) == (alice.username, eve.username, 2)
    assert (await alice.next("chat.read"))["username"] == eve.username  # alice sees it was read
    await eve.send_frame({"type": "chat.read", "conversation": alice.username, "id": 1})
    # A marker past the newest message is held at the newest (it would hide what comes next).
    eve_tablet = await chat.another(eve)
    await eve_tablet.send_frame({"type": "chat.read", "conversation": bob.username, "id": 99})
    assert (await eve_tablet.next("chat.read", lambda f: f["conversation"] == bob.username))["id"] == 0
    eve_phone = await chat.another(eve)
    [row] = [c for c in eve_phone.joined["conversations"] if c["conversation"] == alice.username]
    assert (row["read_id"], row["unread"]) == (2, 1)
    # A sender's own messages never count as unread for them.
    alice_again = await chat.another(alice)
    assert alice_again.joined["conversations"][0]["unread"] == 0

    # Typing reaches the other side of the conversation only.
    await alice.send_frame({"type": "chat.typing"})
    typing = await eve.next("chat.typing")
    assert (typing["conversation"], typing["username"]) == (alice.username, alice.username)
    assert await bob.quiet("chat.typing") == []
    await eve.send_frame({"type": "chat.typing", "conversation": alice.username})
    assert (await alice.next("chat.typing"))["username"] == eve.username

    # The engineer's last connection goes: sysadmins see nobody online.
    for client in (eve, eve_laptop, eve_phone, eve_tablet):
        await client.close()
    frame = await alice.next("chat.presence", where=lambda f: eve.username not in online_names(f))
    assert online_names(frame) == set()


async def test_a_flood_of_read_markers_is_merged_not_written_each(chat):
    # Each marker was a registry write and a broadcast to every api process, unlimited.
    backend = chat.backend
    alice = await chat.client("sysadmin")
    eve = await chat.client("engineer")
    for i in range(3):
        await alice.say(f"question {i}")
    await eve.messages(3)
    writes = []
    real = backend.registry.set_read_marker

    async def counted(*args):
        writes.append(args)
        await real(*args)

    backend.registry.set_read_marker = counted
    for i in range(200):
        await eve.send_frame({"type": "chat.read", "conversation": alice.username, "id": 1 + i % 3})
    # the first is stored at once, the other 199 merged into one, stored a second later
    first = await alice.next("chat.read")
    merged = await alice.next("chat.read")
    assert (first["id"], merged["id"]) == (1, 3)
    assert len(writes) == 2
    assert await alice.quiet("chat.read") == []
