"""`tasker sensors host` end to end: a powercap tree whose counters run at a known power (and wrap
around every few seconds), read by the real command, posted to a real embedded backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tasker.client import TaskerClient
from tests.integration.test_sensors_emulate import TASKER, readings, stop_process, wait_for

PACKAGE_W, DRAM_W = 40.0, 5.0
WRAP_UJ = 100_000_000  # 100 J: the package counter wraps every 2.5 s


class RunningCounters:
    """Writes energy_uj files as a machine drawing PACKAGE_W + DRAM_W would, until stopped."""

    def __init__(self, root: Path):
        self.root = root
        for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core"), ("intel-rapl:0:2", "dram")):
            (root / zone).mkdir(parents=True)
            (root / zone / "name").write_text(name + "\n")
            (root / zone / "max_energy_range_uj").write_text(f"{WRAP_UJ}\n")
        self.stop = threading.Event()
        self.write(0.0)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def write(self, elapsed: float) -> None:
        for zone, watts in (("intel-rapl:0", PACKAGE_W), ("intel-rapl:0:0", 1000.0), ("intel-rapl:0:2", DRAM_W)):
            # Replace the file whole: sysfs reads are atomic, a plain rewrite here would not be.
            fresh = self.root / zone / "energy_uj.new"
            fresh.write_text(f"{int(watts * elapsed * 1e6) % WRAP_UJ}\n")
            os.replace(fresh, self.root / zone / "energy_uj")

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop.wait(0.01):
            self.write(time.monotonic() - start)


async def test_host_sensor_posts_measured_power_and_co2(backend, tmp_path):
    token = await backend.login()
    async with TaskerClient(backend.url, token) as api:
        server = await api.create_server(
            {
                "name": "this-host",
                "location": {"region": "eu-west"},
                "energy_source": "coal",
                "pue": 1.2,
                "idle_watts": 10,
                "max_watts": 200,
                "cores": 4,
                "tags": [],
            }
        )
    counters = RunningCounters(tmp_path / "powercap")
    counters.thread.start()
    started = int(time.time() * 1000)
    sensor = subprocess.Popen(
        [TASKER, "sensors", "host", "This-Host", "--interval", "0.5", "--powercap", str(counters.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**backend.env, "TASKER_TOKEN": token, "TASKER_INGEST_KEY": backend.ingest_key},
    )
    try:
        await asyncio.sleep(6)  # covers two wrap-arounds of the package counter
    finally:
        code, err = stop_process(sensor)
        counters.stop.set()
    assert code == 0, err
    assert f"measuring package-0, dram (intel-rapl:0:2) every 0.5 s for This-Host ({server['id']})" in err
    end = int(time.time() * 1000)
    async with TaskerClient(backend.url, token) as api:
        # Each metric has its own queue and packager: right after the sensor stops, one may hold a
        # batch the other has already written. Wait until both are in at the same instants.
        async def both_in():
            power = await readings(api, server["id"], "power", started, end)
            co2 = await readings(api, server["id"], "co2", started, end)
            return (power, co2) if power and set(power) == set(co2) else None

        power, co2 = await wait_for(both_in, timeout=15)
    assert len(power) >= 6, err
    # Package + DRAM only: counting the core zone (inside the package) would add 1000 W, a
    # wrap-around taken as a drop would give about -155 W, one counted twice about +245 W. The
    # fake counters are written by a thread of this busy process, so one may lag a read and catch
    # up at the next: single values wander, energy (the mean) does not.
    for ts, watts in power.items():
        assert 0 <= watts < 200, (ts, watts)
        assert co2[ts] == pytest.approx(watts / 1000 * 1.2 * 820.0, abs=1e-3)
    assert sum(power.values()) / len(power) == pytest.approx(PACKAGE_W + DRAM_W, rel=0.15), power


async def test_host_sensor_for_an_unknown_server_says_so_in_one_line(backend, tmp_path):
    counters = RunningCounters(tmp_path / "powercap")
    token = await backend.login()
    for server in ("srv_nosuch2345", "web-nowhere"):  # an id (the spec read refuses it), a name (not found)
        result = backend.tasker(
            "sensors",
            "host",
            server,
            "--powercap",
            str(counters.root),
            "--quiet",
            env={"TASKER_TOKEN": token, "TASKER_INGEST_KEY": backend.ingest_key},
            timeout=30,
        )
        assert result.returncode == 1
        last = result.stderr.strip().splitlines()[-1]
        assert last == (
            f"tasker: no server '{server}' is registered: add this machine with `tasker servers add`,"
            " then pass its id or name"
        )
        assert "Traceback" not in result.stderr
