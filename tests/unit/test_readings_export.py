"""CSV export of raw readings: the file's name and place, its columns, progress, failures."""

from __future__ import annotations

import csv
from datetime import datetime, timezone

import pytest

from tasker_tui.readings_export import EXPORT_PAGE_SIZE, export_path, home_relative, write_readings_csv


async def readings(count: int, start_ms: int = 1_767_225_600_000):
    for i in range(count):
        yield {"ts": start_ms + i * 1000, "value": 100.0 + i}


def test_the_file_name_says_server_metric_and_utc_time_in_characters_a_shell_takes(tmp_path):
    when = datetime(2026, 12, 3, 12, 30, 5, tzinfo=timezone.utc)
    path = export_path(tmp_path, "rack 7/web;1", "power", now=when)
    assert path == tmp_path / "tasker-rack_7_web_1-power-20261203T123005Z.csv"


def test_paths_under_home_are_shown_with_a_tilde(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert home_relative(tmp_path / "downloads" / "a.csv") == "~/downloads/a.csv"
    assert home_relative("/elsewhere/a.csv") == "/elsewhere/a.csv"


async def test_every_reading_is_written_with_its_server_metric_unit_and_utc_time(tmp_path):
    path = tmp_path / "new" / "dir" / "out.csv"  # made on the way
    written = await write_readings_csv(path, readings(3), server_id="s-1", server_name="web-1", metric="power")
    assert written == 3
    rows = list(csv.DictReader(path.open()))
    assert [r["ts_ms"] for r in rows] == ["1767225600000", "1767225601000", "1767225602000"]
    assert rows[0] == {
        "server_id": "s-1",
        "server_name": "web-1",
        "metric": "power",
        "unit": "W",
        "ts_ms": "1767225600000",
        "time_utc": "2026-01-01T00:00:00.000Z",
        "value": "100.0",
    }


async def test_progress_is_told_every_page_of_rows(tmp_path):
    told: list[int] = []
    count = EXPORT_PAGE_SIZE * 2 + 5
    written = await write_readings_csv(
        tmp_path / "out.csv", readings(count), server_id="s", server_name="s", metric="co2", progress=told.append
    )
    assert written == count
    assert told == [EXPORT_PAGE_SIZE, EXPORT_PAGE_SIZE * 2]


async def test_a_place_that_cannot_be_a_directory_raises_os_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        await write_readings_csv(blocker / "out.csv", readings(1), server_id="s", server_name="s", metric="power")
