"""`tasker agent` against a real backend (embedded stores, one-second slots), with real
subprocesses: a task that exits 0, one that fails, one cancelled (SIGTERM ignored, so SIGKILL),
an agent restarted mid-task, two agents for one server, and an agent that goes silent.

The agent runs in-process (its `step()`s driven by the test, or its `run()` as a task); the
tasks' commands are real processes under the real supervisor.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest

from agents.agent import Agent, AgentRefused
from backend.services.agents import AgentSettings
from backend.services.scheduler import SchedulerSettings
from tasker.backoff import RetryBackoff
from tasker.client import NotFoundError, TaskerClient
from tests.integration.backend_rig import Api, running_backend, user_session

pytestmark = [pytest.mark.timeout(90)]

FAST_SCHEDULER = SchedulerSettings(
    lease_ttl_s=3,
    renew_s=0.3,
    check_s=0.3,
    debounce_s=0.05,
    time_budget_s=0.2,
    slot_s=1,
    horizon_s=120,
    agent_grace_s=0.5,
    freeze_grace_s=5,
    measure_every_s=0.5,
    measure_settle_s=0.5,
)
FAST_AGENTS = AgentSettings(lease_ttl_s=2.5, poll_s=0.2, lookahead_s=60)
PY = sys.executable


@asynccontextmanager
async def fleet(mode):
    """A backend (api + scheduler), an admin session, one server and a key scoped to it."""
    async with (
        running_backend(mode, (), scheduler_settings=FAST_SCHEDULER, agent_settings=FAST_AGENTS) as (backend, url),
        aiohttp.ClientSession() as http,
    ):
        admin = await user_session(backend, http, url, "admin")
        server = await admin.add_server(cores=8)
        _, key = await backend.auth.create_ingest_key("agent", "admin", server["id"])
        yield backend, url, admin, server, key


async def submit(api: Api, command: list[str], **fields) -> dict:
    body = {"name": "job", "cores": 2, "duration": fields.pop("duration", 2), "command": command, **fields}
    return (await api.call("POST", "/api/v1/tasks", json=body, expect=201))[1]


async def wait_task(api: Api, task_id: str, check, timeout_s: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        _, task = await api.call("GET", f"/api/v1/tasks/{task_id}", expect=200)
        if check(task):
            return task
        if time.monotonic() > deadline:
            pytest.fail(f"task never got there: {task}")
        await asyncio.sleep(0.1)


@asynccontextmanager
async def agent_running(
    url: str, key: str, server_id: str, state_dir: Path, agent_id: str = "host-1", kill_grace_s: float = 0.5
):
    async with TaskerClient(url, key) as client:
        agent = Agent(client, server_id, state_dir, agent_id=agent_id, kill_grace_s=kill_grace_s)
        runner = asyncio.create_task(agent.run())
        try:
            yield agent
        finally:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def ms(text: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(text).timestamp() * 1000)


async def test_a_task_runs_at_its_planned_time_and_ends_done(embedded, tmp_path) -> None:
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(
            admin,
            [PY, "-c", "import os; print('hello from', os.environ['GREETING']); print(os.getcwd())"],
            env={"GREETING": "tasker"},
            cwd=str(tmp_path),
        )
        async with agent_running(url, key, server["id"], tmp_path / "state"):
            done = await wait_task(admin, task["id"], lambda t: t["state"] in ("done", "failed"))
        assert done["state"] == "done" and done["run"]["exit_code"] == 0
        assert "hello from tasker" in done["run"]["output_tail"] and str(tmp_path) in done["run"]["output_tail"]
        planned_start = ms(done["plan"]["start"])
        assert abs(ms(done["started_at"]) - planned_start) < 1500, "not started at its planned time"
        assert len(done["run"]["runs"]) == 1 and done["run"]["activity"] is None


async def test_a_failing_task_ends_failed_with_its_exit_code(embedded, tmp_path) -> None:
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(admin, [PY, "-c", "import sys; print('oops', file=sys.stderr); sys.exit(3)"])
        missing = await submit(admin, ["/no/such/program"])
        async with agent_running(url, key, server["id"], tmp_path / "state"):
            failed = await wait_task(admin, task["id"], lambda t: t["state"] in ("done", "failed"))
            gone = await wait_task(admin, missing["id"], lambda t: t["state"] in ("done", "failed"))
        assert (
            failed["state"] == "failed" and failed["run"]["exit_code"] == 3 and "oops" in failed["run"]["output_tail"]
        )
        assert failed["reason"] == "exit code 3"
        assert gone["state"] == "failed" and "cannot start" in gone["run"]["output_tail"]


STUBBORN = (
    "import signal, time, os\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('pid', os.getpid(), flush=True)\n"
    "time.sleep(60)\n"
)


async def test_cancel_sends_sigterm_then_sigkill(embedded, tmp_path) -> None:
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(admin, [PY, "-c", STUBBORN], duration=30)
        async with agent_running(url, key, server["id"], tmp_path / "state", kill_grace_s=0.5) as agent:
            await wait_task(admin, task["id"], lambda t: t["state"] == "running")
            pid = agent.procs[task["id"]].pid()
            assert pid and alive(pid)
            await admin.call("DELETE", f"/api/v1/tasks/{task['id']}", expect=200)
            deadline = time.monotonic() + 10
            while alive(pid):
                assert time.monotonic() < deadline, "the cancelled task still runs"
                await asyncio.sleep(0.05)
            _, after = await admin.call("GET", f"/api/v1/tasks/{task['id']}", expect=200)
        assert after["state"] == "cancelled"


async def test_an_agent_killed_mid_task_adopts_it_when_restarted(embedded, tmp_path) -> None:
    state = tmp_path / "state"
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(admin, [PY, "-c", "import time; time.sleep(2.5); print('finished')"], duration=3)
        async with agent_running(url, key, server["id"], state) as first:
            await wait_task(admin, task["id"], lambda t: t["state"] == "running")
            pid = first.procs[task["id"]].pid()
        # The first agent is gone (no goodbye); its task goes on under its supervisor.
        await asyncio.sleep(0.5)
        assert alive(pid)
        async with agent_running(url, key, server["id"], state) as second:
            done = await wait_task(admin, task["id"], lambda t: t["state"] in ("done", "failed"))
            assert task["id"] not in second.procs or second.procs[task["id"]].meta.reported_end
        assert done["state"] == "done" and "finished" in done["run"]["output_tail"]
        assert len(done["run"]["runs"]) == 1, "the task ran more than once"


async def test_two_agents_for_one_server_only_one_runs_its_tasks(embedded, tmp_path) -> None:
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(admin, [PY, "-c", "print('once')"])
        async with (
            agent_running(url, key, server["id"], tmp_path / "a", agent_id="host-a") as a,
            agent_running(url, key, server["id"], tmp_path / "b", agent_id="host-b") as b,
        ):
            done = await wait_task(admin, task["id"], lambda t: t["state"] in ("done", "failed"))
            assert (a.epoch is None) != (b.epoch is None), "both agents think they hold the lease"
            assert a.stats.started + b.stats.started == 1
        assert done["state"] == "done" and done["run"]["output_tail"].count("once") == 1


async def test_a_silent_agent_s_task_is_stopped_and_queued_again(embedded, tmp_path) -> None:
    async with fleet(embedded) as (_, url, admin, server, key):
        task = await submit(admin, [PY, "-c", "import time; time.sleep(60)"], duration=60)
        async with agent_running(url, key, server["id"], tmp_path / "state") as agent:
            await wait_task(admin, task["id"], lambda t: t["state"] == "running")
            pid = agent.procs[task["id"]].pid()
        # Silent from now on: the task's watchdog stops it when the lease may have expired,
        # and the scheduler queues it again once the lease has expired.
        deadline = time.monotonic() + 10
        while alive(pid):
            assert time.monotonic() < deadline, "the task of a silent agent still runs"
            await asyncio.sleep(0.1)
        again = await wait_task(admin, task["id"], lambda t: t["state"] in ("queued", "planned"), timeout_s=15)
        assert "silent" in again["reason"] or again["state"] == "planned"
        assert len(again["run"]["runs"]) == 1


async def test_scoped_key_posts_only_its_server_and_is_the_only_key_for_its_agent(embedded) -> None:
    async with fleet(embedded) as (backend, url, admin, server, key):
        other = await admin.add_server(cores=8)
        _, unscoped = await backend.auth.create_ingest_key("any", "admin")
        reading = {"metric": "power", "ts": int(time.time() * 1000), "value": 100.0}
        status, _ = await admin.post([{**reading, "server_id": server["id"]}], token=key)
        assert status == 202
        status, body = await admin.post([{**reading, "server_id": other["id"]}], token=key)
        assert status == 403 and other["id"] in body["error"]
        assert (await admin.post([{**reading, "server_id": other["id"]}], token=unscoped))[0] == 202
        hb = f"/api/v1/agents/{server['id']}/heartbeat"
        assert (await admin.call("POST", hb, json={"agent": "x"}, token=unscoped))[0] == 403
        assert (await admin.call("POST", f"/api/v1/agents/{other['id']}/heartbeat", json={"agent": "x"}, token=key))[
            0
        ] == 403
        status, answer = await admin.call("POST", hb, json={"agent": "x"}, token=key)
        assert status == 200 and answer["lease"]["epoch"] >= 1
        assert (await admin.call("POST", hb, json={"agent": "y"}, token=key))[0] == 409


async def test_an_agent_for_a_server_it_cannot_serve_stops_saying_why(embedded, tmp_path) -> None:
    async with fleet(embedded) as (backend, url, admin, server, key):
        other = await admin.add_server(name="web-other", cores=8)
        # `--server` takes a name as every command does; an id is taken as it is
        for token in (admin.token, key):
            async with TaskerClient(url, token) as client:
                retry = RetryBackoff(0.1, 0.1)
                assert await client.server_id_of(server["name"].upper(), retry) == server["id"]
                assert await client.server_id_of(other["id"], retry) == other["id"]
                assert await client.server_id_of("srv_nowhere234", retry) == "srv_nowhere234"
                with pytest.raises(NotFoundError, match="no server with id or name 'web-nowhere'"):
                    await client.server_id_of("web-nowhere", retry)
        async with TaskerClient(url, key) as client:
            for wrong in (other["id"], "srv_nowhere"):  # not its key's server; no server
                agent = Agent(client, wrong, tmp_path / wrong, agent_id="host-1")
                with pytest.raises(AgentRefused, match=f"server {wrong}: "):
                    await asyncio.wait_for(agent.run(), 10)
