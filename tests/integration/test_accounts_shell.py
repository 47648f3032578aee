"""`tasker users list|passwd|disable|enable|rm|sessions`, `tasker login` with a password that must
change and `tasker passwd`, against a real embedded backend (issue 14 item 7). The `users`
commands act on the registry file while the backend runs, as an operator would."""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiohttp
import pytest

from tests.integration.backend_rig import listening_url, spawn_backend
from tests.integration.test_sensors_emulate import PASSWORD, EmbeddedBackend
from tests.integration.test_shell import Shell, one_line_error

pytestmark = pytest.mark.timeout(180)

CACHE_TTL_S = 5.0  # backend.services.auth.CACHE_TTL_S: how long another process may trust a session


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    running = EmbeddedBackend(tmp_path_factory.mktemp("accounts"))
    running.create_accounts()  # sysadmin `ops`
    made = running.tasker("users", "add", "boss", "--role", "admin", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    running.start()
    yield running
    running.stop()


def run(backend: EmbeddedBackend, *args: str, stdin: str | None = None):
    return backend.tasker(*args, stdin=stdin)


def add_user(backend, name: str, role: str = "sysadmin", password: str = PASSWORD) -> None:
    made = run(backend, "users", "add", name, "--role", role, "--password-stdin", stdin=password + "\n")
    assert made.returncode == 0, made.stderr


async def http_login(backend, name: str, password: str = PASSWORD) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{backend.url}/api/v1/auth/login", json={"username": name, "password": password}) as r:
            return r.status, await r.json()


async def get(backend, path: str, token: str) -> int:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{backend.url}{path}", headers={"Authorization": f"Bearer {token}"}) as r:
            return r.status


async def refused_within(backend, token: str, seconds: float) -> float:
    """How long until `token` is refused (401); fails past `seconds`."""
    started = time.monotonic()
    while await get(backend, "/api/v1/servers", token) != 401:
        assert time.monotonic() - started < seconds, "a session the shell ended still works"
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


# --- tasker users ... -------------------------------------------------------------------------------


async def test_users_list_says_who_is_disabled_or_must_change(backend):
    add_user(backend, "lister-a")
    run(backend, "users", "add", "lister-b", "--role", "engineer")  # generated: must change
    _, token = await http_login(backend, "lister-a")
    listed = run(backend, "users", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "active" in rows["lister-a"] and "must change password" in rows["lister-b"]
    as_json = {u["username"]: u for u in json.loads(run(backend, "users", "list", "--json").stdout)}
    assert as_json["lister-a"]["sessions"] == 1 and as_json["lister-b"]["must_change_password"] is True
    assert "password_hash" not in json.dumps(as_json)


async def test_users_passwd_refuses_weak_passwords_and_ends_the_sessions(backend):
    add_user(backend, "pw-user")
    _, answer = await http_login(backend, "pw-user")
    for weak, says in (("password123", "common"), ("        ", "only whitespace"), ("pw-user2024", "username")):
        refused = run(backend, "users", "passwd", "pw-user", "--password-stdin", stdin=weak + "\n")
        assert refused.returncode == 2 and one_line(refused).startswith("tasker: password ") and says in refused.stderr
    no_terminal = run(backend, "users", "passwd", "pw-user")
    assert no_terminal.returncode == 2 and "--password-stdin" in one_line(no_terminal)
    done = run(backend, "users", "passwd", "pw-user", "--password-stdin", "--must-change", stdin="mauve kettle orbit\n")
    assert done.returncode == 0, done.stderr
    assert "1 session(s) ended" in done.stdout and "must be changed at the next login" in done.stdout
    await refused_within(backend, answer["token"], CACHE_TTL_S + 2)
    status, again = await http_login(backend, "pw-user", "mauve kettle orbit")
    assert status == 200 and again["must_change_password"] is True
    assert await get(backend, "/api/v1/servers", again["token"]) == 403


async def test_users_disable_locks_out_at_once_and_enable_lets_back_in(backend):
    add_user(backend, "dis-user")
    _, answer = await http_login(backend, "dis-user")
    assert await get(backend, "/api/v1/servers", answer["token"]) == 200
    disabled = run(backend, "users", "disable", "dis-user")
    assert disabled.returncode == 0 and "1 session(s) ended" in disabled.stdout, disabled.stderr
    assert await refused_within(backend, answer["token"], CACHE_TTL_S + 2) <= CACHE_TTL_S + 1
    assert (await http_login(backend, "dis-user"))[0] == 403
    assert "disabled" in run(backend, "users", "list").stdout
    assert run(backend, "users", "enable", "dis-user").returncode == 0
    assert (await http_login(backend, "dis-user"))[0] == 200
    assert "was not disabled" in run(backend, "users", "enable", "dis-user").stdout
    assert one_line(run(backend, "users", "disable", "nobody-here")) == "tasker: no user 'nobody-here'"


async def test_the_last_enabled_admin_cannot_be_locked_out_from_the_shell(backend):
    refused = run(backend, "users", "disable", "boss")
    assert "only enabled admin" in one_line(refused)
    refused = run(backend, "users", "rm", "boss", "--yes")
    assert "only enabled admin" in one_line(refused)


async def test_users_rm_asks_and_hands_servers_over_or_refuses(backend):
    add_user(backend, "leaver")
    add_user(backend, "heir")
    status, answer = await http_login(backend, "leaver")
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{backend.url}/api/v1/servers",
            headers={"Authorization": f"Bearer {answer['token']}"},
            json={
                "name": "leaver-web",
                "location": {"region": "eu-west"},
                "energy_source": "wind",
                "idle_watts": 50,
                "max_watts": 200,
                "cores": 8,
            },
        ) as r:
            assert r.status == 201
            server_id = (await r.json())["id"]
    unconfirmed = run(backend, "users", "rm", "leaver")
    assert unconfirmed.returncode == 2 and "pass --yes" in one_line(unconfirmed)
    owner = run(backend, "users", "rm", "leaver", "--yes")
    assert "owns 1 server(s) (leaver-web)" in one_line(owner) and "--transfer-to" in owner.stderr
    removed = run(backend, "users", "rm", "leaver", "--yes", "--transfer-to", "heir")
    assert removed.returncode == 0, removed.stderr
    assert "Deleted user leaver; 1 session(s) ended; 1 server(s) and 0 task(s) now belong to heir" in removed.stdout
    await refused_within(backend, answer["token"], CACHE_TTL_S + 2)
    _, heir = await http_login(backend, "heir")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{backend.url}/api/v1/servers/{server_id}", headers={"Authorization": f"Bearer {heir['token']}"}
        ) as r:
            assert (await r.json())["owner"] == "heir"
    _, boss = await http_login(backend, "boss")
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{backend.url}/api/v1/audit?limit=10", headers={"Authorization": f"Bearer {boss['token']}"}
        ) as r:
            entries = (await r.json())["entries"]
    assert [(e["action"], e["target"]) for e in entries[:2]] == [
        ("user.removed", "leaver"),
        ("server.transferred", server_id),
    ]
    assert all(e["actor"].startswith("shell:") for e in entries[:2])


