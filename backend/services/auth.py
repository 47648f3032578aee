"""Who is calling: users and their roles, session tokens, ingest keys.

Passwords are kept as scrypt hashes; session tokens and ingest key secrets as SHA-256 digests,
so a copy of the registry lets nobody log in. Lookups of a token are cached a few seconds per
process so a sensor posting every second does not cost a registry round trip each time; a
logout or key revocation therefore takes up to `CACHE_TTL_S` to reach other processes.
"""

from __future__ import annotations

import asyncio
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any

from backend.ports import Conflict, IngestKeyRecord, Registry, SessionRecord, UserRecord
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

SESSION_TTL_MS = 12 * 3600 * 1000
CACHE_TTL_S = 5.0
INGEST_KEY_PREFIX = "tik_"
FIRST_ADMIN = "admin"

_USERNAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_KEY_ID = re.compile(r"^[a-z2-7]{8,16}$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024


class Unauthorized(Exception):
    """No valid credentials (HTTP 401)."""


class Forbidden(Exception):
    """Valid credentials, but the role may not do this (HTTP 403)."""


class InvalidField(ValueError):
    """A request field has the wrong type or form (HTTP 400); `field` names it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a user's session or an ingest key."""

    name: str  # username, or "key:<key_id>" for an ingest key
    role: str
    expires_at_ms: int | None = None
    token_hash: str | None = None

    @property
    def can_write(self) -> bool:
        return self.role in WRITER_ROLES

    def require_writer(self) -> None:
        if not self.can_write:
            raise Forbidden(f"role {self.role!r} may not change anything; needs sysadmin or admin")


@dataclass(frozen=True, slots=True)
class LoginResult:
    token: str
    username: str
    role: str
    expires_at_ms: int


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
    if not _USERNAME.match(username):
        raise InvalidField("username", "must be 1-64 characters of A-Z a-z 0-9 . _ -")
    return username


def check_role(role: str) -> str:
    if role not in ROLES:
        raise InvalidField("role", f"must be one of {', '.join(ROLES)}")
    return role


class _TtlCache:
    """A small time-bounded cache of authentication results."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, Principal]] = {}

    def get(self, key: str) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: str, principal: Principal) -> None:
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl_s, principal)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


class AuthService:
    """Login, logout, token and ingest-key verification, user and key administration."""

    def __init__(self, registry: Registry, session_ttl_ms: int = SESSION_TTL_MS,
                 cache_ttl_s: float = CACHE_TTL_S) -> None:
        self.registry = registry
        self.session_ttl_ms = session_ttl_ms
        self._cache = _TtlCache(cache_ttl_s)
        self._dummy_hash: str | None = None

    # --- users ------------------------------------------------------------------------------

    async def add_user(self, username: str, role: str, password: str | None = None) -> str:
        """Create a user; returns the password (generated when none is given). Conflict if taken."""
        check_username(username)
        check_role(role)
        if password is None:
            password = new_password()
        elif not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
            raise InvalidField("password", f"must be {MIN_PASSWORD} to {MAX_PASSWORD} characters")
        hashed = await asyncio.to_thread(hash_password, password)
        await self.registry.add_user(UserRecord(username, role, hashed, now_ms()))
        return password

    async def ensure_first_admin(self) -> str | None:
        """On a registry without users, create `admin` and return its one-time password."""
        if await self.registry.list_users():
            return None
        try:
            return await self.add_user(FIRST_ADMIN, "admin")
        except Conflict:
            return None  # another process created it at the same moment

    # --- sessions ---------------------------------------------------------------------------

    async def login(self, payload: Any) -> LoginResult:
        """Check `{"username","password"}`; the same Unauthorized whatever was wrong."""
        if not isinstance(payload, dict):
            raise InvalidField("body", 'must be a JSON object {"username", "password"}')
        username = require_string(payload, "username", 64)
        password = require_string(payload, "password")
        user = await self.registry.get_user(username) if _USERNAME.match(username) else None
        if user is None:
            # Spend the same time as a real check, so timing does not reveal which names exist.
            if self._dummy_hash is None:
                self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))
            await asyncio.to_thread(verify_password, password, self._dummy_hash)
            raise Unauthorized("unknown user or wrong password")
        if not await asyncio.to_thread(verify_password, password, user.password_hash):
            raise Unauthorized("unknown user or wrong password")
        token = secrets.token_urlsafe(32)
        now = now_ms()
        expires = now + self.session_ttl_ms
        await self.registry.add_session(
            SessionRecord(token_digest(token), user.username, user.role, expires, now)
        )
        return LoginResult(token, user.username, user.role, expires)

    async def logout(self, principal: Principal) -> None:
        if principal.token_hash is None:
            raise Forbidden("only a session can log out")
        self._cache.drop(principal.token_hash)
        await self.registry.delete_session(principal.token_hash)

    async def authenticate(self, authorization: str | None, allow_ingest_key: bool = False) -> Principal:
        """The caller of an `Authorization: Bearer ...` header; Unauthorized otherwise."""
        if not authorization:
            raise Unauthorized("missing credentials: send Authorization: Bearer <token>")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise Unauthorized("malformed Authorization header: expected Bearer <token>")
        return await self.authenticate_token(credential, allow_ingest_key)

    async def authenticate_token(self, credential: str, allow_ingest_key: bool = False) -> Principal:
        """The caller presenting `credential` (a session token, or an ingest key if allowed)."""
        if len(credential) > 256:
            raise Unauthorized("invalid or expired token")
        if credential.startswith(INGEST_KEY_PREFIX):
            if not allow_ingest_key:
                raise Unauthorized("an ingest key can only post readings; log in for this")
            return await self._authenticate_key(credential)
        digest = token_digest(credential)
        principal = self._cache.get(digest)
        if principal is None:
            session = await self.registry.get_session(digest)
            if session is None:
                raise Unauthorized("invalid or expired token")
            principal = Principal(session.username, session.role, session.expires_at_ms, digest)
            self._cache.put(digest, principal)
        if principal.expires_at_ms is not None and principal.expires_at_ms <= now_ms():
            self._cache.drop(digest)
            # The registry has no TTL index everywhere (FerretDB), so expired sessions go here.
            await self.registry.delete_session(digest)
            raise Unauthorized("session expired; log in again")
        return principal

    # --- ingest keys ------------------------------------------------------------------------

    async def create_ingest_key(self, label: str, created_by: str) -> tuple[IngestKeyRecord, str]:
        """A new ingest key; returns its record and the full key, which is never shown again."""
        if not isinstance(label, str) or len(label) > 200:
            raise InvalidField("label", "must be a string of at most 200 characters")
        key_id = random_base32(10)
        secret = secrets.token_urlsafe(32)
        record = IngestKeyRecord(key_id, token_digest(secret), label, created_by, now_ms())
        await self.registry.add_ingest_key(record)
        return record, f"{INGEST_KEY_PREFIX}{key_id}_{secret}"

    async def _authenticate_key(self, key: str) -> Principal:
        digest = token_digest(key)
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        _, key_id, secret = (key.split("_", 2) + ["", ""])[:3]
        record = await self.registry.get_ingest_key(key_id) if _KEY_ID.match(key_id) else None
        if record is None or not secret:
            raise Unauthorized("invalid ingest key")
        if not hmac.compare_digest(record.key_hash, token_digest(secret)):
            raise Unauthorized("invalid ingest key")
        if record.revoked_at_ms is not None:
            raise Unauthorized(f"ingest key {key_id} has been revoked")
        principal = Principal(f"key:{key_id}", INGEST_ROLE)
        self._cache.put(digest, principal)
        return principal
