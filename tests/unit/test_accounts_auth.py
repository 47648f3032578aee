"""Accounts in the auth and account services (issue 14 item 7), over the embedded registry; each
test is the attack or the slip it stops. Two `AuthService`s on one registry are two api processes."""

from __future__ import annotations

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.ports import Conflict, UserRecord
from backend.services.auth import AuthService
from backend.services.errors import (
    AccountDisabled,
    Forbidden,
    InvalidField,
    PasswordChangeRequired,
    Unauthorized,
)
from backend.services.login_guard import TooManyAttempts
from backend.services.passwords import hash_password
from tests.contract.test_registry_contract import server
from tests.contract.test_registry_tasks_contract import task

PASSWORD = "a decent passphrase"


@pytest.fixture
async def registry(tmp_path):
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.start()
    yield reg
    await reg.close()


@pytest.fixture
async def auth(registry):
    # A long cache: whatever must take effect "at once" in this process cannot lean on expiry.
    service = AuthService(registry, cache_ttl_s=60.0)
    await service.add_user("root-admin", "admin", PASSWORD)
    yield service
    await service.close()


async def session(auth: AuthService, username: str, password: str = PASSWORD) -> str:
    return (await auth.login({"username": username, "password": password})).token


async def actions(registry) -> list[tuple[str, str]]:
    return [(e.action, e.target) for e in reversed(await registry.list_audit(100))]


# --- the first password must change ----------------------------------------------------------------


async def test_the_first_admins_printed_password_opens_nothing_but_the_password_change(registry):
    auth = AuthService(registry)
    one_time = await auth.ensure_first_admin()
    login = await auth.login({"username": "admin", "password": one_time})
    assert login.must_change_password and "once" in login.password_change_reason
    with pytest.raises(PasswordChangeRequired, match="POST /api/v1/me/password"):
        await auth.authenticate(f"Bearer {login.token}")
    principal = await auth.authenticate(f"Bearer {login.token}", allow_password_change=True)
    assert principal.must_change_password and principal.name == "admin"

    accounts = auth.accounts
    with pytest.raises(InvalidField, match="current_password"):
        await accounts.change_own_password(
            principal, {"current_password": "guess-one-more", "new_password": "mauve kettle orbit"}
        )
    with pytest.raises(InvalidField, match="new_password is the current password"):
        await accounts.change_own_password(principal, {"current_password": one_time, "new_password": one_time})
    with pytest.raises(InvalidField, match="new_password .*common"):
        await accounts.change_own_password(principal, {"current_password": one_time, "new_password": "Password2024!"})
    await accounts.change_own_password(principal, {"current_password": one_time, "new_password": "mauve kettle orbit"})
    # The same session now works, everywhere: must-change sessions are never cached.
    assert not (await auth.authenticate(f"Bearer {login.token}")).must_change_password
    assert not (await AuthService(registry).authenticate(f"Bearer {login.token}")).must_change_password
    with pytest.raises(Unauthorized):
        await auth.login({"username": "admin", "password": one_time})
    assert ("user.password_changed", "admin") in await actions(registry)


async def test_a_generated_password_must_change_and_a_chosen_one_need_not(auth):
    generated = await auth.add_user("gen-user", "engineer")
    assert (await auth.login({"username": "gen-user", "password": generated})).must_change_password
    await auth.add_user("chosen", "engineer", PASSWORD)
    assert not (await auth.login({"username": "chosen", "password": PASSWORD})).must_change_password
    await auth.add_user("forced", "engineer", PASSWORD, must_change_password=True)
    assert (await auth.login({"username": "forced", "password": PASSWORD})).must_change_password