async def test_users_sessions_lists_and_revokes_one_or_all(backend):
    add_user(backend, "sess-user")
    _, first = await http_login(backend, "sess-user")
    _, second = await http_login(backend, "sess-user")
    listed = run(backend, "users", "sessions", "sess-user")
    assert listed.returncode == 0 and listed.stdout.splitlines()[0].split() == [
        "SESSION",
        "FROM",
        "CREATED",
        "AT",
        "EXPIRES",
        "AT",
    ]
    assert len(listed.stdout.splitlines()) == 3 and "127.0.0.1" in listed.stdout
    ids = [s["id"] for s in json.loads(run(backend, "users", "sessions", "sess-user", "--json").stdout)]
    assert one_line(run(backend, "users", "sessions", "sess-user", "--session", ids[0])).endswith("add --revoke")
    one = run(backend, "users", "sessions", "sess-user", "--revoke", "--session", ids[0])
    assert one.returncode == 0 and "Ended 1 session(s) of sess-user." in one.stdout
    await refused_within(backend, first["token"], CACHE_TTL_S + 2)
    assert await get(backend, "/api/v1/servers", second["token"]) == 200
    rest = run(backend, "users", "sessions", "sess-user", "--revoke")
    assert "Ended 1 session(s)" in rest.stdout
    await refused_within(backend, second["token"], CACHE_TTL_S + 2)
    assert "no live session" in run(backend, "users", "sessions", "sess-user").stdout


# --- tasker login / tasker passwd -----------------------------------------------------------------


@pytest.fixture
def shell(backend):
    return Shell(backend)


def test_tasker_login_says_a_one_time_password_must_change_and_tasker_passwd_changes_it(backend, shell):
    made = run(backend, "users", "add", "fresh", "--role", "sysadmin")
    one_time = re.search(r"Password, shown only now: (\S+)", made.stdout).group(1)
    assert "must be changed at the first login" in made.stdout
    logged = shell("login", "--username", "fresh", "--password-stdin", stdin=one_time + "\n")
    assert logged.exit_code == 0, logged.stderr
    assert "fresh must choose a new password before anything else" in logged.stderr
    assert "tasker passwd" in logged.stderr
    refused = shell("servers", "list")
    assert one_line_error(refused).startswith("tasker: not allowed: password change required: fresh must choose")
    weak = shell("passwd", "--password-stdin", stdin=f"{one_time}\nfresh2024!\n")
    assert one_line_error(weak) == "tasker: new_password is the username with digits or symbols added"
    wrong = shell("passwd", "--password-stdin", stdin="not the password\nmauve kettle orbit\n")
    assert one_line_error(wrong) == "tasker: current_password is not the current password"
    changed = shell("passwd", "--password-stdin", stdin=f"{one_time}\nmauve kettle orbit\n")
    assert changed.exit_code == 0 and "password of fresh changed" in changed.stdout, changed.stderr
    assert shell("servers", "list").exit_code == 0


async def test_the_first_admin_is_told_to_change_its_printed_password(embedded, tmp_path):
    first = await spawn_backend(embedded, [], tmp_path / "first.log")
    try:
        out = first.log()
        password = re.search(r"One-time password, shown only now: (\S+)", out).group(1)
        assert "It must be changed at the first login" in out
        async with aiohttp.ClientSession() as http:
            url = listening_url(out)
            async with http.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}) as r:
                answer = await r.json()
            assert answer["must_change_password"] is True
            headers = {"Authorization": f"Bearer {answer['token']}"}
            async with http.get(f"{url}/api/v1/audit", headers=headers) as r:
                assert r.status == 403 and "password change required" in (await r.json())["error"]
    finally:
        assert first.stop() == 0
