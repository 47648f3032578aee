"""Raw readings written to a CSV file: where the file goes, its columns, and the writing.

The raw readings screen calls `write_readings_csv` from its worker with the client's reading
iterator; nothing here knows about widgets.
"""

from __future__ import annotations

import csv
from collections.abc import AsyncIterable, Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tasker.domain import METRICS
from tasker_tui import format as fmt

# Readings asked for per request, and how often the progress callback hears the count.
EXPORT_PAGE_SIZE = 1000

CSV_COLUMNS = ("server_id", "server_name", "metric", "unit", "ts_ms", "time_utc", "value")


def home_relative(path: Path | str) -> str:
    """`~/.local/share/…` for a path under the home directory: shorter, and what a shell accepts."""
    try:
        return "~/" + str(Path(path).relative_to(Path.home()))
    except ValueError:
        return str(path)


def export_path(directory: Path | str, server_name: str, metric: str, now: datetime | None = None) -> Path:
    """`<directory>/tasker-<server>-<metric>-<UTC stamp>.csv`, the server name made safe for a
    file name (anything but letters, digits, `-`, `_` and `.` becomes `_`)."""
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in server_name)
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return Path(directory) / f"tasker-{name}-{metric}-{stamp}.csv"


async def write_readings_csv(
    path: Path,
    readings: AsyncIterable[Mapping[str, Any]],
    *,
    server_id: str,
    server_name: str,
    metric: str,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write `readings` (`{"ts": ms, "value": v}` items of one server and metric) to `path` as
    CSV, with a header row of `CSV_COLUMNS`; make the directory if needed. Calls `progress` with
    the row count every `EXPORT_PAGE_SIZE` rows. Returns the number of readings written; an
    OSError (directory not writable, disk full) propagates."""
    about = METRICS[metric]
    rows = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_COLUMNS)
        async for item in readings:
            ts = int(item["ts"])
            writer.writerow([server_id, server_name, about.name, about.unit, ts, fmt.iso(ts), item["value"]])
            rows += 1
            if progress is not None and rows % EXPORT_PAGE_SIZE == 0:
                progress(rows)
    return rows