async def test_a_weak_password_from_before_the_policy_must_change_at_the_next_login(auth, registry):
    await registry.add_user(UserRecord("legacy", "sysadmin", hash_password("password"), 1))
    login = await auth.login({"username": "legacy", "password": "password"})
    assert login.must_change_password and "no longer meets the policy" in login.password_change_reason
    assert (await registry.get_user("legacy")).must_change_password  # kept until changed
    with pytest.raises(PasswordChangeRequired):
        await auth.authenticate(f"Bearer {login.token}")
    assert ("user.password_change_required", "legacy") in await actions(registry)


async def test_a_stolen_session_cannot_guess_the_current_password_faster_than_a_login(auth):
    token = await session(auth, "root-admin")
    principal = await auth.authenticate(f"Bearer {token}")
    wrong = {"current_password": "not it at all", "new_password": "mauve kettle orbit"}
    for _ in range(3):  # the free failures of a login
        with pytest.raises(InvalidField):
            await auth.accounts.change_own_password(principal, wrong, "10.0.0.9")
    with pytest.raises(TooManyAttempts):
        await auth.accounts.change_own_password(principal, wrong, "10.0.0.9")


async def test_changing_ones_password_ends_the_other_sessions_but_not_this_one(auth):
    mine, stolen = await session(auth, "root-admin"), await session(auth, "root-admin")
    principal = await auth.authenticate(f"Bearer {mine}")
    await auth.authenticate(f"Bearer {stolen}")  # cached
    ended = await auth.accounts.change_own_password(
        principal, {"current_password": PASSWORD, "new_password": "mauve kettle orbit"}
    )
    assert ended == 1
    await auth.authenticate(f"Bearer {mine}")
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {stolen}")


# --- disabling, deleting, revoking: at once here, within the cache TTL elsewhere -----------------


async def test_a_disabled_users_sessions_stop_at_once_here_and_within_the_ttl_elsewhere(registry, auth):
    await auth.add_user("mallory", "sysadmin", PASSWORD)
    token = await session(auth, "mallory")
    now = [0.0]
    other_process = AuthService(registry, cache_ttl_s=0.3, clock=lambda: now[0])
    try:
        await auth.authenticate(f"Bearer {token}")
        await other_process.authenticate(f"Bearer {token}")  # cached there too
        assert await auth.accounts.disable("shell:ops", "mallory") == 1
        with pytest.raises(Unauthorized):
            await auth.authenticate(f"Bearer {token}")  # this process: at once, despite a 60 s cache
        now[0] = 0.35
        with pytest.raises(Unauthorized):
            await other_process.authenticate(f"Bearer {token}")
    finally:
        await other_process.close()
    with pytest.raises(AccountDisabled, match="disabled"):
        await auth.login({"username": "mallory", "password": PASSWORD})
    with pytest.raises(Unauthorized):  # a wrong password learns nothing about the account
        await auth.login({"username": "mallory", "password": "wrong password here"})
    assert await auth.accounts.enable("shell:ops", "mallory")
    await session(auth, "mallory")
    assert ("user.disabled", "mallory") in await actions(registry)
    assert ("user.enabled", "mallory") in await actions(registry)


async def test_a_session_whose_user_was_disabled_is_refused_even_if_it_was_not_deleted(registry):
    """Without transactions a disable may land without its session deletion (a crash between
    the two): the session is still refused, because each lookup reads the user."""
    auth = AuthService(registry, cache_ttl_s=0.0)
    await auth.add_user("mallory", "sysadmin", PASSWORD)
    token = await session(auth, "mallory")
    await registry.set_user_disabled("mallory", 1)
    with pytest.raises(Unauthorized, match="mallory is disabled"):
        await auth.authenticate(f"Bearer {token}")
    await registry.set_user_disabled("mallory", None)
    await registry.delete_user("mallory")
    with pytest.raises(Unauthorized, match="no longer exists"):
        await auth.authenticate(f"Bearer {token}")


