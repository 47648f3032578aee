"""The TUI's chat state without a network: the outbox (in order, once, across reconnects), the
join with `since`, gaps, unread counts and alerts. The backend side is played by the test."""

from __future__ import annotations

import asyncio
from typing import Any

from tasker.client import BackendUnavailable
from tasker_tui.chat.state import ChatState


class Link:
    """One websocket connection as the state sees it: a send that records frames."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    async def send(self, frame) -> None:
        if self.fail:
            raise BackendUnavailable(0, "the websocket is closed", unreachable=True)
        self.sent.append(dict(frame))

    def of(self, frame_type: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f["type"] == frame_type]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def joined(me: str = "alice", role: str = "sysadmin", **rows: tuple[int, int]) -> dict[str, Any]:
    return {
        "type": "chat.joined",
        "username": me,
        "role": role,
        "online": [],
        "limits": {"max_message_bytes": 4096},
        "conversations": [
            {"conversation": c, "last_id": last, "last_ts": 1_000 * last, "read_id": read, "unread": last - read}
            for c, (last, read) in rows.items()
        ],
    }


def message(i: int, sender: str, conversation: str = "alice") -> dict[str, Any]:
    return {
        "conversation": conversation,
        "id": i,
        "sender": sender,
        "sender_role": "engineer",
        "text": f"m{i}",
        "ts": 1_000 * i,
        "client_key": f"k{i}",
    }


def ack(frame: dict[str, Any], i: int, duplicate: bool = False) -> dict[str, Any]:
    return {
        "type": "chat.ack",
        "client_key": frame["client_key"],
        "conversation": "alice",
        "id": i,
        "ts": 1_000 * i,
        "duplicate": duplicate,
    }


async def test_messages_typed_offline_go_in_order_one_at_a_time_once_connected():
    chat = ChatState()
    assert chat.submit("first") is None and chat.submit("second") is None
    link = Link()
    chat.attach_sender(link.send)
    await settle()
    assert link.of("chat.join") == [{"type": "chat.join"}] and link.of("chat.send") == []
    chat.handle_frame(joined(alice=(0, 0)))
    await settle()
    [first] = link.of("chat.send")  # the second waits for the first's acknowledgement
    assert (first["text"], first["conversation"]) == ("first", "alice")
    chat.handle_frame(ack(first, 1))
    await settle()
    second = link.of("chat.send")[1]
    assert second["text"] == "second" and second["client_key"] != first["client_key"]
    chat.handle_frame(ack(second, 2))
    await settle()
    assert chat.outbox == [] and len(link.of("chat.send")) == 2


async def test_an_unacknowledged_message_goes_again_with_the_same_key_after_a_reconnect():
    chat = ChatState()
    first_link = Link()
    chat.attach_sender(first_link.send)
    chat.handle_frame(joined(alice=(4, 4)))
    chat.handle_frame({"type": "chat.messages", "conversation": "alice", "messages": [message(5, "eve")]})
    chat.submit("are you there?")
    await settle()
    [sent] = first_link.of("chat.send")
    chat.attach_sender(None)  # the link drops before the acknowledgement
    await settle()
    assert [e.text for e in chat.outbox] == ["are you there?"]

    second_link = Link()
    chat.attach_sender(second_link.send)
    await settle()
    assert second_link.of("chat.join") == [{"type": "chat.join", "since": {"alice": 5}}]
    chat.handle_frame(joined(alice=(6, 6)))
    await settle()
    [again] = second_link.of("chat.send")
    assert again == sent  # same key: the backend stores it once
    chat.handle_frame(ack(again, 6, duplicate=True))
    await settle()
    assert chat.outbox == []


async def test_rate_limited_messages_wait_and_refused_ones_are_shown_not_resent():
    chat = ChatState()
    link = Link()
    chat.attach_sender(link.send)
    chat.handle_frame(joined(alice=(0, 0)))
    chat.submit("hello")
    await settle()
    [sent] = link.of("chat.send")
    chat.handle_frame(
        {
            "type": "chat.error",
            "code": "rate_limited",
            "message": "too many messages",
            "client_key": sent["client_key"],
            "retry_after_ms": 20,
        }
    )
    await settle()
    assert chat.outbox[0].waiting == "too many messages"
    await asyncio.sleep(0.05)
    assert link.of("chat.send") == [sent, sent]
    chat.handle_frame(
        {
            "type": "chat.error",
            "code": "too_long",
            "message": "the message is too long",
            "client_key": sent["client_key"],
        }
    )
    await settle()
    assert chat.outbox == [] and [(e.text, e.error) for e in chat.refused] == [("hello", "the message is too long")]
    assert [e.text for e in chat.pending_for("alice")] == ["hello"]


async def test_oversized_or_empty_input_is_refused_before_queueing():
    chat = ChatState()
    assert chat.submit("   ") == "type a message first"
    assert chat.submit("😀" * 1025) == "too long: 4100 bytes, at most 4096 fit in one message"
    assert chat.outbox == []


async def test_unread_counts_alerts_and_reading_by_opening_the_pane():
    chat = ChatState()
    link = Link()
    chat.attach_sender(link.send)
    chat.handle_frame(joined("eve", "engineer", alice=(3, 1), bob=(2, 2)))
    assert chat.unread == 2 and chat.selected == "alice"  # the conversation with unread messages
    chat.handle_frame({"type": "chat.messages", "conversation": "bob", "messages": [message(3, "bob", "bob")]})
    assert chat.unread == 3
    assert chat.take_alerts() == [("bob", "m3")] and chat.take_alerts() == []
    chat.set_viewing(True)  # the pane opens on alice's conversation
    await settle()
    assert link.of("chat.read") == [{"type": "chat.read", "conversation": "alice", "id": 3}]
    assert chat.unread == 1
    chat.handle_frame({"type": "chat.messages", "conversation": "alice", "messages": [message(4, "alice")]})
    await settle()
    assert chat.take_alerts() == [] and link.of("chat.read")[-1]["id"] == 4  # seen as it came
    # Another terminal of eve's read bob's conversation.
    chat.handle_frame({"type": "chat.read", "conversation": "bob", "username": "eve", "id": 3})
    assert chat.unread == 0


async def test_a_gap_in_the_stream_asks_for_the_missing_messages_and_duplicates_are_ignored():
    chat = ChatState()
    link = Link()
    chat.attach_sender(link.send)
    chat.handle_frame(joined("eve", "engineer", alice=(2, 2)))
    chat.handle_frame({"type": "chat.messages", "conversation": "alice", "messages": [message(5, "alice")]})
    await settle()
    assert {"type": "chat.history", "conversation": "alice", "after": 2, "limit": 100} in link.sent
    chat.handle_frame(
        {
            "type": "chat.history",
            "conversation": "alice",
            "after": 2,
            "messages": [message(3, "alice"), message(4, "alice"), message(5, "alice")],
        }
    )
    assert [m.id for m in chat.conversations["alice"].ordered()] == [3, 4, 5]


async def test_a_send_that_fails_leaves_the_message_queued():
    chat = ChatState()
    link = Link(fail=True)
    chat.attach_sender(link.send)
    chat.handle_frame(joined(alice=(0, 0)))
    chat.submit("still here")
    await settle()
    assert [e.text for e in chat.outbox] == ["still here"]


async def test_support_is_shown_the_first_conversation_that_starts_after_joining():
    chat = ChatState()
    link = Link()
    chat.attach_sender(link.send)
    chat.handle_frame(joined("eve", "engineer"))
    assert chat.shown() is None
    chat.handle_frame({"type": "chat.messages", "conversation": "alice", "messages": [message(1, "alice")]})
    await settle()
    assert chat.selected == "alice" and chat.shown().ordered()[0].text == "m1"
    assert {"type": "chat.history", "conversation": "alice", "limit": 50} in link.sent
    # A message in alice's conversation from another engineer names both.
    chat.handle_frame({"type": "chat.messages", "conversation": "alice", "messages": [message(2, "bob")]})
    assert chat.take_alerts()[-1][0] == "bob in alice's chat"


async def test_a_different_user_logging_in_never_sends_the_previous_users_outbox():
    chat = ChatState()
    chat.attach_sender(Link().send)
    chat.handle_frame(joined(alice=(2, 2)))
    chat.attach_sender(None)
    chat.submit("alice's unsent words")
    link = Link()
    chat.attach_sender(link.send)  # bob logged in on this TUI
    chat.handle_frame(joined("bob", bob=(1, 0)))
    await settle()
    assert link.of("chat.send") == [] and chat.outbox == []
    assert list(chat.conversations) == ["bob"] and chat.unread == 1
