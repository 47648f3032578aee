"""The scheduler reads the tasks of the last days from its registry and keeps the clean cores
that the tasks seen then will need when they come again (SQLite registry, one process)."""

from __future__ import annotations

import asyncio
import time

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.services import scheduler as scheduler_module
from backend.services.scheduler import ARCHIVE_AFTER_MS, LEASE_NAME, Scheduler, SchedulerSettings
from backend.services.timestamps import now_ms
from tests.contract.test_registry_contract import server
from tests.contract.test_registry_tasks_contract import task

H = 3_600_000
SLOT = 300_000
DAY = 24 * H


class Events:
    """The scheduler only announces plans on its broker here."""

    async def publish_event(self, channel: str, body: bytes) -> None:
        pass


@pytest.fixture
async def registry(tmp_path):
    reg = SqliteRegistry(tmp_path / "registry.db")
    await reg.start()
    yield reg
    await reg.close()


async def plan_round(registry) -> Scheduler:
    scheduler = Scheduler(registry, Events(), None, SchedulerSettings())  # type: ignore[arg-type]
    scheduler.epoch = await registry.acquire_lease(LEASE_NAME, scheduler.holder, now_ms(), 60_000)
    scheduler._valid_until = time.monotonic() + 60
    assert await scheduler.plan_once(full=True)
    return scheduler


async def fleet_and_flexible_task(registry) -> int:
    """A wind and a coal server of 8 cores, and a task of 8 cores for an hour in one run,
    submitted now, to end within 4 hours; the start of the first whole slot after now (where it may start)."""
    now = now_ms()
    for name, source, intensity in (("clean", "wind", 11.0), ("dirty", "coal", 820.0)):
        await registry.add_server(
            server(name, name, energy_source=source, carbon_intensity_g_per_kwh=intensity, cores=8, tags=[])
        )
    await registry.add_task(
        task(
            "flexible",
            owner="ops",
            cores=8,
            duration_s=3600,
            earliest_start_ms=now,
            deadline_ms=now + 4 * H,
            interruptible=False,
            regions=[],
            tags=[],
            created_at_ms=now,
        )
    )
    return -(-now // SLOT) * SLOT


async def test_without_history_a_task_runs_as_early_as_it_is_clean(registry):
    first = await fleet_and_flexible_task(registry)
    await plan_round(registry)
    planned = await registry.get_task("flexible")
    assert (planned.server_id, planned.pieces) == ("clean", [[first, first + H]])


async def test_a_task_with_room_leaves_the_clean_cores_a_daily_task_needs(registry):
    first = await fleet_and_flexible_task(registry)
    # Yesterday a task of 8 cores could start a slot later than this one may today, and ran
    # for an hour; today it has not come yet.
    await registry.add_task(
        task(
            "yesterday",
            owner="ops",
            cores=8,
            duration_s=3600,
            earliest_start_ms=first + SLOT - DAY,
            deadline_ms=first + SLOT + H - DAY,
            regions=[],
            tags=[],
            state="done",
            created_at_ms=first - DAY,
            updated_at_ms=first + SLOT + H - DAY,  # when it ended
        )
    )
    await plan_round(registry)
    planned = await registry.get_task("flexible")
    # On the clean server still, once the hour expected of yesterday's task is over.
    assert (planned.server_id, planned.pieces) == ("clean", [[first + SLOT + H, first + SLOT + 2 * H]])
    assert "clean cores before then are kept for the tasks expected to come" in planned.explanation


async def test_a_task_submitted_and_finished_between_two_history_reads_still_counts(registry):
    """The history is read once an hour; the tasks a round saw open since stay in it when they
    finish, as a first day's forecast repeats the last hours."""
    scheduler = Scheduler(registry, Events(), None, SchedulerSettings())  # type: ignore[arg-type]
    now = now_ms()
    await registry.add_task(task("old", earliest_start_ms=now - 3 * H, created_at_ms=now - 3 * H, updated_at_ms=now))
    assert [t.id for t in await scheduler._history_with([], now)] == ["old"]  # the hourly read
    seen = task("seen", earliest_start_ms=now, created_at_ms=now, updated_at_ms=now)
    await registry.add_task(seen)
    assert {t.id for t in await scheduler._history_with([seen], now + SLOT)} == {"old", "seen"}
    # "seen" finished before the next read: no longer open, still in the history
    assert {t.id for t in await scheduler._history_with([], now + 2 * SLOT)} == {"old", "seen"}


async def test_the_leader_archives_the_whole_backlog_beside_the_rounds(registry, monkeypatch):
    """Finished tasks last written ARCHIVE_AFTER_MS ago are archived call after call until none
    is left (a no-op on SQLite; on MongoDB it keeps the reads of every round short), by the lease
    holder only, and never inside a round, which would wait for it."""
    answers, asked = [500, 500, 7, 0], []

    async def archive(before_ms: int) -> int:
        asked.append(before_ms)
        return answers[len(asked) - 1]

    monkeypatch.setattr(registry, "archive_tasks", archive)
    monkeypatch.setattr(scheduler_module, "ARCHIVE_PAUSE_S", 0.0)
    await fleet_and_flexible_task(registry)
    before = now_ms()
    scheduler = await plan_round(registry)
    assert asked == []  # the round did not archive
    assert await scheduler.archive_once() == 1007
    assert len(asked) == 4 and all(before - ARCHIVE_AFTER_MS <= b <= now_ms() - ARCHIVE_AFTER_MS for b in asked)

    asked.clear()
    answers[:] = [500, 500, 0]
    scheduler._valid_until = 0.0  # the lease lapsed: another process may hold it now
    assert await scheduler.archive_once() == 0 and asked == []


async def test_a_process_that_takes_the_lease_later_archives_soon_after(registry, monkeypatch):
    asked = []

    async def archive(before_ms: int) -> int:
        asked.append(before_ms)
        return 0

    monkeypatch.setattr(registry, "archive_tasks", archive)
    monkeypatch.setattr(scheduler_module, "ARCHIVE_FIRST_S", 0.05)
    scheduler = Scheduler(registry, Events(), None, SchedulerSettings(archive_every_s=30.0))  # type: ignore[arg-type]
    loop = asyncio.create_task(scheduler._archive_loop())
    try:
        await asyncio.sleep(0.3)
        assert asked == []  # another process holds the lease
        scheduler.epoch = await registry.acquire_lease(LEASE_NAME, scheduler.holder, now_ms(), 60_000)
        scheduler._valid_until = time.monotonic() + 60
        await asyncio.sleep(0.3)
        assert len(asked) == 1  # within ARCHIVE_FIRST_S of taking it, then not for archive_every_s
    finally:
        loop.cancel()
