"""Outages of the real RabbitMQ and Cassandra during a stream of readings.

These stop and start the shared services with `compose/local/services stop/start`, which
disturbs everyone using them: run this file on its own, when nobody else is testing. The service
is always started again (in a `finally`), and the test waits until it answers.

- RabbitMQ down: ingest answers 503 within a second, naming the broker; /readyz says so; when
  RabbitMQ is back, ingestion resumes by itself and every accepted reading is stored once.
- Cassandra down: ingest keeps accepting (the broker holds the readings), the packager stops
  acking and retries with backoff, /readyz names the store; when it is back, the packager
  catches up and every reading is stored once, with rollups that agree with the raw readings.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

import aiohttp
import pytest

from backend.services.wire import queue_for
from tests.integration.backend_rig import (
    REPO,
    Api,
    Expected,
    assert_exactly_once,
    assert_history_matches,
    make_readings,
    running_backend,
    user_session,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(600)

HOUR_MS = 3_600_000
SERVICES = str(REPO / "compose" / "local" / "services")


async def services(command: str, name: str) -> None:
    """`compose/local/services stop|start NAME`, off the event loop so the backend keeps running."""
    result = await asyncio.to_thread(
        subprocess.run, [SERVICES, command, name], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"services {command} {name} failed:\n{result.stdout}\n{result.stderr}"


def stream(servers: list[str]) -> tuple[Expected, list[list[dict]], int, int]:
    now = int(time.time() * 1000)
    start = now - now % HOUR_MS - 3 * HOUR_MS
    readings = make_readings(servers, start, 1_500, 2_000, seed=5)  # 50 min per server
    expected = Expected()
    expected.add(readings)
    return expected, [readings[i : i + 200] for i in range(0, len(readings), 200)], start, start + 2 * HOUR_MS


async def readyz(http: aiohttp.ClientSession, url: str) -> tuple[int, dict]:
    async with http.get(f"{url}/readyz") as response:
        return response.status, await response.json()


async def wait_ready(http: aiohttp.ClientSession, url: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while (await readyz(http, url))[0] != 200:
        assert time.monotonic() < deadline, "the backend never became ready again"
        await asyncio.sleep(0.5)


async def check_all_stored(api: Api, expected: Expected, start: int, end: int, timeout_s: float) -> None:
    found = await wait_until_stored(api, expected, start, end, timeout_s=timeout_s)
    assert_exactly_once(found, expected)
    for (server_id, metric), series in expected.series.items():
        for points in (2, 120):
            assert_history_matches(await api.history(server_id, metric, start, end, points), series)


async def test_rabbitmq_outage_gives_fast_503s_then_ingestion_resumes_by_itself(distributed):
    async with running_backend(distributed) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(3)]
        expected, batches, start, end = stream(servers)
        for batch in batches[:8]:
            await api.post_retrying(batch)

        sensor = None
        try:
            await services("stop", "rabbitmq")
            started = time.monotonic()
            status, body = await api.post(batches[8])
            elapsed = time.monotonic() - started
            assert status == 503, body
            assert body["error"].startswith("broker unavailable: ")
            assert elapsed < 1.0, f"503 took {elapsed:.2f} s"
            status, ready = await readyz(http, url)
            assert status == 503 and ready["checks"]["broker"].startswith("down:")
            assert "broker unavailable" in ready["error"]
            # A sensor keeps trying through the outage, as `tasker sensors` does.
            sensor = asyncio.create_task(
                asyncio.wait_for(asyncio.gather(*(api.post_retrying(b, deadline_s=300) for b in batches[8:])), 300)
            )
            await asyncio.sleep(2)
            assert not sensor.done()
        finally:
            await services("start", "rabbitmq")
        assert sensor is not None
        await sensor
        await wait_ready(http, url)
        await check_all_stored(api, expected, start, end, timeout_s=120)
        print(
            f"RabbitMQ outage: first 503 after {elapsed * 1000:.0f} ms; "
            f"{expected.total} readings stored exactly once after it came back"
        )


async def test_cassandra_outage_pauses_the_packager_which_catches_up_after(distributed):
    async with running_backend(distributed) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(3)]
        expected, batches, start, end = stream(servers)
        first = Expected()
        for batch in batches[:8]:
            await api.post_retrying(batch)
            first.add(batch)
        await wait_until_stored(api, first, start, end)

        try:
            await services("stop", "cassandra")
            # The broker holds what arrives meanwhile: ingest still answers 202.
            for batch in batches[8:]:
                status, body = await api.post(batch)
                assert status == 202, body
            status, ready = await readyz(http, url)
            assert status == 503 and ready["checks"]["timeseries"].startswith("down:")
            status, body = await api.call("GET", f"/api/v1/servers/{servers[0]}/history")
            assert status == 503 and body["error"]
            # Nothing is acked while the store is down: the messages wait in their queues.
            await asyncio.sleep(3)
            waiting = sum([await backend.broker.queue_depth(queue_for(m)) for m in ("power", "co2")])
            assert waiting > 0
            assert backend.telemetry.store_failures.value() > 0
        finally:
            await services("start", "cassandra")
        outage_end = time.monotonic()
        await wait_ready(http, url)
        await check_all_stored(api, expected, start, end, timeout_s=240)
        print(
            f"Cassandra outage: {waiting} messages held unacked; caught up "
            f"{time.monotonic() - outage_end:.1f} s after Cassandra answered again"
        )
