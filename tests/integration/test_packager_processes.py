"""Packagers as separate processes over RabbitMQ + Cassandra + FerretDB: a packager killed with
SIGKILL mid-stream and started again, or two packagers at once, lose and duplicate nothing, and
the rollups still agree with the raw readings."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest

from tests.integration.backend_rig import (
    Api,
    Expected,
    Mode,
    assert_exactly_once,
    assert_history_matches,
    listening_url,
    make_readings,
    running_backend,
    spawn_backend,
    user_session,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(240)

HOUR_MS = 3_600_000
BATCH = 250


async def scrape(http: aiohttp.ClientSession, url: str, metric: str) -> int:
    """The sum of a counter over its labels, from a backend process's /metrics."""
    async with http.get(f"{url}/metrics") as response:
        text = await response.text()
    return int(sum(float(v) for v in re.findall(rf"^{metric}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)))


async def stored_by(http: aiohttp.ClientSession, url: str) -> int:
    """Readings a packager process says it stored."""
    return await scrape(http, url, "tasker_readings_stored_total")


@asynccontextmanager
async def front_end(mode: Mode) -> AsyncIterator[tuple[aiohttp.ClientSession, Api, Expected, list[list[dict]], int]]:
    """An in-process backend without a packager, a logged-in session, four servers, and the
    stream to post: (http, api, expected, batches, start)."""
    start = hour_aligned(3)
    async with running_backend(mode, ["ingest", "api", "history"]) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(4)]
        readings = make_readings(servers, start, 2_000, 1_500, seed=11)  # 50 min per server
        expected = Expected()
        expected.add(readings)
        yield http, api, expected, [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)], start


async def check_everything(api: Api, expected: Expected, start: int) -> None:
    end = start + 2 * HOUR_MS
    found = await wait_until_stored(api, expected, start, end, timeout_s=120)
    assert_exactly_once(found, expected)
    for (server_id, metric), series in expected.series.items():
        for points in (2, 120):
            assert_history_matches(await api.history(server_id, metric, start, end, points), series)


def hour_aligned(hours_ago: int) -> int:
    now = int(time.time() * 1000)
    return now - now % HOUR_MS - hours_ago * HOUR_MS


async def test_a_packager_killed_mid_stream_loses_and_duplicates_nothing(distributed: Mode, tmp_path):
    async with front_end(distributed) as (http, api, expected, batches, start):
        assert expected.total == 8_000

        first = await spawn_backend(distributed, ["packager"], tmp_path / "packager-1.log")
        try:
            first_url = listening_url(first.log())
            posted = len(batches) // 3
            for batch in batches[:posted]:
                await api.post_retrying(batch)
            # A message counts as stored once its rollups are recomputed (a second or more after
            # its raw rows under load): wait for the first, so the kill falls mid-stream.
            deadline = time.monotonic() + 30
            while await stored_by(http, first_url) == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            # Keep posting while the packager dies, so it dies with messages in hand.
            poster = asyncio.gather(*(api.post_retrying(b) for b in batches[posted : posted + 6]))
            await asyncio.sleep(0.05)
            stored_at_kill = await stored_by(http, first_url)
            first.kill()
            await poster
            posted += 6
            assert await stored_by_safe(http, first_url) is None  # the process is gone
        finally:
            first.kill()
        for batch in batches[posted:]:
            await api.post_retrying(batch)

        second = await spawn_backend(distributed, ["packager"], tmp_path / "packager-2.log")
        try:
            await check_everything(api, expected, start)
            second_url = listening_url(second.log())
            redelivered = await scrape(http, second_url, "tasker_messages_redelivered_total")
            print(
                f"killed after storing {stored_at_kill}; the restarted packager got {redelivered} "
                f"messages again and stored {await stored_by(http, second_url)}"
            )
            assert 0 < stored_at_kill < expected.total
            # It died holding unacked messages; RabbitMQ gave them to the new packager.
            assert redelivered > 0
        finally:
            second.stop()


async def stored_by_safe(http: aiohttp.ClientSession, url: str) -> int | None:
    try:
        return await stored_by(http, url)
    except aiohttp.ClientError:
        return None


async def test_two_packagers_at_once_store_everything_exactly_once(distributed: Mode, tmp_path):
    async with front_end(distributed) as (http, api, expected, batches, start):
        packagers = [await spawn_backend(distributed, ["packager"], tmp_path / f"packager-{i}.log") for i in (1, 2)]
        try:
            for i in range(0, len(batches), 4):
                await asyncio.gather(*(api.post_retrying(b) for b in batches[i : i + 4]))
            await check_everything(api, expected, start)
            shares = [await stored_by(http, listening_url(p.log())) for p in packagers]
            assert sum(shares) >= expected.total
            assert all(share > 0 for share in shares), f"one packager did all the work: {shares}"
        finally:
            for p in packagers:
                p.stop()
