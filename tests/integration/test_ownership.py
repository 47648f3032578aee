"""Owners own their servers: a sysadmin changes, deletes and purges only their own, admins any,
and every change is in the audit log that only admins read. Over HTTP, embedded."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.backend_rig import running_backend, user_session

pytestmark = pytest.mark.timeout(60)


async def test_a_sysadmin_cannot_change_or_purge_anothers_server(embedded):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        alice = await user_session(backend, http, url)
        mallory = await user_session(backend, http, url)
        admin = await user_session(backend, http, url, role="admin")
        server = await alice.add_server(name="web-1")
        assert server["owner"] == server["created_by"]
        sid = server["id"]

        # Any sysadmin could edit, delete or purge any server before.
        status, body = await mallory.call("PATCH", f"/api/v1/servers/{sid}", json={"max_watts": 1})
        assert status == 403 and "belongs to" in body["error"], body
        status, body = await mallory.call("DELETE", f"/api/v1/servers/{sid}?confirm=true&purge=true")
        assert status == 403, body
        status, body = await mallory.call("PUT", f"/api/v1/servers/{sid}/owner", json={"owner": "mallory"})
        assert status == 403, body
        _, after = await alice.call("GET", f"/api/v1/servers/{sid}", expect=200)
        assert after["max_watts"] == server["max_watts"]

        await alice.call("PATCH", f"/api/v1/servers/{sid}", json={"max_watts": 500}, expect=200)
        # An admin hands it to mallory; now alice may not change it and mallory may.
        mallory_name = (await mallory.call("GET", "/api/v1/auth/me", expect=200))[1]["username"]
        await admin.call("PUT", f"/api/v1/servers/{sid}/owner", json={"owner": mallory_name}, expect=200)
        status, _ = await alice.call("PATCH", f"/api/v1/servers/{sid}", json={"max_watts": 1})
        assert status == 403
        status, body = await admin.call("PUT", f"/api/v1/servers/{sid}/owner", json={"owner": "nobody"})
        assert status == 400 and body["details"][0]["field"] == "owner"
        await mallory.call("DELETE", f"/api/v1/servers/{sid}?confirm=true&purge=true", expect=204)

        # Readable by admins only, newest first, naming who did what.
        status, _ = await alice.call("GET", "/api/v1/audit")
        assert status == 403
        _, log = await admin.call("GET", "/api/v1/audit", expect=200)
        actions = [(e["action"], e["target"]) for e in log["entries"]]
        assert actions == [
            ("server.purged", sid),
            ("server.removed", sid),
            ("server.transferred", sid),
            ("server.updated", sid),
            ("server.added", sid),
        ]
        assert log["entries"][0]["actor"] == mallory_name
        assert log["entries"][3]["detail"] == "changed max_watts"
        assert log["entries"][2]["detail"].endswith(f"to {mallory_name}")


def test_users_and_keys_made_from_the_shell_are_in_the_audit_log(tmp_path):
    import asyncio
    import os
    import subprocess
    import sys

    from backend.adapters.sqlite_registry import SqliteRegistry

    env = {**os.environ, "TASKER_REGISTRY_URL": f"sqlite:///{tmp_path}/registry.db"}
    run = [sys.executable, "-c", "from tasker.cli import main; main()"]
    subprocess.run([*run, "users", "add", "olga", "--role", "engineer"], env=env, check=True, capture_output=True)
    out = subprocess.run(
        [*run, "keys", "create", "--label", "rack-7"], env=env, check=True, capture_output=True, text=True
    ).stdout
    key_id = out.split("Created ingest key ")[1].split(" ")[0]
    subprocess.run([*run, "keys", "revoke", key_id], env=env, check=True, capture_output=True)

    async def entries():
        registry = SqliteRegistry(tmp_path / "registry.db")
        await registry.start()
        try:
            return await registry.list_audit(10)
        finally:
            await registry.close()

    log = asyncio.run(entries())
    assert [(e.action, e.target) for e in log] == [
        ("key.revoked", key_id),
        ("key.created", key_id),
        ("user.added", "olga"),
    ]
    assert all(e.actor.startswith("shell:") for e in log)
