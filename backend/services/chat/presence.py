"""Who is online, across every api process.

Each process counts the websocket connections of its own users and publishes a snapshot of
them (on every change, every `HEARTBEAT_S`, and when a new process asks). Others keep each
process's last snapshot until it is `EXPIRY_S` old, so a process that died without a word
stops counting within that time. Nothing is stored: presence is what is connected now.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backend.services.chat.access import SUPPORT_ROLES

HEARTBEAT_S = 15.0
"""How often a process re-publishes who is connected to it."""
EXPIRY_S = 3 * HEARTBEAT_S
"""How long another process's snapshot counts without being refreshed."""


class Presence:
    """Online users: this process's connection counts plus other processes' snapshots."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._local: dict[str, tuple[str, int]] = {}  # username -> (role, open connections)
        self._remote: dict[str, tuple[float, dict[str, str]]] = {}  # process -> (seen at, users)

    def connect(self, username: str, role: str) -> bool:
        """One more connection of `username`; True when that made them appear online here."""
        _, count = self._local.get(username, (role, 0))
        self._local[username] = (role, count + 1)
        return count == 0

    def disconnect(self, username: str) -> bool:
        """One connection fewer; True when `username` has no connection left here."""
        role, count = self._local.get(username, ("", 0))
        if count <= 1:
            self._local.pop(username, None)
            return count == 1
        self._local[username] = (role, count - 1)
        return False

    def local_snapshot(self) -> dict[str, str]:
        """username -> role of the users connected to this process."""
        return {name: role for name, (role, _) in self._local.items()}

    def apply_snapshot(self, process: str, users: dict[str, str]) -> None:
        """Another process's users (an empty dict when it shut down)."""
        if users:
            self._remote[process] = (self._clock(), dict(users))
        else:
            self._remote.pop(process, None)

    def online(self) -> dict[str, str]:
        """username -> role of everyone online anywhere (expired snapshots are dropped)."""
        now = self._clock()
        for process, (seen, _) in list(self._remote.items()):
            if now - seen > EXPIRY_S:
                del self._remote[process]
        users: dict[str, str] = {}
        for _, remote in self._remote.values():
            users.update(remote)
        users.update(self.local_snapshot())
        return users

    def visible_to(self, role: str) -> list[dict[str, str]]:
        """Who a user of `role` sees online: support staff see everyone, a sysadmin sees only
        the engineers and admins (never which other sysadmins are around)."""
        users = self.online()
        return [
            {"username": name, "role": user_role}
            for name, user_role in sorted(users.items())
            if role in SUPPORT_ROLES or user_role in SUPPORT_ROLES
        ]
