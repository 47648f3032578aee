"""Who is calling: users and their roles, session tokens, ingest keys.

Passwords are kept as scrypt hashes; session tokens and ingest key secrets as SHA-256 digests,
so a copy of the registry lets nobody log in. Lookups of a token are cached a few seconds per
process so a sensor posting every second does not cost a registry round trip each time; a
logout or key revocation therefore takes up to `CACHE_TTL_S` to reach other processes.

Password guessing is slowed per (username, client address) with growing delays, and password
checks are rationed so a flood of wrong ones cannot starve real logins (`login_guard`).

Each lookup of a session also reads its user, so a session of a user who was disabled or
deleted is refused like a revoked one. Whatever ends a session in this process (logout, a
password change, disabling, deleting, revoking) drops the cached lookups at once and wakes the
websockets that `watch` it; other processes see it within `CACHE_TTL_S` (HTTP) and their
websockets within `backend.http.ws.SESSION_CHECK_S`. A user who must change their password
(`UserRecord.must_change_password`) is refused everything else with `PasswordChangeRequired`
(403); such sessions are never cached, so the change is seen by every process at once.
Account administration (passwords, disabling, deleting, sessions) is `accounts.AccountService`;
what a password must be is `password_policy`.

Expired sessions are deleted every `SESSION_PURGE_INTERVAL_S` by each api process (the registry
may have no TTL index: FerretDB), and one presented after expiry is deleted at once.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backend.ports import Conflict, IngestKeyRecord, Registry, SessionRecord, UserRecord
from backend.services import password_policy
from backend.services.errors import (
    AccountDisabled,
    Forbidden,
    InvalidField,
    PasswordChangeRequired,
    Unauthorized,
)
from backend.services.login_guard import LoginThrottle, PasswordGate
from backend.services.passwords import (
    hash_password,
    new_password,
    random_base32,
    token_digest,
    verify_password,
)
from backend.services.timestamps import now_ms

ROLES = ("admin", "sysadmin", "engineer")
WRITER_ROLES = frozenset({"admin", "sysadmin"})
"""Roles that may change the registry and post readings with a session token."""
INGEST_ROLE = "ingest"
"""The role of a caller authenticated with an ingest key: it may post readings, nothing else."""

log = logging.getLogger(__name__)

SESSION_TTL_MS = 12 * 3600 * 1000
SESSION_PURGE_INTERVAL_S = 600.0
CACHE_TTL_S = 5.0
INGEST_KEY_PREFIX = "tik_"
FIRST_ADMIN = "admin"

_USERNAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_KEY_ID = re.compile(r"[a-z2-7]{8,16}")
MIN_PASSWORD = password_policy.MIN_LENGTH
MAX_PASSWORD = password_policy.MAX_LENGTH


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user's session or an ingest key."""

    name: str  # username, or "key:<key_id>" for an ingest key
    role: str
    expires_at_ms: int | None = None
    token_hash: str | None = None
    server_id: str | None = None
    """For an ingest key scoped to one server: that server (its readings, its agent)."""
    must_change_password: bool = False
    """Only the password change, `me` and logout are allowed until it is made."""

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES

    def require_writer(self) -> None:
        if not self.can_write:
            raise Forbidden(f"role {self.role!r} may not change anything; needs sysadmin or admin")

    def require_admin(self) -> None:
        if self.role != "admin":
            raise Forbidden(f"role {self.role!r} may not do this; needs admin")


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    username: str
    role: str
    expires_at_ms: int
    must_change_password: bool = False
    password_change_reason: str = ""


