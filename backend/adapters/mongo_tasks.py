"""The task, lease and grid-trace part of the MongoDB Registry (mixed into MongoRegistry).

FerretDB v1 has no transactions and no atomic conditional update (see `mongo.py`); what is
atomic is an insert against a unique `_id`. So both rules that must hold under concurrency are
decided by inserts:

- a task is a series of immutable versions, `_id` = [task id, version]. update_task reads the
  newest version, checks it, and inserts version + 1: of two writers that read the same version
  one insert wins and the other gets a duplicate key, i.e. False. Readers take the newest
  version of each task. Superseded versions are deleted once the next one is older than
  TASK_VERSION_KEEP_MS, never the newest two; an insert that lands on a deleted number (a
  writer whose read is older than that) is detected and refused.
- a lease is a series of epochs, `_id` = [name, epoch]: taking over inserts epoch + 1, so of
  two processes that saw the lease expired one wins. Only the holder renews (moves the expiry
  of its own epoch's document), and checks afterwards that nobody took over meanwhile.

Writes that decide something use majority write concern.

One task is found by `_id` equality alone. FerretDB v1 (SQLite storage) scans the collection for
every query (`explain`: SCAN), but it hands an `_id` equality to SQLite, a few microseconds a
document, while any other filter or sort is applied in FerretDB itself, about 50 (with 2,000
finished tasks, 4,000 version documents: 20-30 ms against 200 ms a lookup). `task_ids` holds
every id ever stored, for uniqueness only (an insert is checked against the unique index without
a scan). `task_heads` holds one document per task not archived, with a hint: the highest
version written as far as it knows (`$max`, which FerretDB may lose under concurrency, so the
hint may lag but never leads); the newest version is found by walking up from it, `_id` by
`_id` (versions are consecutive: only the oldest are ever deleted). Without a head or a version
at the hint, the archive is looked in, then every version read.

`list_tasks` reads the whole collection all the same, so finished tasks must leave it:
`archive_tasks` (called hourly by the scheduler) moves those last written before a bound into
one collection per day of their last write, `task_archive_day_<days since the epoch>`, and
deletes their head. A list reads the archive only when it may include finished tasks, and then
only the days after its `updated_since_ms` (none when that is past the newest bound). So the
reads of rounds, agents and the plan view, and the lookups of tasks not archived, cost in
proportion to the tasks not archived; reading an archived task by id searches the archive. An
archived task is still read and updated like any other: an update puts its next version back
among the versions (its head noting the day of the archived copy), and the copy with the
higher version wins.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any

from pymongo import ASCENDING, DESCENDING
from pymongo.errors import DuplicateKeyError
from pymongo.write_concern import WriteConcern

from backend.adapters.registry_values import lookup_key, require_count
from backend.adapters.task_values import (
    check_since,
    check_states,
    check_update,
    lease_args,
    task_from_json,
    task_json,
    trace_rows,
)
from backend.ports import (
    FINISHED_TASK_STATES,
    TASK_VERSION_KEEP_MS,
    Conflict,
    LeaseRecord,
    NotFound,
    TaskRecord,
)
from backend.services.timestamps import now_ms

_MAJORITY = WriteConcern("majority")
_ARCHIVE_PREFIX = "task_archive_day_"
_DAY_MS = 86_400_000
ARCHIVE_BATCH = 500
"""Most tasks one `archive_tasks` call moves (a backlog goes over several calls, so that none
holds up the scheduler's round for long)."""


class MongoTasks:
    """Tasks, leases and grid traces; needs the host class's `_db` and `_driver_errors`."""

    _db: Any
    _driver_errors: Any

    def _collection(self, name: str) -> Any:
        return self._db.get_collection(name, write_concern=_MAJORITY)

    async def _create_task_indexes(self) -> None:
        db = self._db
        await db.task_versions.create_index([("task_id", ASCENDING), ("version", DESCENDING)], name="task_version")
        await db.task_versions.create_index([("owner", ASCENDING)], name="task_owner")
        await db.leases.create_index([("name", ASCENDING), ("epoch", DESCENDING)], name="lease_epoch")

    # --- tasks ------------------------------------------------------------------------------

    @staticmethod
    def _version_doc(task: TaskRecord) -> dict[str, Any]:
        return {
            "_id": json.dumps([task.id, task.version]),
            "task_id": task.id,
            "owner": task.owner,
            "version": task.version,
            "plan_epoch": task.plan_epoch,
            "written_at_ms": now_ms(),
            "doc": task_json(task),
        }

    async def _newest(self, task_id: str) -> dict[str, Any] | None:
        """The newest version document (an archived one has the same fields, `_id` = the task
        id), found from the head's hint by `_id` (see the module docstring)."""
        versions = self._db.task_versions
        for _ in range(2):  # again if the task was archived between reading its head and its version
            head = await self._db.task_heads.find_one({"_id": task_id})
            doc = None
            if head is not None and isinstance(head.get("version"), int):
                doc = await versions.find_one({"_id": json.dumps([task_id, head["version"]])})
            if doc is None:
                doc = await self._archived(task_id, head)
            if doc is None:  # the hint lags behind deleted versions (or a task stored before heads)
                doc = await versions.find_one({"task_id": task_id}, sort=[("version", DESCENDING)])
            if doc is not None:
                while (
                    after := await versions.find_one({"_id": json.dumps([task_id, doc["version"] + 1])})
                ) is not None:
                    doc = after
                return doc
            if head is None:  # nothing was there to be archived meanwhile: no such task
                return None
        return None

    async def _archived(self, task_id: str, head: dict[str, Any] | None) -> dict[str, Any] | None:
        """The task's archived document: in the day its head names (a task written again since),
        else in any day, the newest first (a read of the whole archive, for old tasks only)."""
        if head is not None and isinstance(head.get("archive_day"), int):
            days = [head["archive_day"]]
        else:
            days = sorted(await self._archive_days(None), reverse=True)
        for day in days:
            if (doc := await self._db[_bucket(day)].find_one({"_id": task_id})) is not None:
                return doc
        return None

    async def _drop_superseded(self, task_id: str, below: int) -> None:
        """Delete the versions under `below` written more than TASK_VERSION_KEEP_MS ago, from
        `below - 1` down (the deleted ones are the oldest, so the walk stops at the first gap)."""
        versions = self._collection("task_versions")
        cutoff = now_ms() - TASK_VERSION_KEEP_MS
        for version in range(below - 1, 0, -1):
            key = json.dumps([task_id, version])
            doc = await versions.find_one({"_id": key}, projection={"written_at_ms": 1})
            if doc is None:
                return
            if doc["written_at_ms"] < cutoff:
                await versions.delete_one({"_id": key})

    async def add_task(self, task: TaskRecord) -> None:
        """Store a new task; Conflict when its id is taken."""
        doc = self._version_doc(task)
        with self._driver_errors():
            try:
                # The id itself, once: version documents come and go, this one never does.
                await self._collection("task_ids").insert_one({"_id": task.id})
            except DuplicateKeyError:
                raise Conflict(f"task id {task.id!r} already exists") from None
            await self._collection("task_heads").insert_one({"_id": task.id, "version": task.version})
            await self._collection("task_versions").insert_one(doc)

    async def get_task(self, task_id: str) -> TaskRecord:
        """The newest version of the task; NotFound otherwise."""
        doc = None
        if lookup_key(task_id) is not None:
            with self._driver_errors():
                doc = await self._newest(task_id)
        if doc is None:
            raise NotFound(f"no task with id {task_id!r}")
        return task_from_json(doc["doc"])

    async def list_tasks(
        self, owner: str | None = None, states: Collection[str] | None = None, updated_since_ms: int | None = None
    ) -> list[TaskRecord]:
        """Tasks (of one owner, in some states, written since a time), oldest first. Of the
        archive, only the days the filters may match are read."""
        wanted = check_states(states)
        since = check_since(updated_since_ms)
        query: dict[str, Any] = {}
        if owner is not None:
            if lookup_key(owner) is None:
                return []
            query["owner"] = owner
        fields = {"task_id": 1, "version": 1, "doc": 1}
        with self._driver_errors():
            docs = await self._db.task_versions.find(query, projection=fields).to_list()
            if wanted is None or FINISHED_TASK_STATES.intersection(wanted):
                for day in await self._archive_days(since):
                    docs += await self._db[_bucket(day)].find(query, projection=fields).to_list()
        tasks = [task_from_json(d["doc"]) for d in _newest_of(docs).values()]
        if wanted is not None:
            tasks = [t for t in tasks if t.state in wanted]
        if since is not None:
            tasks = [t for t in tasks if t.updated_at_ms >= since]
        return sorted(tasks, key=lambda t: (t.created_at_ms, t.id))

    async def _archive_days(self, since: int | None) -> list[int]:
        """The archive's days that may hold a task written at or after `since` (all with None):
        none when `since` is past the newest bound, else those ending after it."""
        if since is not None:
            bounds = await self._db.task_archive_bounds.find({}, projection={"_id": 1}).to_list()
            if since >= max((int(b["_id"]) for b in bounds), default=0):
                return []
        names = await self._db.list_collection_names()
        days = [int(name[len(_ARCHIVE_PREFIX) :]) for name in names if name.startswith(_ARCHIVE_PREFIX)]
        days = [day for day in days if since is None or (day + 1) * _DAY_MS > since]
        return sorted(days)

    async def update_task(self, task: TaskRecord, expected_version: int) -> bool:
        """Compare-and-set on (version, plan epoch) by inserting the next version."""
        check_update(task, expected_version)
        doc = self._version_doc(task)
        versions = self._collection("task_versions")
        with self._driver_errors():
            current = await self._newest(task.id)
            if current is None:
                raise NotFound(f"no task with id {task.id!r}")
            if current["version"] != expected_version or current["plan_epoch"] > task.plan_epoch:
                return False
            try:
                await versions.insert_one(doc)
            except DuplicateKeyError:
                return False  # another writer's version + 1 got in first
            if not await self._holds(task.id, expected_version):
                # The version this update was built on has been superseded and deleted since:
                # the insert filled a gap below the newest version. Undo it and refuse.
                await versions.delete_one({"_id": doc["_id"]})
                return False
            head: dict[str, Any] = {"$max": {"version": task.version}}
            if "archive_day" in current:  # written again after archiving: note where that copy is
                head["$set"] = {"archive_day": current["archive_day"]}
            await self._collection("task_heads").update_one({"_id": task.id}, head, upsert=True)
            await self._drop_superseded(task.id, expected_version)
        return True

    async def _holds(self, task_id: str, version: int) -> bool:
        """Whether `version` of the task is stored: among the versions, or archived."""
        if await self._db.task_versions.find_one({"_id": json.dumps([task_id, version])}, projection={"_id": 1}):
            return True
        archived = await self._archived(task_id, await self._db.task_heads.find_one({"_id": task_id}))
        return archived is not None and archived["version"] == version

    async def archive_tasks(self, before_ms: int) -> int:
        """Move the finished tasks last written before `before_ms` (at most ARCHIVE_BATCH) from
        the versions to the archive: one collection per day of `updated_at_ms`, one document per
        task (`_id` = task id); how many. Copied first, then the versions and the head deleted,
        so a reader finds every task in one place or the other. A bound inserted first tells
        `list_tasks` that no archived task was written at or after it."""
        before = require_count("before_ms", before_ms)
        versions, heads = self._collection("task_versions"), self._collection("task_heads")
        with self._driver_errors():
            bounds = self._collection("task_archive_bounds")
            try:
                await bounds.insert_one({"_id": before})
            except DuplicateKeyError:
                pass
            await bounds.delete_many({"_id": {"$lt": before}})
            moved = 0
            for task_id, d in _newest_of(await versions.find({}).to_list()).items():
                task = task_from_json(d["doc"])
                if task.state not in FINISHED_TASK_STATES or task.updated_at_ms >= before:
                    continue
                if moved == ARCHIVE_BATCH:
                    break
                moved += 1
                day = task.updated_at_ms // _DAY_MS
                archive, archived = self._collection(_bucket(day)), {**d, "_id": task_id, "archive_day": day}
                try:  # an insert is checked against the unique _id; a replace reads the collection
                    await archive.insert_one(archived)
                except DuplicateKeyError:  # archived before, then written again the same day
                    await archive.replace_one({"_id": task_id}, archived)
                head = await heads.find_one({"_id": task_id})
                if head is not None and head.get("archive_day", day) != day:  # its copy of an older day
                    await self._collection(_bucket(head["archive_day"])).delete_one({"_id": task_id})
                for version in range(d["version"], 0, -1):  # newest first: a gap means the rest is gone
                    if not (await versions.delete_one({"_id": json.dumps([task_id, version])})).deleted_count:
                        break
                await heads.delete_one({"_id": task_id})
        return moved

    # --- leases -----------------------------------------------------------------------------

    async def _lease_doc(self, name: str) -> dict[str, Any] | None:
        return await self._db.leases.find_one({"name": name}, sort=[("epoch", DESCENDING)])

    async def acquire_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> int | None:
        """Take or renew a lease; the fencing epoch while held, None while another has it."""
        name, holder, now, ttl = lease_args(name, holder, now_ms, ttl_ms)
        leases = self._collection("leases")
        with self._driver_errors():
            current = await self._lease_doc(name)
            if current is not None and current["expires_at_ms"] > now:
                if current["holder"] != holder:
                    return None
                epoch = current["epoch"]
                await leases.update_one(
                    {"_id": current["_id"], "holder": holder}, {"$set": {"expires_at_ms": now + ttl}}
                )
                taken = await leases.find_one({"name": name, "epoch": {"$gt": epoch}}, projection={"_id": 1})
                return None if taken is not None else epoch
            epoch = 1 if current is None else current["epoch"] + 1
            try:
                await leases.insert_one(
                    {
                        "_id": json.dumps([name, epoch]),
                        "name": name,
                        "holder": holder,
                        "epoch": epoch,
                        "expires_at_ms": now + ttl,
                    }
                )
            except DuplicateKeyError:
                return None  # another process took over first
            await leases.delete_many({"name": name, "epoch": {"$lt": epoch - 1}})
        return epoch

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        """Expire the lease now if `holder` still has it at `epoch`."""
        name, holder, _, _ = lease_args(name, holder, 0, 1)
        at = require_count("epoch", epoch)
        with self._driver_errors():
            await self._collection("leases").update_one(
                {"_id": json.dumps([name, at]), "holder": holder}, {"$set": {"expires_at_ms": 0}}
            )

    async def get_lease(self, name: str) -> LeaseRecord | None:
        """The newest epoch of the lease, or None."""
        if lookup_key(name) is None:
            return None
        with self._driver_errors():
            doc = await self._lease_doc(name)
        if doc is None:
            return None
        return LeaseRecord(doc["name"], doc["holder"], doc["epoch"], doc["expires_at_ms"])

    # --- grid traces: one document per region, so a replacement is one atomic write ---------

    async def replace_grid_trace(self, region: str, rows: Sequence[tuple[int, float]]) -> None:
        """Replace a region's trace (one document; an empty trace deletes it)."""
        region, checked = trace_rows(region, rows)
        traces = self._collection("grid_traces")
        with self._driver_errors():
            if not checked:
                await traces.delete_one({"_id": region})
                return
            # Two parallel arrays: FerretDB v1 stores no nested arrays.
            await traces.replace_one(
                {"_id": region}, {"ts_ms": [ts for ts, _ in checked], "g_per_kwh": [g for _, g in checked]}, upsert=True
            )

    async def grid_trace(self) -> dict[str, list[tuple[int, float]]]:
        """region -> rows (ts_ms, g_per_kwh), sorted."""
        with self._driver_errors():
            docs = await self._db.grid_traces.find({}).to_list()
        return {
            d["_id"]: [(int(ts), float(g)) for ts, g in zip(d["ts_ms"], d["g_per_kwh"], strict=True)]
            for d in sorted(docs, key=lambda d: d["_id"])
        }


def _bucket(day: int) -> str:
    """The archive collection of a day (days since the epoch, UTC)."""
    return f"{_ARCHIVE_PREFIX}{day}"


def _newest_of(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Task id -> its document of the highest version (superseded versions linger for a while,
    and an archived task written again is in both places)."""
    newest: dict[str, dict[str, Any]] = {}
    for d in docs:
        if d["task_id"] not in newest or d["version"] > newest[d["task_id"]]["version"]:
            newest[d["task_id"]] = d
    return newest
