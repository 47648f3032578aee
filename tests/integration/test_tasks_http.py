"""Tasks over HTTP on an embedded backend with every role: who may see, submit and cancel
what, the error shape of a bad form, and a submitted task getting planned."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.integration.backend_rig import running_backend, user_session

pytestmark = pytest.mark.timeout(120)

TASK = {"name": "render", "cores": 2, "duration": "1h"}


async def wait_planned(api, task_id: str, timeout_s: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        _, task = await api.call("GET", f"/api/v1/tasks/{task_id}", expect=200)
        if task["state"] != "queued" or time.monotonic() > deadline:
            return task
        await asyncio.sleep(0.2)


async def test_ownership_validation_and_planning(embedded) -> None:
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        alice = await user_session(backend, http, url, "sysadmin")
        bob = await user_session(backend, http, url, "sysadmin")
        engineer = await user_session(backend, http, url, "engineer")
        admin = await user_session(backend, http, url, "admin")
        server = await alice.add_server(cores=8, energy_source="grid-mix", location={"region": "us-west"})

        status, body = await engineer.call("POST", "/api/v1/tasks", json=TASK)
        assert status == 403 and "engineer" in body["error"]

        status, body = await alice.call(
            "POST",
            "/api/v1/tasks",
            json={**TASK, "cores": 9, "tags": ["gpu"], "duration": "1h", "deadline": "2020-01-01T00:00:00Z"},
        )
        assert status == 400
        assert {d["field"] for d in body["details"]} == {"cores", "tags", "deadline"}

        _, mine = await alice.call("POST", "/api/v1/tasks", json=TASK, expect=201)
        _, theirs = await bob.call("POST", "/api/v1/tasks", json={**TASK, "name": "bobs"}, expect=201)
        assert mine["owner"] != theirs["owner"] and mine["state"] == "queued"

        # A sysadmin sees and cancels only their own; another's task does not exist for them.
        _, listed = await alice.call("GET", "/api/v1/tasks", expect=200)
        assert [t["id"] for t in listed["tasks"]] == [mine["id"]]
        assert (await alice.call("GET", f"/api/v1/tasks/{theirs['id']}"))[0] == 404
        assert (await alice.call("DELETE", f"/api/v1/tasks/{theirs['id']}"))[0] == 404
        # Engineers read every task but cancel none; admins see everything.
        for reader in (engineer, admin):
            _, listed = await reader.call("GET", "/api/v1/tasks", expect=200)
            assert {t["id"] for t in listed["tasks"]} == {mine["id"], theirs["id"]}
        assert (await engineer.call("DELETE", f"/api/v1/tasks/{mine['id']}"))[0] == 403
        assert (await bob.call("GET", f"/api/v1/tasks/{theirs['id']}"))[1]["state"] in ("queued", "planned")

        planned = await wait_planned(alice, mine["id"])
        assert planned["state"] == "planned", planned
        plan = planned["plan"]
        assert plan["server_id"] == server["id"] and plan["co2_g"] <= plan["run_now_co2_g"]
        assert plan["explanation"]

        # The plan: alice sees her task by name and bob's only as occupied cores.
        _, timeline = await alice.call("GET", "/api/v1/plan", expect=200)
        (row,) = timeline["servers"]
        assert row["curve"] in timeline["curves"] and len(timeline["curves"][row["curve"]]) == 576
        await wait_planned(bob, theirs["id"])
        _, timeline = await alice.call("GET", "/api/v1/plan", expect=200)
        names = sorted(p["name"] or "-" for p in timeline["servers"][0]["placements"])
        assert names == ["-", "render"]
        _, saved = await alice.call("GET", "/api/v1/plan/savings", expect=200)
        assert saved["totals"]["tasks"] == 1 and saved["totals"]["saving_g"] >= 0

        _, cancelled = await admin.call("DELETE", f"/api/v1/tasks/{theirs['id']}", expect=200)
        assert cancelled["state"] == "cancelled"
        status, body = await bob.call("DELETE", f"/api/v1/tasks/{theirs['id']}")
        assert status == 409 and "already cancelled" in body["error"]

        status, body = await alice.call("PUT", "/api/v1/grid/traces", data="region,ts,g_per_kwh\n")
        assert status == 403
        status, body = await admin.call("PUT", "/api/v1/grid/traces", data="region,ts,g_per_kwh\nus-west,x,1\n")
        assert status == 400 and "line 2" in body["error"]
        _, body = await admin.call(
            "PUT", "/api/v1/grid/traces", expect=200, data="region,ts,g_per_kwh\nus-west,2026-01-01T00:00:00Z,100\n"
        )
        assert body == {"regions": {"us-west": 1}, "rows": 1}