async def test_revoking_one_session_by_id_or_all_of_them(auth, registry):
    first, second = await session(auth, "root-admin"), await session(auth, "root-admin")
    listed = await auth.accounts.sessions("root-admin")
    assert len(listed) == 2
    second_hash = (await auth.authenticate(f"Bearer {second}")).token_hash
    assert second_hash in {s.token_hash for s in listed}
    assert await auth.accounts.revoke_sessions("shell:ops", "root-admin", second_hash[:12]) == 1
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {second}")
    await auth.authenticate(f"Bearer {first}")
    assert await auth.accounts.revoke_sessions("shell:ops", "root-admin") == 1
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {first}")
    assert ("user.sessions_revoked", "root-admin") in await actions(registry)


async def test_the_websocket_watcher_is_woken_and_told_why(auth):
    await auth.add_user("mallory", "sysadmin", PASSWORD)
    principal = await auth.authenticate(f"Bearer {await session(auth, 'mallory')}")
    woken = []
    stop = auth.watch(principal, lambda: woken.append(1))
    assert await auth.session_ended(principal) is None
    await auth.accounts.disable("shell:ops", "mallory")
    assert woken and "logged out or revoked" in await auth.session_ended(principal)
    stop()
    await auth.logout(await auth.authenticate(f"Bearer {await session(auth, 'root-admin')}"))
    assert len(woken) == 1


# --- nobody locks the fleet out; deleting hands things over ------------------------------------


async def test_the_last_enabled_admin_cannot_be_disabled_or_deleted(auth):
    with pytest.raises(Conflict, match="only enabled admin"):
        await auth.accounts.disable("shell:ops", "root-admin")
    with pytest.raises(Conflict, match="only enabled admin"):
        await auth.accounts.remove("shell:ops", "root-admin")
    await auth.add_user("second-admin", "admin", PASSWORD)
    with pytest.raises(Forbidden, match="may not disable themselves"):
        await auth.accounts.disable("root-admin", "root-admin", acting_user="root-admin")
    await auth.accounts.disable("second-admin", "root-admin", acting_user="second-admin")


async def test_deleting_an_owner_is_refused_unless_their_servers_and_tasks_are_handed_over(auth, registry):
    await auth.add_user("leaver", "sysadmin", PASSWORD)
    await auth.add_user("heir", "sysadmin", PASSWORD)
    await auth.add_user("watcher", "engineer", PASSWORD)
    await registry.add_server(server("srv-1", "web-1", owner="leaver"))
    await registry.add_server(server("srv-2", "web-2", owner="", created_by="leaver"))  # before owners
    await registry.add_server(server("srv-3", "web-3", owner="heir"))
    await registry.add_task(task("tsk-1", owner="leaver"))
    await registry.add_task(task("tsk-2", owner="leaver", state="done"))
    token = await session(auth, "leaver")

    with pytest.raises(Conflict, match=r"owns 2 server\(s\) \(web-1, web-2\) and 1 unfinished task"):
        await auth.accounts.remove("shell:ops", "leaver")
    assert await registry.get_user("leaver") is not None
    for bad in ("watcher", "leaver", "nobody"):
        with pytest.raises(InvalidField, match="transfer_to"):
            await auth.accounts.remove("shell:ops", "leaver", transfer_to=bad)

    removal = await auth.accounts.remove("shell:ops", "leaver", transfer_to="heir")
    assert (sorted(removal.servers), removal.tasks, removal.sessions) == (["web-1", "web-2"], 1, 1)
    assert await registry.get_user("leaver") is None
    assert {s.id: s.owner for s in await registry.list_servers()} == {"srv-1": "heir", "srv-2": "heir", "srv-3": "heir"}
    assert (await registry.get_task("tsk-1")).owner == "heir"
    assert (await registry.get_task("tsk-2")).owner == "leaver"  # history keeps the name
    with pytest.raises(Unauthorized):
        await auth.authenticate(f"Bearer {token}")
    log = await actions(registry)
    assert ("server.transferred", "srv-1") in log and ("task.transferred", "tsk-1") in log
    assert log[-1] == ("user.removed", "leaver")
