"""The chat pane, driven by Pilot against a real `tasker backend` child process.

The other side of each conversation is a real websocket client (`tasker.client`), so every
message goes through the backend: stored, fanned out, and drawn by the pane.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import pytest
from textual.widgets import OptionList

from backend.bootstrap import open_registry
from backend.services.auth import AuthService
from tasker.client import TaskerClient
from tasker_tui.app import TaskerApp
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tests.tui.conftest import login, type_text, wait_until
from tests.tui.screen_text import widget_text

SIZE = (120, 40)
WAIT_S = 15.0


class RawChat:
    """A chat user on a plain websocket connection (the project's API client)."""

    def __init__(self, url: str, username: str, password: str) -> None:
        self.client = TaskerClient(url)
        self.username, self.password = username, password
        self.frames: list[dict[str, Any]] = []
        self._live = None
        self._reader: asyncio.Task | None = None

    async def __aenter__(self) -> RawChat:
        await self.client.login(self.username, self.password)
        self._live = self.client.live()
        live = await self._live.__aenter__()
        self._reader = asyncio.create_task(self._read(live))
        await live.send({"type": "chat.join"})
        await self.wait_for(lambda f: f["type"] == "chat.joined")
        return self

    async def _read(self, live) -> None:
        async for frame in live:
            self.frames.append(frame)

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        if self._live is not None:
            await self._live.__aexit__(None, None, None)
        await self.client.close()

    async def wait_for(self, match, timeout: float = WAIT_S) -> dict[str, Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while asyncio.get_running_loop().time() < deadline:
            for frame in self.frames:
                if match(frame):
                    return frame
            await asyncio.sleep(0.05)
        pytest.fail(f"{self.username}: no matching frame; got {[f['type'] for f in self.frames]}")

    def messages(self) -> list[dict[str, Any]]:
        return [m for f in self.frames if f["type"] == "chat.messages" for m in f["messages"]]

    async def send(self, frame: dict[str, Any]) -> None:
        await self._live.send(frame)

    async def say(self, text: str, conversation: str | None = None, **fields: Any) -> dict[str, Any]:
        key = secrets.token_hex(8)
        frame = {"type": "chat.send", "text": text, "client_key": key, **fields}
        if conversation:
            frame["conversation"] = conversation
        await self._live.send(frame)
        return await self.wait_for(lambda f: f.get("client_key") == key and f["type"] in ("chat.ack", "chat.error"))


@pytest.fixture
async def people(backend):
    """A fresh sysadmin, a second sysadmin and an engineer, written straight into the running
    backend's registry file (much faster than a `tasker users add` process each)."""
    tag = secrets.token_hex(2)
    users = {"ann": (f"ann{tag}", "sysadmin"), "cat": (f"cat{tag}", "sysadmin"), "eng": (f"eng{tag}", "engineer")}
    password = "chat-pass-1234"
    registry = open_registry(f"sqlite:///{backend.stack.root / 'registry.db'}")
    await registry.start()
    try:
        auth = AuthService(registry)
        await asyncio.gather(*(auth.add_user(name, role, password) for name, role in users.values()))
    finally:
        await registry.close()
    return {key: name for key, (name, _) in users.items()} | {"password": password}


async def logged_in(pilot, username: str, password: str) -> None:
    await login(pilot, username, password)
    await wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, FleetScreen) and pilot.app.link_status.live,
        what="the live fleet screen",
    )
    await wait_until(pilot, lambda: pilot.app.chat.connected, what="chat joined")


def topbar(app: TaskerApp) -> str:
    return widget_text(app, "#topbar")


def pane_words(app: TaskerApp) -> str:
    """What the chat pane's text widgets show, whitespace collapsed (the pane's border would
    interleave with wrapped lines in a whole-screen dump)."""
    parts = [str(w.render()) for w in app.screen.query("ChatPane Static")]
    for options in app.screen.query("#chat-conversations").results(OptionList):
        parts += [str(o.prompt) for o in options.options]
    return " ".join(" ".join(parts).split())


def toasts(app: TaskerApp) -> list[tuple[str, str]]:
    """(title, message) of the notifications on screen (Pilot's screen dump leaves toasts out)."""
    return [(n.title, n.message) for n in app._notifications]


async def wait_for_chat(pilot, text: str, timeout: float = WAIT_S) -> None:
    wanted = " ".join(text.split())
    await wait_until(pilot, lambda: wanted in pane_words(pilot.app), timeout, repr(text))


