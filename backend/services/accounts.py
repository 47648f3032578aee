"""Account administration: passwords, disabling, deleting, and the sessions of a user.

Used by `tasker users ...` (on the registry directly, actor `shell:NAME`) and by the HTTP routes
(`/api/v1/me/password`, `/api/v1/users/...`, actor the admin's username). Every change is in
the audit log. Rules a sysadmin can count on:

- A password is set only if the policy allows it (`password_policy`); setting one ends every
  session of the user (a self-service change keeps the session that made it).
- Disabling ends every session of the user at once and refuses its logins; enabling lets it
  log in again (its old sessions stay ended).
- Deleting a user who owns servers or unfinished tasks is refused unless they are handed to
  another sysadmin or admin (`transfer_to`); finished tasks, chat and audit entries keep the
  name. The user is disabled first, so a deletion cut short leaves it disabled, not half alive.
- The last enabled admin can be neither disabled nor deleted, and an admin cannot disable or
  delete themselves over HTTP (another admin, or the shell, can).

"At once" means: in this process immediately (cached lookups dropped, websockets closed);
in other api processes within `auth.CACHE_TTL_S` for HTTP calls and
`backend.http.ws.SESSION_CHECK_S` for websockets.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from backend.ports import OPEN_STATES, Conflict, NotFound, SessionRecord, UserRecord
from backend.services.audit import AuditLog
from backend.services.auth import Principal, check_password, require_string
from backend.services.errors import Forbidden, InvalidField
from backend.services.passwords import hash_password
from backend.services.timestamps import format_rfc3339, now_ms

if TYPE_CHECKING:
    from backend.services.auth import AuthService

SESSION_ID_CHARS = 12
"""A session is named by this many leading hex digits of its token's SHA-256: enough to tell a
user's sessions apart, too few to be worth anything to whoever reads them."""
UNFINISHED_TASK_STATES = (*sorted(OPEN_STATES), "running")
_TASK_CAS_ATTEMPTS = 20


def session_id(session: SessionRecord) -> str:
    return session.token_hash[:SESSION_ID_CHARS]


def session_json(session: SessionRecord, current: str | None = None) -> dict[str, Any]:
    return {
        "id": session_id(session),
        "created_at": format_rfc3339(session.created_at_ms),
        "expires_at": format_rfc3339(session.expires_at_ms),
        "client": session.client or None,
        "current": session.token_hash == current,
    }


@dataclass(frozen=True, slots=True)
class UserSummary:
    user: UserRecord
    sessions: int
    """Sessions not yet expired."""

    def as_json(self) -> dict[str, Any]:
        u = self.user
        return {
            "username": u.username,
            "role": u.role,
            "disabled": u.disabled_at_ms is not None,
            "disabled_at": None if u.disabled_at_ms is None else format_rfc3339(u.disabled_at_ms),
            "must_change_password": u.must_change_password,
            "created_at": format_rfc3339(u.created_at_ms),
            "password_changed_at": (
                None if u.password_changed_at_ms is None else format_rfc3339(u.password_changed_at_ms)
            ),
            "sessions": self.sessions,
        }


@dataclass(frozen=True, slots=True)
class Removal:
    """What deleting a user did."""

    servers: list[str]
    """Names of the servers handed to `transfer_to`."""
    tasks: int
    """Unfinished tasks handed to `transfer_to`."""
    sessions: int


