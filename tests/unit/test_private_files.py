"""Data folders and files are private to their owner, whatever the umask (shared SSH hosts)."""

from __future__ import annotations

import os
import stat

import pytest

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.adapters.sqlite_timeseries import SqliteTimeSeries
from backend.adapters.work_journal import WorkJournal


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    before = os.umask(0o000)  # the worst case: everything created world-writable
    yield
    os.umask(before)


async def test_every_embedded_store_is_created_private(tmp_path, open_umask):
    data = tmp_path / "shared" / "tasker"
    registry = SqliteRegistry(data / "registry.db")
    series = SqliteTimeSeries(data / "timeseries.db")
    journal = WorkJournal(data / "queue.db")
    await registry.start()
    await series.start()
    await journal.open()
    try:
        await registry.list_servers()  # the WAL files exist once written or read
    finally:
        await registry.close()
        await series.close()
        await journal.close()
    assert mode(tmp_path) == mode(tmp_path)  # an existing folder keeps its mode
    assert mode(tmp_path / "shared") == 0o700 and mode(data) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert {p.name for p in files} >= {"registry.db", "timeseries.db", "queue.db"}
    assert {p.name: mode(p) for p in files} == {p.name: 0o600 for p in files}


async def test_an_existing_world_readable_database_is_made_private(tmp_path, open_umask):
    path = tmp_path / "registry.db"
    path.touch(mode=0o644)
    os.chmod(path, 0o644)
    registry = SqliteRegistry(path)
    await registry.start()
    await registry.close()
    assert mode(path) == 0o600
