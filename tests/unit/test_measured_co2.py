"""Measured CO2 per task from power samples: the share rule, other tasks, gaps, intensity."""

from __future__ import annotations

import pytest

from backend.allocation.intensity import BuiltinIntensity
from backend.allocation.model import ServerSpec
from backend.services.measured_co2 import PowerSample, measure

SERVER = ServerSpec(
    id="s",
    name="s",
    region="eu-west",
    energy_source="wind",
    intensity_g_per_kwh=10.0,
    pue=1.5,
    idle_watts=100.0,
    max_watts=500.0,
    cores=16,
)
HOUR = 3_600_000


def flat(watts: float, start: int = 0, end: int = HOUR, step: int = 60_000) -> list[PowerSample]:
    return [PowerSample(t, t + step, watts) for t in range(start, end, step)]


def test_alone_on_a_server_it_keeps_busy_the_task_gets_all_the_power_above_idle() -> None:
    got = measure(4, [[0, HOUR]], [], flat(200.0), SERVER, BuiltinIntensity())
    assert got.energy_kwh == pytest.approx(0.1) and got.co2_g == pytest.approx(0.1 * 1.5 * 10)


def test_load_that_is_not_tasker_s_is_not_charged_to_the_task() -> None:
    # 4 cores of tasks, but the power shows 8 busy (200 W of 400 above idle): half is someone else's.
    got = measure(4, [[0, HOUR]], [], flat(300.0), SERVER, BuiltinIntensity())
    assert got.energy_kwh == pytest.approx(0.1)


def test_tasks_running_together_share_by_cores() -> None:
    other = (12, [[0, HOUR // 2]])
    got = measure(4, [[0, HOUR]], [other], flat(500.0), SERVER, BuiltinIntensity())
    # First half: 4 of 16 busy cores of 400 W; second half alone: 4 of 16 busy cores again.
    assert got.energy_kwh == pytest.approx(0.1)


def test_gaps_in_the_readings_count_as_the_covered_mean_and_no_reading_is_none() -> None:
    half = flat(200.0, 0, HOUR // 2)
    got = measure(4, [[0, HOUR]], [], half, SERVER, BuiltinIntensity())
    assert got.energy_kwh == pytest.approx(0.1) and got.coverage == pytest.approx(0.5)
    assert measure(4, [[0, HOUR]], [], [], SERVER, BuiltinIntensity()) is None


def test_only_the_runs_count_not_the_pauses() -> None:
    got = measure(4, [[0, HOUR // 4], [HOUR // 2, 3 * HOUR // 4]], [], flat(200.0), SERVER, BuiltinIntensity())
    assert got.energy_kwh == pytest.approx(0.05)
