"""`tasker sensors emulate` against a real embedded backend (`tasker backend` as a subprocess).

Issue 4's "must hold": every registered server gets both metrics at the interval; values stay
within each server's spec and obey the CO2 formula; servers added or removed are followed
within an interval; readings made while the backend restarts arrive once it is back.

`EmbeddedBackend` (a backend process over SQLite files in tmp_path, with a sysadmin and an
ingest key) is shared with the other sensor and shell integration tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sensors.model import ServerSpec
from tasker.client import TaskerClient

TASKER = str(Path(sys.executable).with_name("tasker"))
PASSWORD = "correct-horse-battery"


class EmbeddedBackend:
    """`tasker backend` in embedded mode with its data, config and accounts under `root`."""

    def __init__(self, root: Path):
        self.root = root
        self.url = ""
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.ingest_key = ""
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASKER_")}
        self.env.update(
            {
                "TASKER_REGISTRY_URL": f"sqlite:///{root / 'registry.db'}",
                "TASKER_TIMESERIES_URL": f"sqlite:///{root / 'timeseries.db'}",
                "TASKER_BROKER_URL": "memory://",
                "XDG_CONFIG_HOME": str(root / "config"),
                "XDG_DATA_HOME": str(root / "data"),
                "PYTHONUNBUFFERED": "1",
            }
        )

    def tasker(
        self, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a `tasker` command with this backend's environment; returns the finished process."""
        return subprocess.run(
            [TASKER, *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**self.env, **(env or {})},
        )

    def create_accounts(self) -> None:
        """A sysadmin `ops` and an ingest key, made the way an operator would."""
        made = self.tasker("users", "add", "ops", "--role", "sysadmin", "--password-stdin", stdin=PASSWORD + "\n")
        assert made.returncode == 0, made.stderr
        key = self.tasker("keys", "create", "--label", "integration")
        assert key.returncode == 0, key.stderr
        self.ingest_key = key.stdout.strip().splitlines()[-1]
        assert self.ingest_key.startswith("tik_")

    def start(self) -> None:
        """Start the backend (on a free port the first time, the same port after) and wait for it."""
        listen = f"127.0.0.1:{self.port}"
        log = open(self.root / "backend.log", "a")
        self.process = subprocess.Popen(
            [TASKER, "backend", "--listen", listen], stdout=subprocess.PIPE, stderr=log, text=True, env=self.env
        )
        log.close()
        found = threading.Event()

        def read_stdout() -> None:
            assert self.process is not None and self.process.stdout is not None
            for line in self.process.stdout:
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    self.url = match.group(1).rstrip("/")
                    self.port = int(self.url.rsplit(":", 1)[1])
                    found.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        if not found.wait(30):
            self.stop()
            raise AssertionError("backend did not start:\n" + (self.root / "backend.log").read_text()[-3000:])
        self.env["TASKER_URL"] = self.url

    def stop(self) -> None:
        """SIGTERM and wait: a clean shutdown, as an operator restarting it would do."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    async def login(self) -> str:
        async with TaskerClient(self.url) as api:
            return (await api.login("ops", PASSWORD))["token"]


def start_emulator(backend: EmbeddedBackend, token: str, *args: str) -> subprocess.Popen[str]:
    env = {**backend.env, "TASKER_TOKEN": token, "TASKER_INGEST_KEY": backend.ingest_key}
    return subprocess.Popen(
        [TASKER, "sensors", "emulate", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def stop_process(process: subprocess.Popen[str]) -> tuple[int, str]:
    """SIGTERM; returns (exit code, stderr)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        _, err = process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err


@pytest.fixture
async def backend(tmp_path) -> AsyncIterator[EmbeddedBackend]:
    embedded = EmbeddedBackend(tmp_path)
    embedded.create_accounts()
    embedded.start()
    yield embedded
    embedded.stop()


FLEET = [
    {
        "name": "grid-eu",
        "location": {"region": "eu-central", "site": "Frankfurt"},
        "energy_source": "grid-mix",
        "pue": 1.4,
        "idle_watts": 90,
        "max_watts": 420,
        "cores": 32,
        "tags": ["it"],
    },
    {
        "name": "coal-us",
        "location": {"region": "us-central"},
        "energy_source": "coal",
        "pue": 1.6,
        "idle_watts": 40,
        "max_watts": 120,
        "cores": 8,
        "tags": [],
    },
    {
        "name": "wind-nordic",
        "location": {"region": "eu-north"},
        "energy_source": "wind",
        "carbon_intensity_g_per_kwh": 15.0,
        "pue": 1.1,
        "idle_watts": 150,
        "max_watts": 800,
        "cores": 96,
        "tags": [],
    },
]

INTERVAL_MS = 500


async def readings(api: TaskerClient, server_id: str, metric: str, start: int, end: int) -> dict[int, float]:
    """{ts: value} of a server's metric in [start, end]."""
    return {r["ts"]: r["value"] async for r in api.iter_readings(server_id, metric, start=start, end=end, limit=5000)}


