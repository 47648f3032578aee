"""RAPL reading on a directory tree laid out like /sys/class/powercap, and `tasker sensors host`'s
one-line refusals where RAPL is absent or unreadable."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sensors.rapl import RaplMeter, RaplUnavailable, discover, energy_delta_uj
from tasker.cli import app

MAX_RANGE = 262_143_328_850  # what a common Intel package reports


def zone(root: Path, name: str, label: str, energy: int, max_range: int = MAX_RANGE) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "name").write_text(label + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    (path / "enabled").write_text("1\n")
    return path


@pytest.fixture
def powercap(tmp_path: Path) -> Path:
    """Two sockets with core/uncore/dram subzones, a psys zone and an MMIO duplicate."""
    root = tmp_path / "powercap"
    zone(root, "intel-rapl:0", "package-0", 1_000_000)
    zone(root, "intel-rapl:0:0", "core", 500_000)
    zone(root, "intel-rapl:0:1", "uncore", 10_000)
    zone(root, "intel-rapl:0:2", "dram", 2_000_000, max_range=65_712_999_613)
    zone(root, "intel-rapl:1", "package-1", 3_000_000)
    zone(root, "intel-rapl:2", "psys", 9_000_000)
    zone(root, "intel-rapl-mmio:0", "package-0", 1_000_000)
    (root / "intel-rapl").mkdir()  # the control type directory, no counters
    return root


def set_energy(root: Path, zone_name: str, value: int) -> None:
    (root / zone_name / "energy_uj").write_text(f"{value}\n")


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_discovery_takes_packages_and_dram_only(powercap):
    domains = discover(powercap)
    assert [(d.zone, d.name) for d in domains] == [
        ("intel-rapl:0", "package-0"),
        ("intel-rapl:0:2", "dram"),
        ("intel-rapl:1", "package-1"),
    ]
    assert domains[1].max_range_uj == 65_712_999_613


def test_watts_are_energy_over_time_summed_over_domains(powercap):
    clock = FakeClock()
    meter = RaplMeter(discover(powercap), clock=clock)
    assert meter.sample() is None  # the first reading only primes the meter
    clock.now += 2.0
    set_energy(powercap, "intel-rapl:0", 1_000_000 + 60_000_000)  # 60 J in 2 s: 30 W
    set_energy(powercap, "intel-rapl:0:2", 2_000_000 + 8_000_000)  # 8 J: 4 W
    set_energy(powercap, "intel-rapl:1", 3_000_000 + 50_000_000)  # 50 J: 25 W
    set_energy(powercap, "intel-rapl:0:0", 999_999_999)  # core: inside the package, ignored
    sample = meter.sample()
    assert sample is not None
    assert sample.watts == pytest.approx(59.0)
    assert sample.by_domain["package-0"] == pytest.approx(30.0)
    assert sample.by_domain["dram (intel-rapl:0:2)"] == pytest.approx(4.0)
    assert sample.seconds == pytest.approx(2.0)


def test_a_counter_wrapping_around_is_counted_once(powercap):
    clock = FakeClock()
    set_energy(powercap, "intel-rapl:0", MAX_RANGE - 10_000_000)  # 10 J before the wrap
    meter = RaplMeter(discover(powercap), clock=clock)
    meter.sample()
    clock.now += 1.0
    set_energy(powercap, "intel-rapl:0", 35_000_000)  # ...and 35 J after it: 45 J in 1 s
    sample = meter.sample()
    assert sample.by_domain["package-0"] == pytest.approx(45.0)
    assert sample.watts == pytest.approx(45.0)  # dram and package-1 did not move


def test_energy_delta():
    assert energy_delta_uj(100, 250, 1000) == 150
    assert energy_delta_uj(900, 50, 1000) == 150
    assert energy_delta_uj(5, 5, 1000) == 0


def test_no_powercap_directory(tmp_path):
    with pytest.raises(RaplUnavailable, match="does not exist.*modprobe intel_rapl_common"):
        discover(tmp_path / "missing")


def test_powercap_without_rapl_domains(tmp_path):
    zone(tmp_path, "intel-rapl:0", "psys", 1)
    with pytest.raises(RaplUnavailable, match="no RAPL package or DRAM domain .*intel-rapl:0"):
        discover(tmp_path)


@pytest.fixture
def unreadable_counters(monkeypatch):
    """energy_uj refuses to be read, as for a non-root user since Linux 5.10.

    Tests run as root here, where chmod cannot take read access away; refuse it at the source.
    """
    real_read_text = Path.read_text

    def read_text(self: Path, *args, **kwargs):
        if self.name == "energy_uj":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", read_text)


def test_unreadable_counters_say_how_to_fix_permissions(powercap, unreadable_counters):
    with pytest.raises(RaplUnavailable, match="not readable by this user.*run as root"):
        discover(powercap)


def test_garbage_in_a_counter_is_named(powercap):
    set_energy(powercap, "intel-rapl:1", "n/a")  # type: ignore[arg-type]
    with pytest.raises(RaplUnavailable, match="intel-rapl:1/energy_uj holds 'n/a'"):
        discover(powercap)


# --- the command ---------------------------------------------------------------------------


def run_host(*args: str):
    return CliRunner().invoke(app, ["sensors", "host", "srv_x", *args], env={"TASKER_INGEST_KEY": "tik_a_b"})


def test_host_without_rapl_exits_non_zero_with_one_line(tmp_path):
    result = run_host("--powercap", str(tmp_path / "nothing"))
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("tasker: no RAPL here:")
    assert "Traceback" not in result.output


def test_host_with_unreadable_rapl_exits_non_zero_with_one_line(powercap, unreadable_counters):
    result = run_host("--powercap", str(powercap))
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert "not readable by this user" in result.output
