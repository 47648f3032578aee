"""Auth: password hashing, login, sessions, ingest keys, roles; over the embedded registry."""

from __future__ import annotations

import asyncio

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.services.auth import AuthService, Principal
from backend.services.errors import Forbidden, InvalidField, Unauthorized
from backend.services.passwords import hash_password, token_digest, verify_password


@pytest.fixture
async def registry(tmp_path):
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.start()
    yield reg
    await reg.close()


@pytest.fixture
async def auth(registry):
    service = AuthService(registry, cache_ttl_s=0.0)
    await service.add_user("alice", "sysadmin", "correct horse")
    await service.add_user("erin", "engineer", "battery staple")
    return service


def test_password_hashes_are_salted_and_verify():
    first, second = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert first != second and first.startswith("scrypt$")
    assert "s3cret-pass" not in first
    assert verify_password("s3cret-pass", first) and verify_password("s3cret-pass", second)
    assert not verify_password("s3cret-pasS", first)
    assert not verify_password("s3cret-pass", "garbage")


async def test_login_returns_a_token_that_authenticates(auth, registry):
    result = await auth.login({"username": "alice", "password": "correct horse"})
    assert result.role == "sysadmin" and result.username == "alice"
    principal = await auth.authenticate(f"Bearer {result.token}")
    assert (principal.name, principal.role, principal.can_write) == ("alice", "sysadmin", True)
    # Only the token's digest is stored.
    stored = await registry.get_session(token_digest(result.token))
    assert stored is not None and stored.token_hash != result.token


async def test_unknown_user_and_wrong_password_get_the_same_answer(auth):
    with pytest.raises(Unauthorized) as unknown:
        await auth.login({"username": "mallory", "password": "correct horse"})
    with pytest.raises(Unauthorized) as wrong:
        await auth.login({"username": "alice", "password": "wrong horse"})
    assert str(unknown.value) == str(wrong.value)


@pytest.mark.parametrize(
    "body, field",
    [
        ({"username": {"$gt": ""}, "password": "x"}, "username"),
        ({"username": "alice", "password": {"$ne": None}}, "password"),
        ({"username": ["alice"], "password": "x"}, "username"),
        ({"password": "x"}, "username"),
        ({"username": "alice"}, "password"),
        ({"username": "alice", "password": 123}, "password"),
    ],
)
async def test_operator_injection_in_login_is_a_400_naming_the_field(auth, body, field):
    with pytest.raises(InvalidField) as caught:
        await auth.login(body)
    assert caught.value.field == field


async def test_a_login_body_that_is_not_an_object_is_refused(auth):
    with pytest.raises(InvalidField):
        await auth.login(["alice", "correct horse"])


async def test_logout_revokes_the_session(auth):
    result = await auth.login({"username": "alice", "password": "correct horse"})
    principal = await auth.authenticate(f"Bearer {result.token}")
    await auth.logout(principal)
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {result.token}")


async def test_an_expired_session_is_refused(registry):
    service = AuthService(registry, session_ttl_ms=-1, cache_ttl_s=0.0)
    await service.add_user("bob", "admin", "long enough")
    result = await service.login({"username": "bob", "password": "long enough"})
    with pytest.raises(Unauthorized, match="expired"):
        await service.authenticate(f"Bearer {result.token}")
    assert await registry.get_session(token_digest(result.token)) is None


@pytest.mark.parametrize("header", [None, "", "Basic YWxpY2U6eA==", "Bearer", "Bearer nonsense", "Bearer " + "x" * 300])
async def test_missing_or_malformed_credentials_are_unauthorized(auth, header):
    with pytest.raises(Unauthorized):
        await auth.authenticate(header)


async def test_ingest_keys_post_readings_only_and_can_be_revoked(auth, registry):
    record, key = await auth.create_ingest_key("rack 4", "alice")
    assert key.startswith(f"tik_{record.key_id}_")
    assert record.key_hash != key.split("_", 2)[2]
    principal = await auth.authenticate(f"Bearer {key}", allow_ingest_key=True)
    assert principal.role == "ingest" and not principal.can_write
    with pytest.raises(Unauthorized, match="only post readings"):
        await auth.authenticate(f"Bearer {key}")
    await registry.revoke_ingest_key(record.key_id, 1)
    with pytest.raises(Unauthorized, match="revoked"):
        await auth.authenticate(f"Bearer {key}", allow_ingest_key=True)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda key: key[:-1] + ("A" if key[-1] != "A" else "B"),  # wrong secret
        lambda key: "tik_zzzzzzzzzz_" + key.split("_", 2)[2],  # unknown id
        lambda key: "tik_" + key.split("_")[1],  # no secret
        lambda key: "tik_{'$gt':''}_x",  # junk id
    ],
)
async def test_a_tampered_ingest_key_is_refused(auth, mangle):
    _, key = await auth.create_ingest_key("", "alice")
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {mangle(key)}", allow_ingest_key=True)


