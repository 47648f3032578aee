"""Owners own their servers: a sysadmin changes, deletes and purges only their own, admins any,
and every change is in the audit log that only admins read. Over HTTP, embedded."""

from __future__ import annotations

import aiohttp
import pytest

from tests.integration.backend_rig import embedded, running_backend, user_session  # noqa: F401

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
        status, body = await mallory.call("PUT", f"/api/v1/servers/{sid}/owner",
                                          json={"owner": "mallory"})
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
        assert actions == [("server.purged", sid), ("server.removed", sid), ("server.transferred", sid),
                           ("server.updated", sid), ("server.added", sid)]
        assert log["entries"][0]["actor"] == mallory_name
        assert log["entries"][3]["detail"] == "changed max_watts"
        assert log["entries"][2]["detail"].endswith(f"to {mallory_name}")
