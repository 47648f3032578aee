"""Tasks over HTTP on an embedded backend with every role: who may see, submit and cancel
what, the error shape of a bad form, and a submitted task getting planned."""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import replace

import aiohttp
import pytest

from backend.ports import TaskRecord
from tests.contract.test_registry_tasks_contract import task
from tests.integration.backend_rig import login, running_backend, user_session

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


async def test_finished_since_leaves_out_old_finished_tasks_but_no_unfinished_one(mode) -> None:
    """What the TUI and `tasker tasks list` ask for (`-24h`): a fleet that has run for months
    lists what is not finished, however old, and what finished lately; savings the same."""
    now = int(time.time() * 1000)
    day = 86_400_000
    owner, password = f"sysadmin-{secrets.token_hex(4)}", secrets.token_urlsafe(12)
    stored = {
        "old-queued": stored_task("old-queued", owner, "queued", now - 3 * day),
        "old-done": stored_task("old-done", owner, "done", now - 2 * day, co2_g=100.0, run_now_co2_g=300.0),
        "old-cancelled": stored_task("old-cancelled", owner, "cancelled", now - 2 * day),
        "new-done": stored_task("new-done", owner, "done", now - 3_600_000, co2_g=10.0, run_now_co2_g=20.0),
    }
    # where they ran: a server since removed keeps its id on its tasks
    stored["old-done"] = replace(stored["old-done"], server_id="srv_gone000001")
    stored["new-done"] = replace(stored["new-done"], server_id="srv_here000001")
    async with running_backend(mode) as (backend, url), aiohttp.ClientSession() as http:
        assert backend.auth is not None and backend.registry is not None
        # the distributed registry holds other tests' tasks too: the owner sees only these
        await backend.auth.add_user(owner, "sysadmin", password)
        mine = await login(http, url, owner, password)
        for record in stored.values():
            await backend.registry.add_task(record)
        # MongoDB moves finished tasks out of the hot collection; the answer must not change.
        await backend.registry.archive_tasks(now - day)

        def names(body: dict) -> set[str]:
            return {t["name"] for t in body["tasks"]}

        assert names((await mine.call("GET", "/api/v1/tasks", expect=200))[1]) == set(stored)
        _, recent = await mine.call("GET", "/api/v1/tasks?finished_since=-24h", expect=200)
        assert names(recent) == {"old-queued", "new-done"}
        _, done = await mine.call("GET", f"/api/v1/tasks?state=done&finished_since={now - 3 * day}", expect=200)
        assert names(done) == {"old-done", "new-done"}

        _, saved = await mine.call("GET", "/api/v1/plan/savings?finished_since=-24h", expect=200)
        assert saved["by_state"]["done"]["tasks"] == 1 and saved["totals"]["saving_g"] == pytest.approx(10.0)
        _, saved = await mine.call("GET", "/api/v1/plan/savings", expect=200)
        assert saved["totals"]["saving_g"] == pytest.approx(210.0)

        status, body = await mine.call("GET", "/api/v1/tasks?finished_since=yesterday")
        assert status == 400 and body["details"][0]["field"] == "finished_since"

        # one server's tasks, with the other filters or without
        _, gone = await mine.call("GET", "/api/v1/tasks?server=srv_gone000001", expect=200)
        assert names(gone) == {"old-done"}
        _, gone = await mine.call("GET", "/api/v1/tasks?server=srv_gone000001&finished_since=-24h", expect=200)
        assert names(gone) == set()
        _, here = await mine.call("GET", "/api/v1/tasks?server=srv_here000001&state=done", expect=200)
        assert names(here) == {"new-done"}
        status, body = await mine.call("GET", "/api/v1/tasks?server=")
        assert status == 400 and body["details"][0]["field"] == "server"


def stored_task(name: str, owner: str, state: str, at_ms: int, **plan: float) -> TaskRecord:
    """A task as the registry holds it, submitted and last written at `at_ms`."""
    return replace(
        task(f"tsk_{secrets.token_hex(6)}", owner=owner),
        name=name,
        state=state,
        earliest_start_ms=at_ms,
        deadline_ms=at_ms + 86_400_000,
        co2_g=plan.get("co2_g"),
        run_now_co2_g=plan.get("run_now_co2_g"),
        created_at_ms=at_ms,
        updated_at_ms=at_ms,
        finished_at_ms=at_ms if state in ("done", "cancelled") else None,
        # measured already, so the task meter leaves it as it is
        measured_at_ms=at_ms if state == "done" else None,
    )
