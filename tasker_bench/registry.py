"""`tasker bench registry`: what the task reads and writes of the hot paths cost as the tasks
stored pile up, before and after archiving the finished ones.

A fresh registry (a SQLite file in a temporary folder, or with `--mode distributed` a database
of its own on the MongoDB-compatible server, dropped at the end) gets `finished` tasks that ran
and ended more than a day ago (each stored, then written again as done, as the scheduler and
the agents would) and `open` tasks queued now. Timed, `repeats` times each (median): the list a
scheduler round reads (the open states), the task meter's look (done or failed, written in the
last 4 hours), the scheduler's hourly history read (every task written in the last 7 days: the
archived ones too; at most 3 times), one open task read by id, one written (compare-and-set). Then `archive_tasks` is
called until it moves nothing more (its calls timed) and the same operations again; last, an
hour's worth of tasks (a 24th of `finished`) ends and the next hourly call is timed.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from backend.ports import Registry, TaskRecord, Unavailable
from backend.services.scheduler import ARCHIVE_AFTER_MS
from tasker_bench.machine import code_version, machine_info
from tasker_bench.report import table
from tasker_bench.stack import MODES, REPO, BenchError, _with_path, say, service_url

H = 3_600_000
OPEN_STATES = ["queued", "planned", "unschedulable", "running"]


@dataclass(frozen=True, slots=True)
class RegistryParams:
    mode: str = "embedded"
    finished: int = 2000
    open: int = 50
    repeats: int = 9

    def check(self) -> None:
        if self.mode not in MODES:
            raise BenchError(f"--mode {self.mode!r}: expected embedded or distributed")
        if self.finished < 0 or self.open < 1 or self.repeats < 1:
            raise BenchError("--finished must be 0 or more, --open and --repeats 1 or more")


def bench_task(task_id: str, now: int, **changes: Any) -> TaskRecord:
    record = TaskRecord.submitted(
        id=task_id,
        name="bench",
        owner="bench",
        cores=4,
        duration_s=3600,
        earliest_start_ms=now,
        deadline_ms=now + 24 * H,
        interruptible=False,
        now_ms=now,
        command=["true"],
    )
    return replace(record, **changes)


async def fill(registry: Registry, params: RegistryParams, now: int) -> float:
    """Store the finished and the open tasks; the seconds it took."""
    started = time.perf_counter()
    await finish(registry, "done", params.finished, now - 2 * 24 * H)  # all ended over a day ago
    for i in range(params.open):
        await registry.add_task(bench_task(f"open-{i:04d}", now))
    return time.perf_counter() - started


async def finish(registry: Registry, prefix: str, count: int, first_end: int) -> None:
    """Store `count` tasks that ran two hours and ended a second apart from `first_end`."""
    for i in range(count):
        ended = first_end + i * 1000
        record = bench_task(
            f"{prefix}-{i:07d}", ended - 2 * H, created_at_ms=ended - 2 * H, updated_at_ms=ended - 2 * H
        )
        await registry.add_task(record)
        done = replace(record, state="done", server_id="srv", finished_at_ms=ended, updated_at_ms=ended, version=2)
        if not await registry.update_task(done, 1):
            raise BenchError(f"task {record.id}: its write as done was refused")
        if i and i % 500 == 0:
            say(f"{i:,} finished tasks stored")


async def timed(repeats: int, work: Callable[[int], Awaitable[Any]]) -> float:
    """Median milliseconds of `work(i)` over `repeats` calls."""
    times = []
    for i in range(repeats):
        started = time.perf_counter()
        await work(i)
        times.append(time.perf_counter() - started)
    return round(1000 * statistics.median(times), 2)


async def measure(registry: Registry, params: RegistryParams, now: int) -> dict[str, float]:
    async def write(i: int) -> None:
        current = await registry.get_task(f"open-{i % params.open:04d}")
        if not await registry.update_task(
            replace(current, reason=f"r{i}", version=current.version + 1), current.version
        ):
            raise BenchError(f"task {current.id}: a write with the current version was refused")

    return {
        "round_list_ms": await timed(params.repeats, lambda i: registry.list_tasks(states=OPEN_STATES)),
        "meter_look_ms": await timed(
            params.repeats, lambda i: registry.list_tasks(states=["done", "failed"], updated_since_ms=now - 4 * H)
        ),
        "history_read_ms": await timed(
            min(3, params.repeats), lambda i: registry.list_tasks(updated_since_ms=now - 7 * 24 * H)
        ),
        "get_ms": await timed(params.repeats, lambda i: registry.get_task(f"open-{i % params.open:04d}")),
        "read_and_write_ms": await timed(params.repeats, write),
    }


async def run_registry(params: RegistryParams) -> dict[str, Any]:
    params.check()
    workdir = Path(tempfile.mkdtemp(prefix="tasker-bench-registry-"))
    database = f"tasker_bench_registry_{uuid.uuid4().hex[:10]}"
    registry: Registry
    if params.mode == "embedded":
        from backend.adapters.sqlite_registry import SqliteRegistry

        registry = SqliteRegistry(workdir / "registry.db")
    else:
        from backend.adapters.mongo import MongoRegistry

        registry = MongoRegistry(_with_path(service_url("TASKER_REGISTRY_URL"), database))
    try:
        await registry.start()
    except Unavailable as exc:
        shutil.rmtree(workdir, ignore_errors=True)
        raise BenchError(f"registry: {exc}") from None
    try:
        now = int(time.time() * 1000)
        say(f"storing {params.finished:,} finished and {params.open} open tasks ({params.mode})")
        fill_s = await fill(registry, params, now)
        before = await measure(registry, params, now)
        calls, moved = [], 0
        while True:
            started = time.perf_counter()
            count = await registry.archive_tasks(now - ARCHIVE_AFTER_MS)
            calls.append(round(time.perf_counter() - started, 2))
            moved += count
            if not count:
                break
        after = await measure(registry, params, now)
        # the steady state: the hourly call after an hour of tasks (a 24th of them) finished
        hourly = max(1, params.finished // 24)
        await finish(registry, "hour", hourly, now - 7 * H)
        started = time.perf_counter()
        hourly_moved = await registry.archive_tasks(now - ARCHIVE_AFTER_MS)
        hourly_s = round(time.perf_counter() - started, 2)
        if len(await registry.list_tasks(states=["done"])) != params.finished + hourly:
            raise BenchError("archiving changed what list_tasks returns")
    finally:
        await registry.close()
        shutil.rmtree(workdir, ignore_errors=True)
        if params.mode == "distributed":
            await _drop(service_url("TASKER_REGISTRY_URL"), database)
    return {
        "benchmark": "registry",
        "parameters": {
            "mode": params.mode,
            "finished": params.finished,
            "open": params.open,
            "repeats": params.repeats,
        },
        "machine": machine_info(),
        "code": code_version(REPO),
        "fill_s": round(fill_s, 1),
        "archive_calls_s": calls,
        "archived": moved,
        "hourly_archive": {"finished": hourly, "archived": hourly_moved, "s": hourly_s},
        "before_archive": before,
        "after_archive": after,
    }


async def _drop(url: str, database: str) -> None:
    from pymongo import AsyncMongoClient

    client: AsyncMongoClient = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


def render(result: dict[str, Any]) -> str:
    p = result["parameters"]
    labels = {
        "round_list_ms": "round: list the open tasks",
        "meter_look_ms": "meter: done/failed of the last 4 h",
        "history_read_ms": "hourly history: all of the last 7 days",
        "get_ms": "one open task by id",
        "read_and_write_ms": "read + compare-and-set write",
    }
    rows = [[label, result["before_archive"][k], result["after_archive"][k]] for k, label in labels.items()]
    title = (
        f"tasker bench registry: {p['mode']} mode, {p['finished']:,} finished tasks + {p['open']} open, "
        f"median of {p['repeats']} (ms); stored in {result['fill_s']} s, "
        f"{result['archived']:,} archived in calls of {', '.join(f'{s} s' for s in result['archive_calls_s'])}"
    )
    hourly = result["hourly_archive"]
    footer = (
        f"then {hourly['finished']:,} more finished (an hour's worth): the hourly call archived "
        f"{hourly['archived']:,} in {hourly['s']} s"
    )
    return table(["operation", "before archiving", "after archiving"], rows, title) + "\n" + footer


def main(params: RegistryParams) -> dict[str, Any]:
    return asyncio.run(run_registry(params))
