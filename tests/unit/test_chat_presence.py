"""Chat presence: connections counted per user, other processes' snapshots expiring."""

from __future__ import annotations

from backend.services.chat.presence import EXPIRY_S, Presence


def test_presence_counts_connections_and_expires_silent_processes():
    now = [0.0]
    presence = Presence(clock=lambda: now[0])
    assert presence.connect("eve", "engineer") is True
    assert presence.connect("eve", "engineer") is False  # a second terminal
    assert presence.connect("alice", "sysadmin") is True
    presence.apply_snapshot("other", {"bob": "sysadmin", "root": "admin"})
    assert presence.visible_to("sysadmin") == [
        {"username": "eve", "role": "engineer"},
        {"username": "root", "role": "admin"},
    ]
    assert [u["username"] for u in presence.visible_to("engineer")] == ["alice", "bob", "eve", "root"]
    assert presence.disconnect("eve") is False
    assert presence.disconnect("eve") is True
    assert presence.disconnect("eve") is False  # already gone
    now[0] = EXPIRY_S + 1  # the other process went silent
    assert presence.online() == {"alice": "sysadmin"}
    presence.apply_snapshot("other", {"root": "admin"})
    presence.apply_snapshot("other", {})  # it shut down
    assert presence.online() == {"alice": "sysadmin"}