class AccountService:
    """Passwords, disabling, deleting and sessions of users; see the module docstring."""

    def __init__(self, auth: AuthService) -> None:
        self.auth = auth
        self.registry = auth.registry
        self.audit = AuditLog(auth.registry)

    async def require_user(self, username: Any) -> UserRecord:
        user = await self.registry.get_user(username) if isinstance(username, str) else None
        if user is None:
            raise NotFound(f"no user {username!r}")
        return user

    async def _hash(self, password: str) -> str:
        return await asyncio.to_thread(hash_password, password)

    async def _end_sessions(self, username: str, keep: str | None = None) -> int:
        ended = await self.registry.delete_user_sessions(username, keep)
        self.auth.sessions_ended(username=username, keep=keep)
        return ended

    # --- reading ------------------------------------------------------------------------------

    async def list_users(self) -> list[UserSummary]:
        """Every user with how many unexpired sessions they have, by username."""
        now = now_ms()
        users = await self.registry.list_users()
        sessions = await asyncio.gather(*(self.registry.list_sessions(u.username) for u in users))
        return [
            UserSummary(u, sum(1 for s in mine if s.expires_at_ms > now))
            for u, mine in zip(users, sessions, strict=True)
        ]

    async def sessions(self, username: str) -> list[SessionRecord]:
        """The user's unexpired sessions, oldest first; NotFound for an unknown user."""
        await self.require_user(username)
        now = now_ms()
        return [s for s in await self.registry.list_sessions(username) if s.expires_at_ms > now]

    # --- passwords ----------------------------------------------------------------------------

    async def change_own_password(self, principal: Principal, payload: Any, client: str | None = None) -> int:
        """`{"current_password", "new_password"}` from a logged-in user: checked against the
        current password (throttled like a login: a stolen session cannot guess it faster),
        then the policy; clears the must-change flag and ends the user's other sessions,
        whose count is returned."""
        if principal.token_hash is None:
            raise Forbidden("only a user's session can change its password")
        if not isinstance(payload, dict):
            raise InvalidField("body", 'must be a JSON object {"current_password", "new_password"}')
        current = require_string(payload, "current_password")
        new = require_string(payload, "new_password")
        auth = self.auth
        attempt = auth.throttle.begin(principal.name, client)
        outcome: bool | None = None
        try:
            async with auth.gate.slot(attempt):
                user = await auth.verify(principal.name, current)
            outcome = user is not None
        finally:
            auth.throttle.end(principal.name, client, outcome)
        if user is None:
            raise InvalidField("current_password", "is not the current password")
        if new == current:
            raise InvalidField("new_password", "is the current password; choose a new one")
        check_password(new, user.username, "new_password")
        await self.registry.set_password_hash(
            user.username, await self._hash(new), must_change_password=False, changed_at_ms=now_ms()
        )
        ended = await self._end_sessions(user.username, keep=principal.token_hash)
        auth.sessions_ended(token_hash=principal.token_hash)  # re-read: the flag is gone
        await self.audit.record(
            user.username, "user.password_changed", user.username, f"by the user; {ended} other session(s) ended"
        )
        return ended

    async def set_password(self, actor: str, username: str, password: str, must_change: bool = False) -> int:
        """An admin sets `username`'s password (policy checked); every session of the user
        ends. With `must_change` the user must choose another at the next login. Returns how
        many sessions ended."""
        user = await self.require_user(username)
        if not isinstance(password, str):
            raise InvalidField("password", "must be a string")
        check_password(password, user.username)
        await self.registry.set_password_hash(
            user.username, await self._hash(password), must_change_password=must_change, changed_at_ms=now_ms()
        )
        ended = await self._end_sessions(user.username)
        await self.audit.record(
            actor,
            "user.password_set",
            user.username,
            f"{ended} session(s) ended" + ("; must be changed at the next login" if must_change else ""),
        )
        return ended

    # --- disabling and deleting ---------------------------------------------------------------

    async def _refuse_last_admin(self, user: UserRecord, doing: str) -> None:
        if user.role != "admin" or user.disabled_at_ms is not None:
            return
        others = [
            u
            for u in await self.registry.list_users()
            if u.role == "admin" and u.disabled_at_ms is None and u.username != user.username
        ]
        if not others:
            raise Conflict(
                f"not {doing} {user.username}: it is the only enabled admin; make another "
                "admin first (tasker users add NAME --role admin)"
            )

    @staticmethod
    def _refuse_self(user: UserRecord, acting_user: str | None, doing: str, command: str) -> None:
        if acting_user is not None and acting_user == user.username:
            raise Forbidden(
                f"an admin may not {doing} themselves; another admin can, or the shell "
                f"(tasker users {command} {user.username})"
            )

    async def disable(self, actor: str, username: str, acting_user: str | None = None) -> int:
        """Disable a user and end its sessions; returns how many ended. Disabling a disabled
        user changes nothing but ends any session left."""
        user = await self.require_user(username)
        self._refuse_self(user, acting_user, "disable", "disable")
        await self._refuse_last_admin(user, "disabling")
        await self.registry.set_user_disabled(user.username, now_ms())
        ended = await self._end_sessions(user.username)
        if user.disabled_at_ms is None:
            await self.audit.record(actor, "user.disabled", user.username, f"{ended} session(s) ended")
        return ended

    async def enable(self, actor: str, username: str) -> bool:
        """Let a disabled user log in again; False when it was not disabled."""
        user = await self.require_user(username)
        if user.disabled_at_ms is None:
            return False
        await self.registry.set_user_disabled(user.username, None)
        await self.audit.record(actor, "user.enabled", user.username)
        return True

    async def owned(self, username: str) -> tuple[list[Any], list[Any]]:
        """The servers `username` owns and its unfinished tasks."""
        from backend.services.servers import owner_of

        servers = [s for s in await self.registry.list_servers() if owner_of(s) == username]
        tasks = await self.registry.list_tasks(owner=username, states=UNFINISHED_TASK_STATES)
        return servers, tasks

    async def remove(
        self, actor: str, username: str, transfer_to: str | None = None, acting_user: str | None = None
    ) -> Removal:
        """Delete a user (see the module docstring for what is refused and what is kept)."""
        user = await self.require_user(username)
        self._refuse_self(user, acting_user, "delete", "rm")
        await self._refuse_last_admin(user, "deleting")
        servers, tasks = await self.owned(user.username)
        heir: UserRecord | None = None
        if transfer_to is not None:
            heir = await self.registry.get_user(transfer_to) if isinstance(transfer_to, str) else None
            if (
                heir is None
                or heir.username == user.username
                or heir.role not in ("sysadmin", "admin")
                or heir.disabled_at_ms is not None
            ):
                raise InvalidField("transfer_to", "must be another enabled sysadmin or admin")
        elif servers or tasks:
            owned = []
            if servers:
                names = ", ".join(sorted(s.name for s in servers)[:5]) + (", ..." if len(servers) > 5 else "")
                owned.append(f"{len(servers)} server(s) ({names})")
            if tasks:
                owned.append(f"{len(tasks)} unfinished task(s)")
            raise Conflict(
                f"user {user.username} owns {' and '.join(owned)}; hand them to another "
                f"sysadmin or admin: tasker users rm {user.username} --transfer-to USER "
                "(HTTP: ?transfer_to=USER)"
            )
        # Disabled first: should anything below fail, the user is locked out, not half deleted.
        await self.registry.set_user_disabled(user.username, now_ms())
        ended = await self._end_sessions(user.username)
        moved: list[str] = []
        moved_tasks = 0
        if heir is not None:
            moved = await self._transfer_servers(actor, user.username, heir.username)
            moved_tasks = await self._transfer_tasks(actor, user.username, heir.username)
        await self.registry.delete_user(user.username)
        ended += await self._end_sessions(user.username)  # a login that raced the disabling
        detail = f"role {user.role}; {ended} session(s) ended"
        if heir is not None:
            detail += f"; {len(moved)} server(s) and {moved_tasks} task(s) to {heir.username}"
        await self.audit.record(actor, "user.removed", user.username, detail)
        return Removal(moved, moved_tasks, ended)

    async def _transfer_servers(self, actor: str, username: str, heir: str) -> list[str]:
        from backend.services.servers import owner_of

        moved = []
        for server in await self.registry.list_servers():
            if owner_of(server) != username:
                continue
            await self.registry.replace_server(
                replace(server, owner=heir, updated_at_ms=now_ms(), tags=list(server.tags))
            )
            await self.audit.record(
                actor, "server.transferred", server.id, f"from {username} to {heir} (user {username} removed)"
            )
            moved.append(server.name)
        return moved

    async def _transfer_tasks(self, actor: str, username: str, heir: str) -> int:
        """Hand each unfinished task to `heir` by compare-and-set (a plan written meanwhile is
        kept: the write is retried on the newer version)."""
        moved = 0
        for task in await self.registry.list_tasks(owner=username, states=UNFINISHED_TASK_STATES):
            for _ in range(_TASK_CAS_ATTEMPTS):
                try:
                    current = await self.registry.get_task(task.id)
                except NotFound:
                    break
                if current.owner != username or current.state not in UNFINISHED_TASK_STATES:
                    break
                handed = replace(current, owner=heir, version=current.version + 1, updated_at_ms=now_ms())
                if await self.registry.update_task(handed, current.version):
                    moved += 1
                    await self.audit.record(
                        actor, "task.transferred", task.id, f"from {username} to {heir} (user {username} removed)"
                    )
                    break
            else:
                raise Conflict(f"task {task.id} kept changing while it was being handed to {heir}; try again")
        return moved

    # --- sessions -----------------------------------------------------------------------------

    async def revoke_sessions(self, actor: str, username: str, only: str | None = None, keep: str | None = None) -> int:
        """End the user's sessions (or only the one whose id starts with `only`), never the one
        of token hash `keep`; returns how many ended. NotFound for an unknown user or session."""
        user = await self.require_user(username)
        if only is None:
            ended = await self._end_sessions(user.username, keep)
        else:
            if not isinstance(only, str) or len(only) < 6:
                raise InvalidField("session", "must be a session id (at least 6 of its characters)")
            matches = [
                s
                for s in await self.registry.list_sessions(user.username)
                if s.token_hash.startswith(only.lower()) and s.token_hash != keep
            ]
            if not matches:
                raise NotFound(f"no session {only!r} of user {user.username}")
            if len(matches) > 1:
                raise InvalidField("session", f"{only!r} names {len(matches)} sessions; give more characters")
            await self.registry.delete_session(matches[0].token_hash)
            self.auth.sessions_ended(token_hash=matches[0].token_hash)
            ended = 1
        if ended:
            what = f"session {only}" if only else f"{ended} session(s)"
            await self.audit.record(actor, "user.sessions_revoked", user.username, f"{what} ended")
        return ended