async def test_sysadmin_sees_their_conversation_sends_and_reads_answers(backend, people):
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["ann"], people["password"])
        await pilot.press("ctrl+t")
        await wait_for_chat(pilot, "Your conversation with support")
        await wait_for_chat(pilot, "no support engineer online")
        await wait_for_chat(pilot, "No messages yet")

        async with RawChat(backend.url, people["eng"], people["password"]) as eng:
            await wait_for_chat(pilot, f"support online: {people['eng']}")
            await type_text(pilot, "web-1 draws 900 W")
            await pilot.press("enter")
            got = await eng.wait_for(lambda f: f["type"] == "chat.messages")
            assert [(m["sender"], m["text"]) for m in got["messages"]] == [(people["ann"], "web-1 draws 900 W")]
            await wait_for_chat(pilot, "you web-1 draws 900 W")

            await eng.send({"type": "chat.typing", "conversation": people["ann"]})
            await wait_for_chat(pilot, f"{people['eng']} is typing…")
            await eng.say("looking at it \x1b]0;pwned\x07\x1b[2J now", conversation=people["ann"])
            await wait_for_chat(pilot, f"{people['eng']} (support) looking at it ␛]0;pwned␇␛[2J now")
            # Read while the pane is open: the engineer is told, and no badge counts it.
            await eng.wait_for(lambda f: f["type"] == "chat.read" and f["username"] == people["ann"] and f["id"] == 2)
            assert " chat 1 " not in topbar(app) and app.chat.unread == 0

        # Another sysadmin's conversation never shows up here.
        async with RawChat(backend.url, people["cat"], people["password"]) as cat:
            await cat.say("cat's secret")
            await pilot.pause(0.5)
            assert "cat's secret" not in pane_words(app)


async def test_engineer_sees_conversations_with_unread_counts_and_answers_the_selected_one(backend, people):
    async with (
        RawChat(backend.url, people["ann"], people["password"]) as ann,
        RawChat(backend.url, people["cat"], people["password"]) as cat,
    ):
        await ann.say("ann one")
        await ann.say("ann two")
        await cat.say("cat one")

        app = TaskerApp(backend.url, remember_session=False)
        async with app.run_test(size=SIZE) as pilot:
            await logged_in(pilot, people["eng"], people["password"])
            # Other tests' conversations are there too: look at this test's two.
            chat = app.chat
            await wait_until(
                pilot,
                lambda: (
                    {n: c.unread for n, c in chat.conversations.items() if n in (people["ann"], people["cat"])}
                    == {people["ann"]: 2, people["cat"]: 1}
                ),
                what="the unread counts",
            )
            assert chat.unread >= 3
            await wait_until(pilot, lambda: f" chat {chat.unread} " in topbar(app), what="the unread badge")
            await pilot.press("ctrl+t")
            # The list shows who is online and what is unread; the most recent conversation with
            # unread messages (cat's) opens, and is read by being shown.
            await wait_for_chat(pilot, f"● {people['ann']} (2)")
            await wait_for_chat(pilot, "cat one")
            await wait_for_chat(pilot, f"● {people['cat']} ● {people['ann']} (2)")
            assert chat.conversations[people["cat"]].unread == 0
            await wait_until(pilot, lambda: f" chat {chat.unread} " in topbar(app), what="a lower badge")

            # Switch to ann's conversation and answer it.
            for _ in range(len(app.chat.conversations)):
                if app.chat.selected == people["ann"]:
                    break
                await pilot.press("ctrl+down")
            await wait_for_chat(pilot, "ann one")
            await wait_for_chat(pilot, "ann two")
            await type_text(pilot, "on it")
            await pilot.press("enter")
            answer = await ann.wait_for(lambda f: f["type"] == "chat.messages" and f["messages"][0]["text"] == "on it")
            assert answer["messages"][0]["sender"] == people["eng"]
            await wait_until(pilot, lambda: app.chat.conversations[people["ann"]].unread == 0, what="read")
            assert all(m["text"] != "on it" for m in cat.messages())


