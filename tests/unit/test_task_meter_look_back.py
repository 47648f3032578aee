"""How far back the task meter looks: everything on its first look (tasks that ended while no
meter ran), then only the tasks written lately (SQLite registry, no readings: each task is
given up, i.e. marked measured without a figure, once `give_up_s` after its end has passed)."""

from __future__ import annotations

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.services.task_meter import TaskMeter
from backend.services.timestamps import now_ms
from tests.contract.test_registry_tasks_contract import task

H = 3_600_000


@pytest.fixture
async def registry(tmp_path):
    registry = SqliteRegistry(tmp_path / "registry.db")
    await registry.start()
    yield registry
    await registry.close()


async def ended(registry, task_id: str, hours_ago: float) -> None:
    at = now_ms() - int(hours_ago * H)
    await registry.add_task(task(task_id, state="done", finished_at_ms=at, updated_at_ms=at, runs=[]))


async def test_the_first_look_catches_up_then_only_recent_tasks_are_read(registry):
    meter = TaskMeter(registry, timeseries=None, broker=None, holds_lease=lambda: True, give_up_s=3600)
    await ended(registry, "while-down", hours_ago=48)
    assert [t.id for t in await meter.measure_pending()] == ["while-down"]
    assert (await registry.get_task("while-down")).measured_at_ms is not None
    await ended(registry, "lately", hours_ago=2)
    await ended(registry, "long-ago", hours_ago=48)  # appears after the first look: not read again
    assert [t.id for t in await meter.measure_pending()] == ["lately"]
    assert (await registry.get_task("long-ago")).measured_at_ms is None
