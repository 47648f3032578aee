"""The Registry contract for account administration (issue 14 item 7): disabling, deleting,
forcing a password change, and a user's sessions; over SQLite and the real MongoDB-compatible
server (FerretDB; these fail when it is down). Each case is written as the attack it stops."""

from __future__ import annotations

import sqlite3

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.ports import NotFound, Registry, SessionRecord, UserRecord
from tests.contract.test_registry_contract import OPERATOR_VALUES, MakeRegistry

FAR = 2_000_000_000_000


def session(token: str, user: str = "bob", created: int = 1_700_000_000_000, **changes) -> SessionRecord:
    values = {"expires_at_ms": FAR, "client": "10.0.0.7", **changes}
    return SessionRecord(token, user, "sysadmin", values["expires_at_ms"], created, values["client"])


async def test_new_fields_round_trip_and_default_to_an_ordinary_enabled_user(registry: Registry) -> None:
    plain = UserRecord("bob", "sysadmin", "h", 1)
    forced = UserRecord("admin", "admin", "h", 2, must_change_password=True, disabled_at_ms=5, password_changed_at_ms=7)
    await registry.add_user(plain)
    await registry.add_user(forced)
    assert await registry.get_user("bob") == plain
    assert (plain.must_change_password, plain.disabled_at_ms) == (False, None)
    got = await registry.get_user("admin")
    assert got == forced and got.must_change_password is True  # a bool, not 1
    await registry.add_session(session("tok-1"))
    assert (await registry.get_session("tok-1")).client == "10.0.0.7"


async def test_a_password_reset_sets_the_flag_and_the_time_and_clearing_it_sticks(registry: Registry) -> None:
    await registry.add_user(UserRecord("bob", "sysadmin", "old", 1))
    await registry.set_password_hash("bob", "new", must_change_password=True, changed_at_ms=50)
    bob = await registry.get_user("bob")
    assert (bob.password_hash, bob.must_change_password, bob.password_changed_at_ms) == ("new", True, 50)
    await registry.set_password_hash("bob", "newer")  # no time given: the last one is kept
    bob = await registry.get_user("bob")
    assert (bob.password_hash, bob.must_change_password, bob.password_changed_at_ms) == ("newer", False, 50)
    await registry.set_must_change_password("bob", True)
    assert (await registry.get_user("bob")).must_change_password is True
    assert (await registry.get_user("bob")).password_hash == "newer"  # the flag alone
    with pytest.raises(NotFound):
        await registry.set_must_change_password("carol", True)


async def test_a_disabled_user_stays_disabled_from_the_first_time_until_enabled(make_registry: MakeRegistry) -> None:
    first, second = await make_registry(), await make_registry()  # two api processes
    await first.add_user(UserRecord("bob", "sysadmin", "h", 1))
    await first.set_user_disabled("bob", 100)
    await second.set_user_disabled("bob", 200)  # disabling twice keeps when it began
    assert (await second.get_user("bob")).disabled_at_ms == 100
    await second.set_user_disabled("bob", None)
    assert (await first.get_user("bob")).disabled_at_ms is None
    with pytest.raises(NotFound):
        await first.set_user_disabled("carol", 1)
    with pytest.raises(NotFound):
        await first.set_user_disabled("carol", None)


async def test_a_deleted_user_is_gone_for_every_process(make_registry: MakeRegistry) -> None:
    first, second = await make_registry(), await make_registry()
    await first.add_user(UserRecord("bob", "sysadmin", "h", 1))
    await second.delete_user("bob")
    assert await first.get_user("bob") is None
    assert await first.list_users() == []
    with pytest.raises(NotFound):
        await first.delete_user("bob")
    await first.add_user(UserRecord("bob", "engineer", "h2", 2))  # the name can be used again


async def test_a_users_sessions_are_listed_and_ended_without_touching_anyone_elses(registry: Registry) -> None:
    await registry.add_session(session("tok-b2", created=20))
    await registry.add_session(session("tok-b1", created=10))
    await registry.add_session(session("tok-b3", created=30, expires_at_ms=5))  # expired: still listed
    await registry.add_session(session("tok-a1", user="alice"))
    assert [s.token_hash for s in await registry.list_sessions("bob")] == ["tok-b1", "tok-b2", "tok-b3"]
    assert await registry.list_sessions("carol") == []
    # "log out everywhere else": all but the one in use
    assert await registry.delete_user_sessions("bob", keep="tok-b2") == 2
    assert [s.token_hash for s in await registry.list_sessions("bob")] == ["tok-b2"]
    assert await registry.delete_user_sessions("bob") == 1
    assert await registry.get_session("tok-b2") is None
    assert await registry.get_session("tok-a1") is not None
    assert await registry.delete_user_sessions("bob") == 0


@pytest.mark.parametrize("hostile", OPERATOR_VALUES, ids=repr)
async def test_operator_values_in_account_calls_match_nothing(registry: Registry, hostile) -> None:
    """A `{"$ne": ""}` where a username goes must not disable, delete or log out everybody."""
    await registry.add_user(UserRecord("bob", "sysadmin", "h", 1))
    await registry.add_session(session("tok-1"))
    assert await registry.list_sessions(hostile) == []
    assert await registry.delete_user_sessions(hostile) == 0
    for call in (
        lambda: registry.set_user_disabled(hostile, 5),
        lambda: registry.delete_user(hostile),
        lambda: registry.set_must_change_password(hostile, True),
    ):
        with pytest.raises(NotFound):
            await call()
    bob = await registry.get_user("bob")
    assert (bob.disabled_at_ms, bob.must_change_password) == (None, False)
    assert await registry.get_session("tok-1") is not None


@pytest.mark.parametrize("hostile", OPERATOR_VALUES[:3], ids=repr)
async def test_operator_values_are_refused_where_a_session_is_kept(registry: Registry, hostile) -> None:
    await registry.add_session(session("tok-1"))
    with pytest.raises(TypeError, match="keep"):
        await registry.delete_user_sessions("bob", keep=hostile)
    with pytest.raises(TypeError):
        await registry.set_must_change_password("bob", hostile)
    assert await registry.get_session("tok-1") is not None


async def test_an_embedded_registry_from_before_accounts_opens_with_its_users_and_sessions(tmp_path) -> None:
    path = tmp_path / "registry.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE users (username TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
            created_at_ms INTEGER NOT NULL);
        CREATE TABLE sessions (token_hash TEXT PRIMARY KEY, username TEXT NOT NULL, role TEXT NOT NULL,
            expires_at_ms INTEGER NOT NULL, created_at_ms INTEGER NOT NULL);
        INSERT INTO users VALUES ('bob', 'sysadmin', 'h', 1);
        INSERT INTO sessions VALUES ('tok-1', 'bob', 'sysadmin', 2000000000000, 1);
    """)
    old.commit()
    old.close()
    registry = SqliteRegistry(path)
    await registry.start()
    try:
        assert await registry.get_user("bob") == UserRecord("bob", "sysadmin", "h", 1)
        assert (await registry.get_session("tok-1")).client == ""
        await registry.set_user_disabled("bob", 9)
        assert [s.token_hash for s in await registry.list_sessions("bob")] == ["tok-1"]
    finally:
        await registry.close()
