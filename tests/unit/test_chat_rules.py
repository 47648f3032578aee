"""Chat's pure parts: text neutralising, the rules on frames, the rate limit, presence, and the
per-connection stream that turns out-of-order deliveries into an in-order, exactly-once one."""

from __future__ import annotations

import asyncio
import unicodedata

import pytest

from backend.ports import ChatMessage, Unavailable
from backend.services.auth import Principal
from backend.services.chat_presence import EXPIRY_S, Presence
from backend.services.chat_rules import ChatRefused, RateLimit, can_see, conversation_of, page_limit, since_of
from backend.services.chat_stream import CATCH_UP_PAGE, ChatStream
from backend.services.chat_text import neutralise, utf8_size

# --- text ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b]0;pwned\x07", "␛]0;pwned␇"),                   # set the terminal's title
    ("\x1b[2J\x1b[H", "␛[2J␛[H"),                         # clear the screen, home the cursor
    ("\x9b31mred", "<U+009B>31mred"),                     # one-byte CSI (C1)
    ("\x1bP+q\x1b\\", "␛P+q␛\\"),                         # device control string
    ("abc\u202edcba\u202c", "abc<U+202E>dcba<U+202C>"),   # right-to-left override
    ("\u2066x\u2069 \u200f", "<U+2066>x<U+2069> <U+200F>"),  # isolates, RLM
    ("over\rwrite", "over␍write"),                         # a bare CR would overwrite the line
    ("nul\x00 del\x7f", "nul␀ del␡"),
    ("a\r\nb\u2028c", "a\nb\nc"),                          # line breaks become plain newlines
    ("tab\there\nnext", "tab\there\nnext"),               # kept: readable
    ("caf\u00e9 😀 Grüße", "caf\u00e9 😀 Grüße"),          # ordinary text is untouched
    ("\ud800x", "\ufffdx"),                               # a lone surrogate cannot be stored
])
def test_neutralise_makes_controls_visible_and_keeps_text(raw, shown):
    out = neutralise(raw)
    assert out == shown
    assert all(c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs") for c in out)


def test_message_size_is_counted_in_utf8_bytes():
    assert utf8_size("a" * 10) == 10
    assert utf8_size("😀") == 4 and utf8_size("é") == 2
    assert utf8_size("\ud800") == 3


# --- rules ----------------------------------------------------------------------------------------

ALICE = Principal("alice", "sysadmin")
BOB = Principal("bob", "sysadmin")
EVE = Principal("eve", "engineer")
ROOT = Principal("root", "admin")


def test_only_support_staff_see_every_conversation():
    assert can_see(ALICE, "alice") and not can_see(ALICE, "bob")
    assert can_see(EVE, "alice") and can_see(EVE, "bob") and can_see(ROOT, "bob")
    assert not can_see(Principal("key:abc", "ingest"), "alice")


def test_conversation_of_a_frame():
    assert conversation_of(ALICE, {}) == "alice"
    assert conversation_of(ALICE, {"conversation": "alice"}) == "alice"
    assert conversation_of(EVE, {"conversation": "bob"}) == "bob"
    with pytest.raises(ChatRefused) as refused:
        conversation_of(ALICE, {"conversation": "bob"})
    assert refused.value.code == "forbidden"
    for frame in ({}, {"conversation": {"$ne": ""}}, {"conversation": "a b"}, {"conversation": "x" * 65}):
        with pytest.raises(ChatRefused) as refused:
            conversation_of(EVE, frame)
        assert refused.value.code == "bad_request" and "conversation" in refused.value.message


def test_since_and_page_limits_are_checked():
    assert since_of({}) == {} and since_of({"since": {"alice": 3}}) == {"alice": 3}
    for bad in ({"alice": -1}, {"alice": True}, {"alice": "3"}, ["alice"], {"$where": 1}):
        with pytest.raises(ChatRefused, match="since"):
            since_of({"since": bad})
    assert page_limit({}) == 50 and page_limit({"limit": 100}) == 100
    for bad in (0, 101, "5", 2.5):
        with pytest.raises(ChatRefused, match="limit"):
            page_limit({"limit": bad})


def test_rate_limit_allows_a_burst_then_one_a_second_per_user():
    now = [0.0]
    rate = RateLimit(burst=3, per_s=1.0, clock=lambda: now[0])
    for _ in range(3):
        rate.take("alice")
    with pytest.raises(ChatRefused) as refused:
        rate.take("alice")
    assert refused.value.code == "rate_limited" and refused.value.fields == {"retry_after_ms": 1000}
    rate.take("bob")  # another user has an allowance of their own
    now[0] = 0.5
    with pytest.raises(ChatRefused) as refused:
        rate.take("alice")
    assert refused.value.fields == {"retry_after_ms": 500}
    now[0] = 1.0
    rate.take("alice")
    now[0] = 100.0
    for _ in range(3):  # the allowance refills up to the burst, not beyond
        rate.take("alice")
    with pytest.raises(ChatRefused):
        rate.take("alice")


# --- presence -------------------------------------------------------------------------------------


def test_presence_counts_connections_and_expires_silent_processes():
    now = [0.0]
    presence = Presence(clock=lambda: now[0])
    assert presence.connect("eve", "engineer") is True
    assert presence.connect("eve", "engineer") is False  # a second terminal
    assert presence.connect("alice", "sysadmin") is True
    presence.apply_snapshot("other", {"bob": "sysadmin", "root": "admin"})
    assert presence.visible_to("sysadmin") == [{"username": "eve", "role": "engineer"},
                                               {"username": "root", "role": "admin"}]
    assert [u["username"] for u in presence.visible_to("engineer")] == ["alice", "bob", "eve", "root"]
    assert presence.disconnect("eve") is False
    assert presence.disconnect("eve") is True
    assert presence.disconnect("eve") is False  # already gone
    now[0] = EXPIRY_S + 1  # the other process went silent
    assert presence.online() == {"alice": "sysadmin"}
    presence.apply_snapshot("other", {"root": "admin"})
    presence.apply_snapshot("other", {})  # it shut down
    assert presence.online() == {"alice": "sysadmin"}


# --- the per-connection stream ----------------------------------------------------------------------


def msg(i: int, conversation: str = "alice") -> ChatMessage:
    return ChatMessage(conversation, i, "alice", "sysadmin", f"m{i}", 1_000 + i, f"k{i}")


class Store:
    """The registry's chat_after over a list; `fail` makes reads raise Unavailable."""

    def __init__(self, count: int) -> None:
        self.messages = [msg(i) for i in range(1, count + 1)]
        self.reads = 0
        self.fail = False

    async def after(self, conversation: str, after_id: int, limit: int) -> list[ChatMessage]:
        self.reads += 1
        await asyncio.sleep(0)
        if self.fail:
            raise Unavailable("registry down")
        return [m for m in self.messages if m.conversation == conversation and m.id > after_id][:limit]


def sent_ids(frames: list[dict]) -> list[int]:
    return [m["id"] for f in frames if f["type"] == "chat.messages" for m in f["messages"]]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_stream_sends_each_message_once_in_order_whatever_the_arrival_order():
    store = Store(6)
    frames: list[dict] = []
    stream = ChatStream(frames.append, store.after)
    stream.hold()
    stream.resume({"alice": 2})
    # 3 is next; 5 arrives before 4 (another process was faster); 3 again is a duplicate.
    for i in (3, 5, 3, 4, 6, 5):
        stream.offer(store.messages[i - 1])
    await settle()
    assert sent_ids(frames) == [3, 4, 5, 6]


async def test_stream_holds_live_messages_while_joining_and_catches_up_from_since():
    store = Store(2 * CATCH_UP_PAGE + 5)
    frames: list[dict] = []
    stream = ChatStream(frames.append, store.after)
    stream.hold()
    stream.offer(store.messages[-1])  # arrives while the join reads the registry
    assert frames == []
    stream.resume({"alice": 3}, catch_up=["alice"])
    await settle()
    assert sent_ids(frames) == list(range(4, 2 * CATCH_UP_PAGE + 6))
    assert all(len(f["messages"]) <= CATCH_UP_PAGE for f in frames)


async def test_a_new_conversation_is_sent_from_its_start_and_failures_retry_later():
    store = Store(0)
    store.messages = [msg(1, "carol"), msg(2, "carol")]
    frames: list[dict] = []
    stream = ChatStream(frames.append, store.after)
    stream.resume({})
    store.fail = True
    stream.offer(store.messages[1])  # 1 is missing: read the registry, which is down
    await settle()
    assert sent_ids(frames) == [] and frames[-1]["code"] == "unavailable"
    store.fail = False
    store.messages.append(msg(3, "carol"))
    stream.offer(store.messages[2])
    await settle()
    assert sent_ids(frames) == [1, 2, 3]