def test_only_sysadmins_and_admins_write():
    for role in ("admin", "sysadmin"):
        Principal("a", role).require_writer()
    for role in ("engineer", "ingest"):
        with pytest.raises(Forbidden):
            Principal("a", role).require_writer()


async def test_users_need_a_known_role_a_clean_name_and_a_long_enough_password(auth):
    with pytest.raises(InvalidField, match="role"):
        await auth.add_user("carol", "root", "long enough")
    with pytest.raises(InvalidField, match="username"):
        await auth.add_user("carol smith", "engineer", "long enough")
    with pytest.raises(InvalidField, match="password"):
        await auth.add_user("carol", "engineer", "short")


async def test_the_first_admin_is_created_once_with_a_working_password(registry):
    service = AuthService(registry)
    password = await service.ensure_first_admin()
    assert password
    result = await service.login({"username": "admin", "password": password})
    assert result.role == "admin"
    assert await service.ensure_first_admin() is None


class SlowKeys:
    """The registry, with ingest-key and session lookups that wait for `open` and are counted:
    `lookups` as they begin, `answered` as the registry answers."""

    def __init__(self, registry) -> None:
        self._registry = registry
        self.open = asyncio.Event()
        self.open.set()
        self.lookups = 0
        self.answered = 0

    def __getattr__(self, name):
        return getattr(self._registry, name)

    async def get_ingest_key(self, key_id):
        self.lookups += 1
        await self.open.wait()
        found = await self._registry.get_ingest_key(key_id)
        self.answered += 1
        return found

    async def get_session(self, digest):
        self.lookups += 1
        await self.open.wait()
        found = await self._registry.get_session(digest)
        self.answered += 1
        return found


async def answered(slow: SlowKeys, count: int) -> None:
    """Wait until the registry has answered `count` lookups (a background refresh has landed:
    the cache takes the answer in the same step)."""
    async with asyncio.timeout(2):
        while slow.answered < count:
            await asyncio.sleep(0.001)


async def test_a_key_in_steady_use_never_waits_for_the_registry_and_revocation_still_lands(registry):
    slow = SlowKeys(registry)
    now = [0.0]
    service = AuthService(slow, cache_ttl_s=0.4, clock=lambda: now[0])
    try:
        record, key = await service.create_ingest_key("rack 9", "alice")
        header = f"Bearer {key}"
        await service.authenticate(header, allow_ingest_key=True)
        assert slow.lookups == 1
        now[0] = 0.25  # past half the TTL: the next uses answer at once and refresh once
        slow.open.clear()
        for _ in range(5):
            async with asyncio.timeout(0.05):
                await service.authenticate(header, allow_ingest_key=True)
        await asyncio.sleep(0.01)
        assert slow.lookups == 2  # one refresh for the five uses, still waiting on the registry
        slow.open.set()
        await answered(slow, 2)
        now[0] = 0.45  # past the first lookup's TTL: the refreshed entry still answers
        slow.open.clear()
        async with asyncio.timeout(0.05):
            await service.authenticate(header, allow_ingest_key=True)
        slow.open.set()
        await registry.revoke_ingest_key(record.key_id, 1)
        now[0] = 0.9  # a revocation lands within the TTL
        with pytest.raises(Unauthorized, match="revoked"):
            await service.authenticate(header, allow_ingest_key=True)
    finally:
        await service.close()


async def test_a_refresh_in_flight_does_not_bring_back_a_logged_out_session(registry):
    slow = SlowKeys(registry)
    now = [0.0]
    service = AuthService(slow, cache_ttl_s=0.4, clock=lambda: now[0])
    try:
        await service.add_user("alice", "sysadmin", "correct horse")
        token = (await service.login({"username": "alice", "password": "correct horse"})).token
        principal = await service.authenticate(f"Bearer {token}")
        now[0] = 0.25
        slow.open.clear()
        await service.authenticate(f"Bearer {token}")  # answered from the cache; a refresh waits
        await service.logout(principal)
        slow.open.set()
        await answered(slow, 2)
        with pytest.raises(Unauthorized):
            await service.authenticate(f"Bearer {token}")
    finally:
        await service.close()


async def test_a_username_with_a_trailing_newline_is_refused(auth):
    with pytest.raises(InvalidField):
        await auth.add_user("ops\n", "sysadmin", "a long enough password")
