"""`tasker sensors emulate` against a backend split into role processes over the real services:
the server list comes from the api process (`--url`), readings go to the ingest process
(`--ingest-url`), and pointing `--url` at the ingest process is one clear line, not a retry loop."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import aiohttp
import pytest

from tests.integration.backend_rig import (
    TASKER,
    Mode,
    listening_url,
    login,
    spawn_backend,
)

pytestmark = pytest.mark.timeout(180)
PASSWORD = "split roles, one fleet"


def tasker(mode: Mode, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([TASKER, *args], env=mode.env(), input=stdin, capture_output=True, text=True, timeout=timeout)


async def test_sensors_read_the_fleet_from_the_api_and_post_to_the_ingest_process(distributed, tmp_path):
    made = tasker(distributed, "users", "add", "ops", "--role", "sysadmin", "--password-stdin", stdin=PASSWORD + "\n")
    assert made.returncode == 0, made.stderr
    key = re.search(r"^(tik_\S+)$", tasker(distributed, "keys", "create", "--label", "rack").stdout, re.M).group(1)
    spawned = [
        await spawn_backend(distributed, roles, tmp_path / f"{'-'.join(roles)}.log")
        for roles in (["api", "history"], ["ingest"], ["packager"])
    ]
    api_url, ingest_url = listening_url(spawned[0].log()), listening_url(spawned[1].log())
    try:
        async with aiohttp.ClientSession() as http:
            api = await login(http, api_url, "ops", PASSWORD)
            server = await api.add_server("split-1")

            key_file = tmp_path / "ingest.key"
            key_file.write_text(key + "\n")
            wrong = tasker(
                distributed, "sensors", "emulate", "--url", ingest_url, "--key-file", str(key_file), "-q", timeout=30
            )
            assert wrong.returncode != 0
            assert wrong.stderr.strip().splitlines()[-1] == (
                f"tasker: {ingest_url} does not serve the server list (404): point --url at a backend process"
                " that runs the api role (readings may go to an ingest-only process with --ingest-url)"
            )

            started = int(time.time() * 1000)
            sensors = subprocess.Popen(
                [TASKER, "sensors", "emulate", "--url", api_url, "--ingest-url", ingest_url, "--interval", "0.5", "-q"],
                env={**distributed.env(), "TASKER_TOKEN": api.token, "TASKER_INGEST_KEY": key},
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                deadline = time.monotonic() + 60
                found: dict[str, list] = {"power": [], "co2": []}
                while time.monotonic() < deadline and not all(len(v) >= 4 for v in found.values()):
                    await asyncio.sleep(0.5)
                    for metric in found:
                        found[metric] = await api.all_raw(server["id"], metric, started, started + 600_000)
                assert all(len(v) >= 4 for v in found.values()), found
                assert all(80 <= value <= 400 for _, value in found["power"])
            finally:
                sensors.terminate()
                _, err = sensors.communicate(timeout=20)
            assert "Traceback" not in err, err
    finally:
        for process in spawned:
            process.stop()