async def test_toast_bell_and_badge_when_a_message_arrives_while_the_pane_is_closed(backend, people):
    app = TaskerApp(backend.url, remember_session=False)
    bells: list[int] = []
    app.bell = lambda: bells.append(1)  # type: ignore[method-assign]
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["ann"], people["password"])
        async with RawChat(backend.url, people["eng"], people["password"]) as eng:
            await eng.say("please check db-1", conversation=people["ann"])
            await wait_until(
                pilot,
                lambda: (f"{people['eng']} (support)", "please check db-1  (ctrl+t opens the chat)") in toasts(app),
                what="the toast",
            )
            await wait_until(pilot, lambda: " chat 1 " in topbar(app), what="the unread badge")
            assert bells
            await pilot.press("ctrl+t")
            await wait_until(pilot, lambda: " chat 1 " not in topbar(app), what="the badge to clear")
            await wait_for_chat(pilot, f"{people['eng']} (support) please check db-1")
            # Escape closes the pane again; the keys go back to the fleet table.
            await pilot.press("escape")
            await wait_until(
                pilot,
                lambda: not app.chat_open and not app.screen.query_one("ChatPane").has_class("-open"),
                what="the pane to close",
            )
            assert isinstance(app.screen, FleetScreen) and app.focused is app.screen.table


async def test_messages_typed_while_offline_are_sent_once_on_reconnect(backend, people):
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["ann"], people["password"])
        await pilot.press("ctrl+t")
        await wait_for_chat(pilot, "No messages yet")
        app.link.backoff.maximum = 0.5  # reconnect promptly once the backend is back
        backend.stack.stop_backend()
        await wait_until(pilot, lambda: not app.chat.connected, what="chat offline")
        for text in ("one offline", "two offline"):
            await type_text(pilot, text)
            await pilot.press("enter")
        await wait_for_chat(pilot, "you (sending…) one offline ⧗ you (sending…) two offline")
        # Same port; the backend listens with SO_REUSEADDR, so sockets in TIME_WAIT do not matter.
        backend.stack.start_backend(backend.stack.port)
        await wait_until(
            pilot,
            lambda: app.chat.connected and not app.chat.outbox,
            timeout=30,
            what="the outbox sent after reconnecting",
        )
        async with RawChat(backend.url, people["eng"], people["password"]) as eng:
            await eng.send({"type": "chat.history", "conversation": people["ann"]})
            history = await eng.wait_for(lambda f: f["type"] == "chat.history")
        assert [m["text"] for m in history["messages"]] == ["one offline", "two offline"]


async def test_an_attached_server_opens_its_detail_for_the_receiver(backend, people):
    async with await backend.admin() as api:
        server = await api.create_server(
            {
                "name": f"chat-{secrets.token_hex(3)}",
                "location": {"region": "eu-west", "site": ""},
                "energy_source": "wind",
                "idle_watts": 100,
                "max_watts": 400,
                "cores": 8,
                "tags": [],
            }
        )
    # The sysadmin attaches the server selected in the fleet table with ctrl+b.
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["ann"], people["password"])
        table = app.screen.table
        await wait_until(pilot, lambda: server["id"] in table.shown_ids, what="the new server in the table")
        table.move_cursor(row=table.shown_ids.index(server["id"]))
        await pilot.press("ctrl+t")
        await pilot.pause(0.2)
        await pilot.press("ctrl+b")
        await wait_for_chat(pilot, f"📎 {server['name']}")
        await type_text(pilot, "this one")
        await pilot.press("enter")
        await wait_for_chat(pilot, f"↗ {server['name']}")

    # The engineer sees the reference and opens it with ctrl+o.
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["eng"], people["password"])
        await wait_until(pilot, lambda: people["ann"] in app.chat.conversations, what="ann's conversation")
        app.chat.select(people["ann"])
        await pilot.press("ctrl+t")
        await wait_for_chat(pilot, f"this one ↗ {server['name']}")
        await pilot.press("ctrl+o")
        await wait_until(
            pilot,
            lambda: isinstance(app.screen, DetailScreen) and app.screen.server_id == server["id"],
            what="the server's detail",
        )


async def test_quitting_with_unsent_chat_messages_warns_first(backend, people):
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in(pilot, people["cat"], people["password"])
        await pilot.press("ctrl+t")
        await wait_for_chat(pilot, "No messages yet")
        backend.stack.stop_backend()
        try:
            await wait_until(pilot, lambda: not app.chat.connected, what="chat offline")
            await type_text(pilot, "still here?")
            await pilot.press("enter")
            await wait_for_chat(pilot, "you (sending…) still here?")
            await pilot.press("ctrl+q")
            await pilot.pause(0.2)
            assert app.is_running
            assert any(
                title == "Unsent chat" and "1 chat message is not sent yet" in message for title, message in toasts(app)
            )
            await pilot.press("ctrl+q")
            await pilot.pause(0.2)
            assert not app.is_running
        finally:
            backend.stack.start_backend(backend.stack.port)
