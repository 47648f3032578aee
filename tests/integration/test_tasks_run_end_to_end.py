"""A task from submission to measured CO2, over the real services (RabbitMQ, Cassandra,
FerretDB), with two-second slots.

The backend runs every role in-process; the fleet emulator (with its emulated agents) posts
readings through the API like `tasker sensors emulate`. A task submitted through the API is
planned, runs on the emulated server (whose power rises at the planned start and falls at the
end), ends done, and its CO2 measured from the readings is within 10% of the planned figure.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from datetime import datetime

import aiohttp
import pytest

from backend.services.agents import AgentSettings
from backend.services.scheduler import SchedulerSettings
from sensors.emulate import FleetEmulator
from sensors.emulated_agents import EmulatedAgents
from sensors.model import FleetModel
from sensors.registry import RegistryFollower
from sensors.sender import ReadingSender
from tasker.client import TaskerClient
from tests.integration.backend_rig import running_backend, user_session

pytestmark = [pytest.mark.services, pytest.mark.timeout(120)]

SLOT_S = 2
SCHEDULER = SchedulerSettings(
    renew_s=0.5,
    check_s=0.5,
    debounce_s=0.05,
    time_budget_s=0.3,
    slot_s=SLOT_S,
    horizon_s=300,
    agent_grace_s=2,
    freeze_grace_s=10,
    measure_every_s=0.5,
    measure_settle_s=1.5,
)
AGENTS = AgentSettings(lease_ttl_s=5, poll_s=0.5, lookahead_s=120)


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def mean(points: list[tuple[int, float]], lo: int, hi: int) -> float:
    values = [v for ts, v in points if lo <= ts < hi]
    assert values, f"no readings in [{lo}, {hi})"
    return sum(values) / len(values)


class QuietFleet(FleetModel):
    """The emulator's model with the servers' own load steady: no load spikes (which last up to
    3 minutes and may start under the task) and no clipping at full load, so the power the task
    adds is what the readings show."""

    def sync(self, specs):
        added, removed = super().sync(specs)
        for sid in added:
            model = self.models[sid]
            model.base, model.daily_amplitude, model.spike_every_s = 0.2, 0.0, math.inf
        return added, removed


async def test_a_submitted_task_runs_on_an_emulated_server_and_is_measured(distributed_own_registry) -> None:
    # A registry of its own: the session's shared one holds tasks other tests left unfinished,
    # which this scheduler would plan onto the one live server, this test's.
    async with (
        running_backend(distributed_own_registry, (), scheduler_settings=SCHEDULER, agent_settings=AGENTS) as (
            backend,
            url,
        ),
        aiohttp.ClientSession() as http,
    ):
        admin = await user_session(backend, http, url, "admin")
        tag = f"e2e-{secrets.token_hex(4)}"
        server = await admin.add_server(energy_source="wind", idle_watts=80, max_watts=400, cores=16, tags=[tag])
        _, key = await backend.auth.create_ingest_key("emulator", "admin")
        async with TaskerClient(url, admin.token) as registry, TaskerClient(url, key) as posting:
            emulator = FleetEmulator(
                RegistryFollower(registry, poll_s=0.5),
                ReadingSender(posting),
                interval_s=0.5,
                seed=7,
                agents=EmulatedAgents(registry, poll_s=0.25, seed=7),
            )
            emulator.model = QuietFleet(7)
            emulating = asyncio.create_task(emulator.run(progress_every_s=None))
            try:
                start_at = int(time.time() * 1000) + 5_000
                _, task = await admin.call(
                    "POST",
                    "/api/v1/tasks",
                    expect=201,
                    json={"name": "e2e", "cores": 4, "duration": 8, "earliest_start": start_at, "tags": [tag]},
                )
                deadline = time.monotonic() + 60
                while True:
                    _, task = await admin.call("GET", f"/api/v1/tasks/{task['id']}", expect=200)
                    if task["state"] in ("done", "failed") and task["plan"]["measured_co2_g"] is not None:
                        break
                    assert time.monotonic() < deadline, f"the task did not run and get measured: {task}"
                    await asyncio.sleep(0.25)
            finally:
                emulating.cancel()
                await asyncio.gather(emulating, return_exceptions=True)

        assert task["state"] == "done" and task["plan"]["server_id"] == server["id"]
        start, end = ms(task["plan"]["start"]), ms(task["plan"]["end"])
        runs = [(ms(a), ms(b)) for a, b in task["run"]["runs"]]
        assert runs == [(start, end)], "the task did not run as planned"
        raw = await admin.all_raw(server["id"], "power", start - 4_000, end + 4_000)
        before, during, after = mean(raw, start - 3_000, start), mean(raw, start, end), mean(raw, end, end + 3_000)
        rise = 320 * 4 / 16  # (max - idle) x cores / server cores
        assert during - before > rise / 2 and during - after > rise / 2, (before, during, after)
        planned, measured = task["plan"]["co2_g"], task["plan"]["measured_co2_g"]
        print(
            f"\nplanned {planned:.6f} g, measured {measured:.6f} g ({100 * (measured / planned - 1):+.2f}%), "
            f"power before/during/after {before:.1f}/{during:.1f}/{after:.1f} W"
        )
        assert abs(measured - planned) <= 0.10 * planned
        _, saved = await admin.call("GET", "/api/v1/plan/savings", expect=200)
        assert saved["today"]["measured"] >= 1
