"""`tasker backend`, `tasker users add` and `tasker keys ...` from the shell, embedded mode:
the first admin's one-time password, accounts and ingest keys made without a running backend."""

from __future__ import annotations

import asyncio
import re
import subprocess

import aiohttp
import pytest

from tests.integration.backend_rig import TASKER, Mode, listening_url, spawn_backend

pytestmark = pytest.mark.timeout(120)


def tasker(mode: Mode, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([TASKER, *args], env=mode.env(), input=stdin, capture_output=True, text=True, timeout=60)


async def test_first_start_prints_a_working_admin_password_once(embedded, tmp_path):
    first = await spawn_backend(embedded, [], tmp_path / "first.log")
    try:
        out = first.log()
        password = re.search(r"One-time password, shown only now: (\S+)", out).group(1)
        url = listening_url(out)
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/v1/auth/login", json={"username": "admin", "password": password}) as r:
                assert r.status == 200 and (await r.json())["role"] == "admin"
    finally:
        assert first.stop() == 0
    second = await spawn_backend(embedded, [], tmp_path / "second.log")
    try:
        assert "password" not in second.log().lower()
    finally:
        second.stop()


async def test_users_and_ingest_keys_from_the_shell(embedded, tmp_path):
    made = tasker(
        embedded, "users", "add", "olga", "--role", "sysadmin", "--password-stdin", stdin="olga's long password\n"
    )
    assert made.returncode == 0, made.stderr
    generated = tasker(embedded, "users", "add", "pete", "--role", "engineer")
    pete_password = re.search(r"Password, shown only now: (\S+)", generated.stdout).group(1)
    duplicate = tasker(embedded, "users", "add", "olga", "--role", "engineer")
    assert duplicate.returncode == 1 and "taken" in duplicate.stderr and "Traceback" not in duplicate.stderr
    bad_role = tasker(embedded, "users", "add", "quinn", "--role", "root")
    assert bad_role.returncode == 2 and "role must be one of" in bad_role.stderr

    created = tasker(embedded, "keys", "create", "--label", "rack 7")
    assert created.returncode == 0, created.stderr
    key = re.search(r"^(tik_\S+)$", created.stdout, re.M).group(1)
    key_id = key.split("_")[1]
    listed = tasker(embedded, "keys", "list")
    assert key_id in listed.stdout and "rack 7" in listed.stdout and "active" in listed.stdout
    assert key.split("_", 2)[2] not in listed.stdout  # the secret is never shown again

    backend = await spawn_backend(embedded, [], tmp_path / "backend.log")
    try:
        url = listening_url(backend.log())
        async with aiohttp.ClientSession() as http:
            for username, password in (("olga", "olga's long password"), ("pete", pete_password)):
                async with http.post(
                    f"{url}/api/v1/auth/login", json={"username": username, "password": password}
                ) as r:
                    assert r.status == 200
            async with http.post(
                f"{url}/api/v1/auth/login", json={"username": "olga", "password": "olga's long password"}
            ) as r:
                token = (await r.json())["token"]
            async with http.post(
                f"{url}/api/v1/servers",
                headers={"Authorization": f"Bearer {token}"},
                json={
                    "name": "cli-1",
                    "location": {"region": "eu-west"},
                    "energy_source": "wind",
                    "idle_watts": 1,
                    "max_watts": 2,
                    "cores": 1,
                },
            ) as r:
                server_id = (await r.json())["id"]
            reading = {"readings": [{"server_id": server_id, "metric": "power", "ts": 1_790_000_000_000, "value": 1}]}
            async with http.post(
                f"{url}/api/v1/readings", json=reading, headers={"Authorization": f"Bearer {key}"}
            ) as r:
                assert r.status == 202

            revoked = tasker(embedded, "keys", "revoke", key_id)
            assert revoked.returncode == 0, revoked.stderr
            assert "revoked" in tasker(embedded, "keys", "list").stdout
            # The backend trusts a verified key for at most a few seconds (its auth cache).
            status = 202
            for _ in range(40):
                async with http.post(
                    f"{url}/api/v1/readings", json=reading, headers={"Authorization": f"Bearer {key}"}
                ) as r:
                    status = r.status
                if status == 401:
                    break
                await asyncio.sleep(0.25)
            assert status == 401
    finally:
        backend.stop()
    unknown = tasker(embedded, "keys", "revoke", "zzzzzzzzzz")
    assert unknown.returncode == 1 and "zzzzzzzzzz" in unknown.stderr


def test_a_bad_registry_url_is_one_clear_line(embedded):
    env_mode = Mode("bad", embedded.settings)
    result = subprocess.run(
        [TASKER, "keys", "list"],
        env={**env_mode.env(), "TASKER_REGISTRY_URL": "postgres://x/y"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("tasker: TASKER_REGISTRY_URL='postgres://x/y'")
    assert "Traceback" not in result.stderr


def test_the_embedded_broker_refuses_split_roles_with_a_clear_message(embedded):
    result = tasker(embedded, "backend", "--role", "packager")
    assert result.returncode == 2
    assert "memory://" in result.stderr and "RabbitMQ" in result.stderr and "Traceback" not in result.stderr
