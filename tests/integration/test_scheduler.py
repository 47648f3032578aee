"""The scheduler over the real services (RabbitMQ, Cassandra, FerretDB).

Tasks submitted through the API get planned within their windows and never above the run-now
CO2; with two backend processes running the scheduler role, SIGKILLing the lease holder while
it plans hands planning to the other within 30 s, and every task ends planned exactly once,
under the new lease epoch, with no server over its cores at any instant.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections import defaultdict
from datetime import datetime

import aiohttp
import pytest

from backend.adapters.mongo import MongoRegistry
from backend.services.scheduler import LEASE_NAME
from tests.integration.backend_rig import (
    Api,
    running_backend,
    spawn_backend,
    user_session,
)

pytestmark = [pytest.mark.services, pytest.mark.timeout(240)]

TAKEOVER_S = 30.0


def ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


async def add_fleet(api: Api) -> list[dict]:
    """Six small servers in five regions with different sources: cores are contested.

    Their names sort first among the servers of the session, coal first: the run-now
    counterfactual (the first server that fits, in the registry's order by name) is then the
    dirtiest server, whatever other tests left in the shared database."""
    specs = [
        ("ap-south", "coal"),
        ("us-west", "grid-mix"),
        ("us-west", "grid-mix"),
        ("eu-north", "hydro"),
        ("eu-west", "gas"),
        ("eu-central", "grid-mix"),
    ]
    tag = secrets.token_hex(3)
    return [
        await api.add_server(f"0{i}-{s}-{tag}", location={"region": r}, energy_source=s, cores=8)
        for i, (r, s) in enumerate(specs)
    ]


async def submit_tasks(api: Api, count: int) -> list[dict]:
    out = []
    for i in range(count):
        body = {
            "name": f"job-{i}",
            "cores": 2 + i % 3 * 2,
            "duration": f"{30 + (i % 4) * 30}m",
            "interruptible": i % 3 == 0,
        }
        if i % 5 == 0:
            body["regions"] = ["us-west", "eu-north"]
        _, task = await api.call("POST", "/api/v1/tasks", json=body, expect=201)
        out.append(task)
    return out


async def all_tasks(api: Api) -> list[dict]:
    return (await api.call("GET", "/api/v1/tasks", expect=200))[1]["tasks"]


async def wait_all_planned(api: Api, count: int, timeout_s: float, epoch: int | None = None) -> list[dict]:
    deadline = time.monotonic() + timeout_s
    while True:
        tasks = await all_tasks(api)
        done = [t for t in tasks if t["state"] == "planned" and (epoch is None or t["plan"]["epoch"] == epoch)]
        if len(done) == count or time.monotonic() > deadline:
            return tasks
        await asyncio.sleep(0.3)


async def assert_sound_plan(api: Api, admin: Api, submitted: list[dict]) -> None:
    """Each submitted task exactly once, planned inside its window on an allowed server, never
    above run-now CO2; no server above its cores at any instant (counting every owner's tasks:
    the tests of a session share one database)."""
    tasks = await all_tasks(api)
    servers = (await admin.call("GET", "/api/v1/servers", expect=200))[1]["servers"]
    ids = [t["id"] for t in tasks]
    assert len(ids) == len(set(ids)), "a task is listed twice"
    assert set(ids) == {t["id"] for t in submitted}, "a task was lost"
    cores = {s["id"]: s["cores"] for s in servers}
    region = {s["id"]: s["location"]["region"] for s in servers}
    events: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for task in tasks:
        assert task["state"] == "planned", task
        plan = task["plan"]
        pieces = [(ms(a), ms(b)) for a, b in plan["pieces"]]
        assert pieces and all(a < b for a, b in pieces)
        assert pieces[0][0] >= ms(task["earliest_start"]) - 300_000  # the slot holding now
        assert pieces[-1][1] <= ms(task["deadline"])
        assert sum(b - a for a, b in pieces) >= task["duration_s"] * 1000
        if not task["interruptible"]:
            assert len(pieces) == 1
        if task["regions"]:
            assert region[plan["server_id"]] in task["regions"]
        assert plan["co2_g"] <= plan["run_now_co2_g"] + 1e-6
    for task in await all_tasks(admin):
        if task["state"] in ("planned", "running"):
            for a, b in task["plan"]["pieces"]:
                events[task["plan"]["server_id"]] += [(ms(a), task["cores"]), (ms(b), -task["cores"])]
    for server_id, changes in events.items():
        load = 0
        for _, delta in sorted(changes, key=lambda e: (e[0], e[1])):
            load += delta
            assert load <= cores[server_id], f"server {server_id} over its {cores[server_id]} cores"


async def test_tasks_submitted_through_the_api_get_planned(distributed) -> None:
    async with running_backend(distributed, ["api", "scheduler"]) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        admin = await user_session(backend, http, url, "admin")
        await add_fleet(api)
        submitted = await submit_tasks(api, 12)
        await wait_all_planned(api, len(submitted), timeout_s=60)
        await assert_sound_plan(api, admin, submitted)
        _, saved = await api.call("GET", "/api/v1/plan/savings", expect=200)
        assert saved["totals"]["compared"] == 12
        assert saved["totals"]["planned_co2_g"] < saved["totals"]["run_now_co2_g"]
        # A cancel lands, and the next round leaves it cancelled.
        _, cancelled = await api.call("DELETE", f"/api/v1/tasks/{submitted[0]['id']}", expect=200)
        await asyncio.sleep(2)
        _, again = await api.call("GET", f"/api/v1/tasks/{submitted[0]['id']}", expect=200)
        assert again["state"] == "cancelled" and again["version"] == cancelled["version"]


async def test_killed_lease_holder_is_replaced_without_losing_or_doubling_tasks(distributed, tmp_path) -> None:
    registry = MongoRegistry(distributed.settings.registry_url)
    await registry.start()
    spawned = []
    try:
        async with running_backend(distributed, ["api"]) as (backend, url), aiohttp.ClientSession() as http:
            api = await user_session(backend, http, url)
            admin = await user_session(backend, http, url, "admin")
            await add_fleet(api)
            spawned = [
                await spawn_backend(distributed, ["scheduler"], tmp_path / f"scheduler-{i}.log") for i in range(2)
            ]
            deadline = time.monotonic() + 30
            while (lease := await registry.get_lease(LEASE_NAME)) is None or lease.expires_at_ms < time.time() * 1000:
                assert time.monotonic() < deadline, "no scheduler took the lease"
                await asyncio.sleep(0.2)
            pids = {p.process.pid: p for p in spawned}
            holder_pid = int(re.search(r":(\d+):", lease.holder).group(1))
            holder, other = pids[holder_pid], next(p for pid, p in pids.items() if pid != holder_pid)

            submitted = await submit_tasks(api, 40)
            # Kill the holder as soon as its first plan writes land: mid-round.
            while not any(t["state"] == "planned" for t in await all_tasks(api)):
                assert time.monotonic() < deadline + 30, "the lease holder planned nothing"
                await asyncio.sleep(0.05)
            holder.kill()
            killed_at = time.monotonic()

            while True:
                now = await registry.get_lease(LEASE_NAME)
                if now is not None and now.epoch > lease.epoch:
                    break
                assert time.monotonic() - killed_at < TAKEOVER_S, "no takeover within 30 s"
                await asyncio.sleep(0.2)
            took_over_s = time.monotonic() - killed_at
            assert str(other.process.pid) in now.holder
            assert took_over_s < TAKEOVER_S

            # Every task planned, under the new epoch: the new holder re-planned them all.
            tasks = await wait_all_planned(api, len(submitted), timeout_s=30, epoch=now.epoch)
            await assert_sound_plan(api, admin, submitted)
            assert {t["plan"]["epoch"] for t in tasks} == {now.epoch}
            assert "lease taken" in other.log()
    finally:
        for process in spawned:
            process.stop()
        await registry.close()
