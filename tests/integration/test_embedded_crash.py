"""An embedded `tasker backend` killed with SIGKILL right after answering 202 loses nothing.

The embedded broker journals each work message before the publish is confirmed, so readings
that were accepted but not yet stored when the process died are stored after a restart on the
same data directory, each exactly once.
"""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest

from tests.integration.backend_rig import (
    Api,
    Expected,
    assert_exactly_once,
    listening_url,
    login,
    make_readings,
    spawn_backend,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(180)

SERVERS = 10
PER_SERVER = 10_000  # 100,000 readings: far more than the packager stores in the burst's time
BATCH = 5_000


def metric_value(text: str, name: str) -> float:
    """The sum of a Prometheus counter's samples in a /metrics text (0 when absent)."""
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


async def test_readings_accepted_before_a_sigkill_are_stored_exactly_once_after_a_restart(embedded, tmp_path):
    first = await spawn_backend(embedded, [], tmp_path / "first.log")
    try:
        password = re.search(r"One-time password, shown only now: (\S+)", first.log()).group(1)
        url = listening_url(first.log())
        async with aiohttp.ClientSession() as http:
            api = await login(http, url, "admin", password)
            # The printed password is a one-time one: everything else answers 403 until it changes.
            changed = {"current_password": password, "new_password": "crash test passphrase"}
            await api.call("POST", "/api/v1/me/password", json=changed, expect=200)
            password = changed["new_password"]
            server_ids = [(await api.add_server())["id"] for _ in range(SERVERS)]
            start_ms = (int(time.time()) - PER_SERVER - 600) * 1000
            readings = make_readings(server_ids, start_ms, PER_SERVER, 1000)
            batches = [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)]
            # One burst, all at once: ingest confirms far faster than the store takes them in.
            # (A 503 on a loaded machine is retried, as a sensor would; each batch ends in a 202.)
            await asyncio.gather(*(api.post_retrying(batch) for batch in batches))
            first.kill()  # the instant the last 202 arrived
    finally:
        first.kill()
    expected = Expected()
    expected.add(readings)

    second = await spawn_backend(embedded, [], tmp_path / "second.log")
    try:
        url = listening_url(second.log())
        async with aiohttp.ClientSession() as http:
            api = await login(http, url, "admin", password)
            found = await wait_until_stored(api, expected, start_ms, start_ms + PER_SERVER * 1000)
            assert_exactly_once(found, expected)
            _, metrics = await Api(url, http).call("GET", "/metrics", expect=200)
        # The test means something only if the kill left messages the store had not taken.
        assert metric_value(metrics, "tasker_messages_redelivered_total") > 0, (
            "the kill left nothing unstored; make the burst larger"
        )
        assert "queued again" in second.log()
    finally:
        assert second.stop() == 0


async def test_a_second_backend_on_the_same_data_dir_is_refused_in_one_line(embedded, tmp_path):
    import subprocess

    from tests.integration.backend_rig import TASKER

    first = await spawn_backend(embedded, [], tmp_path / "first.log")
    try:
        second = await asyncio.to_thread(
            subprocess.run, [TASKER, "backend"], env=embedded.env(), capture_output=True, text=True, timeout=60
        )
    finally:
        assert first.stop() == 0
    assert second.returncode == 2, second.stderr
    assert "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"tasker: TASKER_BROKER_URL='memory://': the embedded broker "
        f"journal {tmp_path / 'queue.db'} is in use by another tasker backend; stop it, or give this one its "
        "own data directory (TASKER_TIMESERIES_URL) or journal (TASKER_BROKER_URL=memory:///path/to/queue.db)"
    )