async def wait_for(check, timeout: float, step: float = 0.25):
    """Poll the async `check()` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s")
        await asyncio.sleep(step)


def assert_sound(server: dict, power: dict[int, float], co2: dict[int, float]) -> None:
    """Both metrics at the same instants, power within spec, CO2 by the formula."""
    spec = ServerSpec.from_json(server)
    assert power and set(power) == set(co2), f"{server['name']}: power and co2 not at the same instants"
    for ts, watts in power.items():
        assert spec.idle_watts <= watts <= spec.max_watts, f"{server['name']}: {watts} W outside spec"
        # The sensor rounds power to 1 mW and CO2 to 0.1 mg/h; allow exactly that much.
        assert co2[ts] == pytest.approx(spec.co2_for(watts, ts), abs=1e-3), f"{server['name']} at {ts}"


def every_tick(stamps: set[int], start: int, end: int) -> list[int]:
    """The interval ticks in [start, end] that are missing from `stamps`."""
    first = -(-start // INTERVAL_MS) * INTERVAL_MS
    return [t for t in range(first, end + 1, INTERVAL_MS) if t not in stamps]


async def test_every_server_gets_both_metrics_at_the_interval_within_spec_and_follows_the_registry(backend):
    token = await backend.login()
    async with TaskerClient(backend.url, token) as api:
        fleet = [await api.create_server(body) for body in FLEET]
        emulator = start_emulator(backend, token, "--interval", "0.5", "--seed", "7", "--quiet")
        try:
            started = int(time.time() * 1000)

            async def all_reporting() -> bool:
                got = [await readings(api, s["id"], "co2", started, started + 60_000) for s in fleet]
                return all(got)

            await wait_for(all_reporting, 15)
            await asyncio.sleep(3)

            # A server registered while it runs is picked up within an interval or so.
            added = await api.create_server({**FLEET[1], "name": "late-joiner", "idle_watts": 10, "max_watts": 30})
            added_at = int(time.time() * 1000)
            first = await wait_for(lambda: readings(api, added["id"], "power", added_at - 5000, added_at + 60_000), 10)
            assert min(first) <= added_at + 2 * INTERVAL_MS + 250

            # A removed one stops getting readings.
            removed = fleet.pop(0)
            await api.delete_server(removed["id"])
            removed_at = int(time.time() * 1000)
            await asyncio.sleep(2.5)
            window_end = int(time.time() * 1000) - 1500  # leave time for the last batches to be stored
        finally:
            code, err = stop_process(emulator)
        assert code == 0, err
        assert "Traceback" not in err

        # The steady window: every tick, both metrics, every server still registered.
        window_start = started + 2000
        for server in [*fleet, added]:
            power = await readings(api, server["id"], "power", window_start, window_end)
            co2 = await readings(api, server["id"], "co2", window_start, window_end)
            assert_sound(server, power, co2)
            since = window_start if server is not added else min(power)
            assert every_tick(set(power), since, window_end) == [], f"{server['name']} missed ticks"
        late = await readings(api, removed["id"], "power", removed_at + 2 * INTERVAL_MS + 250, window_end + 5000)
        assert late == {}, "the removed server kept getting readings"
        before = await readings(api, removed["id"], "power", window_start, removed_at - 1000)
        assert_sound(removed, before, await readings(api, removed["id"], "co2", window_start, removed_at - 1000))
        # A batch cut just as the server was removed may be refused for it (at most a tick's worth).
        match = re.search(r"rejected (\d+)", err)
        assert match is None or int(match.group(1)) <= 4, err


async def test_readings_made_while_the_backend_restarts_arrive_after_it_returns(backend):
    token = await backend.login()
    async with TaskerClient(backend.url, token) as api:
        fleet = [await api.create_server(body) for body in FLEET[:2]]
    emulator = start_emulator(backend, token, "--interval", "0.5", "--seed", "1")
    try:
        async with TaskerClient(backend.url, token) as api:
            started = int(time.time() * 1000)
            await wait_for(lambda: readings(api, fleet[1]["id"], "co2", started, started + 60_000), 15)
            await asyncio.sleep(1.5)  # so the window below starts after the emulator's first tick
        down_at = int(time.time() * 1000)
        backend.stop()
        await asyncio.sleep(3)
        backend.start()  # same port, same files
        up_at = int(time.time() * 1000)
        token = await backend.login()  # sessions survive restarts; a fresh one keeps the test simple
        async with TaskerClient(backend.url, token) as api:

            async def outage_filled() -> bool:
                for server in fleet:
                    for metric in ("power", "co2"):
                        got = await readings(api, server["id"], metric, down_at - 1000, up_at + 1000)
                        if every_tick(set(got), down_at - 1000, up_at + 1000):
                            return False
                return True

            await wait_for(outage_filled, 30, step=0.5)
            for server in fleet:
                power = await readings(api, server["id"], "power", down_at - 1000, up_at + 1000)
                co2 = await readings(api, server["id"], "co2", down_at - 1000, up_at + 1000)
                assert_sound(server, power, co2)
    finally:
        code, err = stop_process(emulator)
    assert code == 0, err
    # Its last progress line tells of the outage, and that nothing had to be dropped.
    final = err.strip().splitlines()[-1]
    assert "buffered 0  dropped 0" in final and "connection refused" in final, err


async def test_the_key_comes_from_a_file_and_never_shows_in_ps(backend, tmp_path):
    # No session and no TASKER_INGEST_KEY: readings arrive only if the key file was read.
    token = await backend.login()
    key_file = tmp_path / "ingest.key"
    key_file.write_text(backend.ingest_key + "\n")
    env = {k: v for k, v in backend.env.items() if k not in ("TASKER_TOKEN", "TASKER_INGEST_KEY")}
    async with TaskerClient(backend.url, token) as api:
        server = await api.create_server({**FLEET[0], "name": "key-file"})
        started = int(time.time() * 1000)
        emulator = subprocess.Popen(
            [TASKER, "sensors", "emulate", "--key-file", str(key_file), "--interval", "0.5", "--quiet", "--no-agents"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            command_line = Path(f"/proc/{emulator.pid}/cmdline").read_bytes().decode()
            assert backend.ingest_key not in command_line
            await wait_for(lambda: readings(api, server["id"], "power", started, started + 60_000), 15)
        finally:
            code, err = stop_process(emulator)
        assert code == 0, err

    missing = subprocess.run(
        [TASKER, "sensors", "emulate", "--key-file", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1].endswith("No such file or directory")
