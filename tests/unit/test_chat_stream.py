"""One connection's chat stream turns out-of-order deliveries into an in-order, exactly-once one."""

from __future__ import annotations

import asyncio

from backend.ports import ChatMessage, Unavailable
from backend.services.chat.stream import CATCH_UP_PAGE, ChatStream


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
