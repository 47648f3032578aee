"""Chat access: who sees which conversation, the checks on frame fields, the rate limit."""

from __future__ import annotations

import pytest

from backend.services.auth import Principal
from backend.services.chat.access import ChatRefused, RateLimit, can_see, conversation_of, page_limit, since_of

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