def require_string(payload: dict[str, Any], field: str, max_len: int = MAX_PASSWORD) -> str:
    """The string in `payload[field]`; InvalidField when missing or of any other type.

    This is the guard against operator injection: a dict such as {"$gt": ""} never gets past it.
    """
    value = payload.get(field)
    if value is None:
        raise InvalidField(field, "is required")
    if not isinstance(value, str):
        raise InvalidField(field, "must be a string")
    if len(value) > max_len:
        raise InvalidField(field, f"must be at most {max_len} characters")
    return value


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise InvalidField("username", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidField("role", f"must be one of {', '.join(ROLES)}")
    return role


def check_password(password: Any, username: str, field: str = "password") -> str:
    """`password` when the policy allows it for `username`; InvalidField(field) saying why not."""
    problem = password_policy.problem(password, username)
    if problem is not None:
        raise InvalidField(field, problem)
    return password


class _TtlCache:
    """A small time-bounded cache of authentication results, refreshed ahead of expiry.

    An entry is trusted for `ttl_s` at most (a revoked key or deleted session stops working
    within that). Once half of it has passed, the next use answers from the entry and looks the
    credential up again in the background, so a credential in steady use (a sensor posting every
    second) never waits for the registry: when every entry expired at once, each expiry held the
    POSTs in flight for a registry round trip (the p99 of POST -> 202 in `tasker bench latency`,
    distributed, fell from 86-180 ms to 41 ms with lookups never expiring).
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self._drops = 0
        """Counts drops: a lookup that was in flight across one must not put back what it read."""

    async def fetch(self, key: str, load: Callable[[], Awaitable[Principal]]) -> Principal:
        """The cached principal of `key`, else `load()`'s (cached); Unauthorized from `load`
        passes through. A half-expired entry is answered at once and reloaded in the background."""
        entry = self._entries.get(key)
        now = self._clock()
        if entry is not None and entry[0] >= now:
            if entry[0] - now < self.ttl_s / 2 and key not in self._refreshing:
                self._refreshing[key] = asyncio.create_task(self._reload(key, entry, load))
            return entry[1]
        return await self.load(key, load)

    async def load(self, key: str, load: Callable[[], Awaitable[Principal]]) -> Principal:
        """`load()`'s principal, cached unless something was dropped meanwhile (what it read may
        predate a revocation)."""
        drops = self._drops
        principal = await load()
        if self._drops == drops:
            self.put(key, principal)
        return principal

    def put(self, key: str, principal: Principal) -> None:
        if principal.must_change_password:
            # Never cached: once the password is changed, every process must see it at once.
            self._entries.pop(key, None)
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (self._clock() + self.ttl_s, principal)

    def drop(self, key: str) -> None:
        self._drops += 1
        self._entries.pop(key, None)

    def drop_user(self, username: str, keep: str | None = None) -> None:
        """Drop every cached session of `username` but the one keyed `keep`."""
        self._drops += 1
        for key in [
            k for k, (_, p) in self._entries.items() if p.name == username and p.token_hash is not None and k != keep
        ]:
            del self._entries[key]

    async def _reload(self, key: str, entry: tuple[float, Principal], load: Callable[[], Awaitable[Principal]]) -> None:
        try:
            principal = await load()
        except Unauthorized:
            principal = None
        except Exception as exc:  # noqa: BLE001 - the registry is down: the entry expires as usual
            log.debug("background refresh of a cached credential failed: %r", exc)
            return
        finally:
            self._refreshing.pop(key, None)
        if self._entries.get(key) is not entry:
            return  # dropped (logout) or replaced meanwhile: this older answer must not bring it back
        if principal is None:
            self.drop(key)
        else:
            self.put(key, principal)

    async def close(self) -> None:
        tasks = list(self._refreshing.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class AuthService:
    """Login, logout, token and ingest-key verification, user and key administration.

    `clock` times the cached lookups (`cache_ttl_s`); sessions expire by the wall clock."""

    def __init__(
        self,
        registry: Registry,
        session_ttl_ms: int = SESSION_TTL_MS,
        cache_ttl_s: float = CACHE_TTL_S,
        throttle: LoginThrottle | None = None,
        gate: PasswordGate | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry
        self.session_ttl_ms = session_ttl_ms
        self.throttle = throttle if throttle is not None else LoginThrottle()
        self.gate = gate if gate is not None else PasswordGate()
        self._cache = _TtlCache(cache_ttl_s, clock=clock)
        self._dummy_hash: str | None = None
        self._purging: asyncio.Task[None] | None = None
        self._watchers: dict[int, tuple[Principal, Callable[[], None]]] = {}
        self._watch_ids = itertools.count()
        self._accounts: Any = None

    @property
    def accounts(self) -> Any:
        """This process's `accounts.AccountService` (made on first use)."""
        if self._accounts is None:
            from backend.services.accounts import AccountService

            self._accounts = AccountService(self)
        return self._accounts

    # --- expired sessions -------------------------------------------------------------------

    async def purge_expired_sessions(self) -> int:
        """Delete every expired session from the registry now; returns how many went."""
        return await self.registry.purge_expired_sessions(now_ms())

    def start_purging(self, interval_s: float = SESSION_PURGE_INTERVAL_S) -> None:
        """Purge expired sessions now and every `interval_s` in the background, until `close`."""
        if self._purging is None:
            self._purging = asyncio.get_running_loop().create_task(self._purge_forever(interval_s))

    async def _purge_forever(self, interval_s: float) -> None:
        while True:
            try:
                purged = await self.purge_expired_sessions()
                if purged:
                    log.info("deleted %d expired session(s)", purged)
            except Exception as exc:  # noqa: BLE001 - the registry may be down; try next time
                log.warning("could not delete expired sessions: %s", exc)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        """Stop the background purge and credential refreshes."""
        task, self._purging = self._purging, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await self._cache.close()

    # --- users ------------------------------------------------------------------------------

    async def add_user(
        self, username: str, role: str, password: str | None = None, *, must_change_password: bool | None = None
    ) -> str:
        """Create a user; returns the password. Conflict if taken; InvalidField when the password
        breaks the policy (`password_policy`). A generated password (none given) is shown to
        whoever made the account, so it must be changed at the first login unless
        `must_change_password` says otherwise; a chosen one need not, unless it says so."""
        check_username(username)
        check_role(role)
        generated = password is None
        if password is None:
            password = new_password()
        else:
            check_password(password, username)
        must_change = generated if must_change_password is None else must_change_password
        hashed = await asyncio.to_thread(hash_password, password)
        await self.registry.add_user(UserRecord(username, role, hashed, now_ms(), must_change_password=must_change))
        return password

    async def ensure_first_admin(self) -> str | None:
        """On a registry without users, create `admin` and return its one-time password, which
        must be changed at the first login."""
        if await self.registry.list_users():
            return None
        try:
            return await self.add_user(FIRST_ADMIN, "admin")
        except Conflict:
            return None  # another process created it at the same moment

    # --- sessions ---------------------------------------------------------------------------

    async def login(self, payload: Any, client: str | None = None) -> LoginResult:
        """Check `{"username","password"}`; the same Unauthorized whatever was wrong.
        TooManyAttempts, before any check, while this (username, `client` address) must wait
        after its failures, or when the server is flooded with suspect attempts."""
        if not isinstance(payload, dict):
            raise InvalidField("body", 'must be a JSON object {"username", "password"}')
        username = require_string(payload, "username", 64)
        password = require_string(payload, "password")
        attempt = self.throttle.begin(username, client)
        outcome: bool | None = None
        try:
            async with self.gate.slot(attempt):
                result = await self._check_password(username, password, client)
            outcome = True
        except Unauthorized:
            outcome = False
            raise
        finally:
            self.throttle.end(username, client, outcome)
        return result

    async def verify(self, username: str, password: str) -> UserRecord | None:
        """The user when `password` is theirs, else None, in the time a real check takes either
        way (so timing does not reveal which names exist). Unthrottled: callers ration it."""
        user = await self.registry.get_user(username) if _USERNAME.fullmatch(username) else None
        if user is None:
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))
            await asyncio.to_thread(verify_password, password, self._dummy_hash)
            return None
        if not await asyncio.to_thread(verify_password, password, user.password_hash):
            return None
        return user

    async def _check_password(self, username: str, password: str, client: str | None) -> LoginResult:
        user = await self.verify(username, password)
        if user is None:
            raise Unauthorized("unknown user or wrong password")
        if user.disabled_at_ms is not None:
            # Said only to whoever knows the password: it tells a guesser nothing.
            raise AccountDisabled(
                f"user {user.username} is disabled; an admin can enable it (tasker users enable {user.username})"
            )
        must_change, reason = user.must_change_password, ""
        if must_change:
            reason = "the password was set to be used once; choose your own"
        problem = password_policy.problem(password, user.username)
        if problem is not None:
            # A password set before the policy (or before the list grew): change it now.
            reason = f"the password no longer meets the policy: it {problem}"
            if not must_change:
                must_change = True
                await self.registry.set_must_change_password(user.username, True)
                await self.accounts.audit.record(
                    user.username, "user.password_change_required", user.username, f"at login: password {problem}"
                )
        token = secrets.token_urlsafe(32)
        now = now_ms()
        expires = now + self.session_ttl_ms
        await self.registry.add_session(
            SessionRecord(token_digest(token), user.username, user.role, expires, now, client or "")
        )
        return LoginResult(token, user.username, user.role, expires, must_change, reason)

    async def logout(self, principal: Principal) -> None:
        if principal.token_hash is None:
            raise Forbidden("only a session can log out")
        await self.registry.delete_session(principal.token_hash)
        self.sessions_ended(token_hash=principal.token_hash)

    # --- sessions ended here: caches and websockets -------------------------------------------

    def sessions_ended(
        self, username: str | None = None, token_hash: str | None = None, keep: str | None = None
    ) -> None:
        """Sessions were just ended in the registry by this process: the one of `token_hash`,
        or every one of `username` but `keep`. Drop their cached lookups and wake the
        websockets watching them, which then check and close."""
        if token_hash is not None:
            self._cache.drop(token_hash)
        if username is not None:
            self._cache.drop_user(username, keep)
        for principal, wake in list(self._watchers.values()):
            digest = principal.token_hash
            if digest is None:
                continue
            if digest == token_hash or (principal.name == username and digest != keep):
                wake()

    def watch(self, principal: Principal, wake: Callable[[], None]) -> Callable[[], None]:
        """Call `wake()` whenever this process ends sessions that may include `principal`'s;
        returns the function that stops watching."""
        key = next(self._watch_ids)
        self._watchers[key] = (principal, wake)
        return lambda: self._watchers.pop(key, None) and None

    async def session_ended(self, principal: Principal) -> str | None:
        """Why `principal`'s session no longer holds (expired, logged out or revoked, its user
        disabled or deleted), read from the registry now; None while it holds (and for ingest
        keys). Unavailable when the registry cannot say."""
        digest = principal.token_hash
        if digest is None:
            return None
        if principal.expires_at_ms is not None and principal.expires_at_ms <= now_ms():
            return "session expired; log in again"
        try:
            await self._cache.load(digest, lambda: self._load_session(digest, "the session was logged out or revoked"))
        except Unauthorized as exc:
            self._cache.drop(digest)
            return str(exc)
        return None

    async def authenticate(
        self, authorization: str | None, allow_ingest_key: bool = False, allow_password_change: bool = False
    ) -> Principal:
        """The caller of an `Authorization: Bearer ...` header; Unauthorized otherwise, and
        PasswordChangeRequired for a user who must change their password unless
        `allow_password_change` (the routes that make the change, say who, or log out)."""
        if not authorization:
            raise Unauthorized("missing credentials: send Authorization: Bearer <token>")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("malformed Authorization header: expected Bearer <token>")
        return await self.authenticate_token(credential, allow_ingest_key, allow_password_change)

    async def authenticate_token(
        self, credential: str, allow_ingest_key: bool = False, allow_password_change: bool = False
    ) -> Principal:
        """The caller presenting `credential` (a session token, or an ingest key if allowed);
        see `authenticate`."""
        if len(credential) > 256:
            raise Unauthorized("invalid or expired token")
        if credential.startswith(INGEST_KEY_PREFIX):
            if not allow_ingest_key:
                raise Unauthorized("an ingest key can only post readings; log in for this")
            return await self._authenticate_key(credential)
        digest = token_digest(credential)
        principal = await self._cache.fetch(digest, lambda: self._load_session(digest))
        if principal.expires_at_ms is not None and principal.expires_at_ms <= now_ms():
            self._cache.drop(digest)
            # The registry has no TTL index everywhere (FerretDB), so expired sessions go here.
            await self.registry.delete_session(digest)
            raise Unauthorized("session expired; log in again")
        if principal.must_change_password and not allow_password_change:
            raise PasswordChangeRequired(principal.name)
        return principal

    async def _load_session(self, digest: str, missing: str = "invalid or expired token") -> Principal:
        """The caller of a session, with its user's current role and flags, from the registry."""
        session = await self.registry.get_session(digest)
        if session is None:
            raise Unauthorized(missing)
        user = await self.registry.get_user(session.username)
        if user is None:
            raise Unauthorized(f"user {session.username} no longer exists")
        if user.disabled_at_ms is not None:
            raise Unauthorized(f"user {user.username} is disabled")
        return Principal(
            user.username, user.role, session.expires_at_ms, digest, must_change_password=user.must_change_password
        )

    # --- ingest keys ------------------------------------------------------------------------

    async def create_ingest_key(
        self, label: str, created_by: str, server_id: str | None = None
    ) -> tuple[IngestKeyRecord, str]:
        """A new ingest key; returns its record and the full key, which is never shown again.

        With `server_id` (a registered server; NotFound otherwise) the key posts readings only
        for that server and may act as its agent (`tasker agent`)."""
        if not isinstance(label, str) or len(label) > 200:
            raise InvalidField("label", "must be a string of at most 200 characters")
        if server_id is not None:
            await self.registry.get_server(server_id)
        key_id = random_base32(10)
        secret = secrets.token_urlsafe(32)
        record = IngestKeyRecord(key_id, token_digest(secret), label, created_by, now_ms(), server_id=server_id)
        await self.registry.add_ingest_key(record)
        return record, f"{INGEST_KEY_PREFIX}{key_id}_{secret}"

    async def _authenticate_key(self, key: str) -> Principal:
        return await self._cache.fetch(token_digest(key), lambda: self._look_up_key(key))

    async def _look_up_key(self, key: str) -> Principal:
        _, key_id, secret = (key.split("_", 2) + ["", ""])[:3]
        record = await self.registry.get_ingest_key(key_id) if _KEY_ID.fullmatch(key_id) else None
        if record is None or not secret:
            raise Unauthorized("invalid ingest key")
        if not hmac.compare_digest(record.key_hash, token_digest(secret)):
            raise Unauthorized("invalid ingest key")
        if record.revoked_at_ms is not None:
            raise Unauthorized(f"ingest key {key_id} has been revoked")
        return Principal(f"key:{key_id}", INGEST_ROLE, server_id=record.server_id)
