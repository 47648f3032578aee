"""The task, lease and grid-trace part of the embedded Registry (mixed into SqliteRegistry).

Every rule that must hold under concurrency (compare-and-set of a task's version and plan
epoch, one lease holder) is one write transaction, so two processes on one file take turns.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Sequence
from typing import Any, TypeVar

from backend.adapters.registry_values import lookup_key, require_count
from backend.adapters.sqlite_tx import write_transaction
from backend.adapters.task_values import (
    check_since,
    check_states,
    check_update,
    lease_args,
    task_from_json,
    task_json,
    trace_rows,
)
from backend.ports import Conflict, LeaseRecord, NotFound, TaskRecord

T = TypeVar("T")

TASK_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    version INTEGER NOT NULL,
    plan_epoch INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks (owner, created_at_ms);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks (state, created_at_ms);
CREATE INDEX IF NOT EXISTS tasks_updated ON tasks (updated_at_ms);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grid_traces (
    region TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    g_per_kwh REAL NOT NULL,
    PRIMARY KEY (region, ts_ms)
);
"""


def add_task_columns(conn: sqlite3.Connection) -> None:
    """Files made before tasks were listed by update time get the column, from each task's JSON
    (before the schema indexes it)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tasks)")}
    if columns and "updated_at_ms" not in columns:
        conn.execute("ALTER TABLE tasks ADD COLUMN updated_at_ms INTEGER NOT NULL DEFAULT 0")
        conn.execute("UPDATE tasks SET updated_at_ms = json_extract(doc, '$.updated_at_ms')")


class SqliteTasks:
    """Tasks, leases and grid traces; needs the host class's `_run`."""

    _run: Callable[..., Any]

    async def add_task(self, task: TaskRecord) -> None:
        """Store a new task; Conflict when its id is taken."""
        doc = task_json(task)

        def add(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO tasks (id, owner, state, created_at_ms, updated_at_ms, version, plan_epoch, doc) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.id,
                    task.owner,
                    task.state,
                    task.created_at_ms,
                    task.updated_at_ms,
                    task.version,
                    task.plan_epoch,
                    doc,
                ),
            )

        try:
            await self._run(add)
        except sqlite3.IntegrityError:
            raise Conflict(f"task id {task.id!r} already exists") from None

    async def get_task(self, task_id: str) -> TaskRecord:
        """The task; NotFound otherwise."""
        row = None
        if lookup_key(task_id) is not None:
            row = await self._run(lambda c: c.execute("SELECT doc FROM tasks WHERE id = ?", (task_id,)).fetchone())
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        return task_from_json(row[0])

    async def list_tasks(
        self, owner: str | None = None, states: Collection[str] | None = None, updated_since_ms: int | None = None
    ) -> list[TaskRecord]:
        """Tasks (of one owner, in some states, written since a time), oldest first."""
        wanted = check_states(states)
        since = check_since(updated_since_ms)
        where: list[str] = []
        args: list[object] = []
        if owner is not None:
            if lookup_key(owner) is None:
                return []
            where.append("owner = ?")
            args.append(owner)
        if wanted is not None:
            if not wanted:
                return []
            where.append(f"state IN ({', '.join('?' * len(wanted))})")
            args.extend(wanted)
        if since is not None:
            where.append("updated_at_ms >= ?")
            args.append(since)
        sql = "SELECT doc FROM tasks" + (f" WHERE {' AND '.join(where)}" if where else "")
        rows = await self._run(lambda c: c.execute(sql + " ORDER BY created_at_ms, id", args).fetchall())
        return [task_from_json(r[0]) for r in rows]

    async def update_task(self, task: TaskRecord, expected_version: int) -> bool:
        """Compare-and-set on (version, plan epoch); see the Registry port."""
        check_update(task, expected_version)
        doc = task_json(task)

        def update(c: sqlite3.Connection) -> bool:
            with write_transaction(c):
                row = c.execute("SELECT version, plan_epoch FROM tasks WHERE id = ?", (task.id,)).fetchone()
                if row is None:
                    raise NotFound(f"no task with id {task.id!r}")
                if row[0] != expected_version or row[1] > task.plan_epoch:
                    return False
                c.execute(
                    "UPDATE tasks SET state = ?, updated_at_ms = ?, version = ?, plan_epoch = ?, doc = ? WHERE id = ?",
                    (task.state, task.updated_at_ms, task.version, task.plan_epoch, doc, task.id),
                )
                return True

        return await self._run(update)

    async def archive_tasks(self, before_ms: int) -> int:
        """Nothing to do: the indexes on state and update time already keep reads of unfinished
        or recent tasks off the others."""
        require_count("before_ms", before_ms)
        return 0

    async def acquire_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> int | None:
        """Take or renew a lease; the fencing epoch while held, None while another has it."""
        name, holder, now, ttl = lease_args(name, holder, now_ms, ttl_ms)

        def acquire(c: sqlite3.Connection) -> int | None:
            with write_transaction(c):
                row = c.execute("SELECT holder, epoch, expires_at_ms FROM leases WHERE name = ?", (name,)).fetchone()
                if row is not None and row[2] > now:
                    if row[0] != holder:
                        return None
                    epoch = row[1]  # a renewal
                else:
                    epoch = 1 if row is None else row[1] + 1
                c.execute(
                    "INSERT INTO leases (name, holder, epoch, expires_at_ms) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
                    "epoch = excluded.epoch, expires_at_ms = excluded.expires_at_ms",
                    (name, holder, epoch, now + ttl),
                )
                return epoch

        return await self._run(acquire)

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        """Expire the lease now if `holder` still has it at `epoch`."""
        name, holder, _, _ = lease_args(name, holder, 0, 1)
        at = require_count("epoch", epoch)
        await self._run(
            lambda c: c.execute(
                "UPDATE leases SET expires_at_ms = 0 WHERE name = ? AND holder = ? AND epoch = ?", (name, holder, at)
            )
        )

    async def get_lease(self, name: str) -> LeaseRecord | None:
        """The lease as it stands, or None."""
        if lookup_key(name) is None:
            return None
        row = await self._run(
            lambda c: c.execute(
                "SELECT name, holder, epoch, expires_at_ms FROM leases WHERE name = ?", (name,)
            ).fetchone()
        )
        return None if row is None else LeaseRecord(*row)

    async def replace_grid_trace(self, region: str, rows: Sequence[tuple[int, float]]) -> None:
        """Replace a region's trace in one transaction."""
        region, checked = trace_rows(region, rows)

        def replace(c: sqlite3.Connection) -> None:
            with write_transaction(c):
                c.execute("DELETE FROM grid_traces WHERE region = ?", (region,))
                c.executemany(
                    "INSERT INTO grid_traces (region, ts_ms, g_per_kwh) VALUES (?, ?, ?)",
                    [(region, ts, g) for ts, g in checked],
                )

        await self._run(replace)

    async def grid_trace(self) -> dict[str, list[tuple[int, float]]]:
        """region -> rows (ts_ms, g_per_kwh), sorted."""
        rows = await self._run(
            lambda c: c.execute("SELECT region, ts_ms, g_per_kwh FROM grid_traces ORDER BY region, ts_ms").fetchall()
        )
        out: dict[str, list[tuple[int, float]]] = {}
        for region, ts, g in rows:
            out.setdefault(region, []).append((ts, g))
        return out
