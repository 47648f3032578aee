"""The Registry contract for tasks, the scheduler lease and grid traces: the same assertions
over SQLite and the real MongoDB-compatible server (FerretDB; these fail when it is down).

The fixtures are those of `test_registry_contract.py`: each `make_registry()` is another
instance on the same store, as two backend processes would be.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from backend.ports import Conflict, NotFound, Registry, TaskRecord
from tests.contract.test_registry_contract import MakeRegistry

T0 = 1_760_000_000_000


def task(id_: str = "tsk-1", owner: str = "alice", **changes) -> TaskRecord:
    record = TaskRecord(
        id=id_,
        name="render",
        owner=owner,
        cores=4,
        duration_s=7200,
        earliest_start_ms=T0,
        deadline_ms=T0 + 86_400_000,
        interruptible=True,
        regions=["eu-north"],
        tags=["gpu"],
        command=["render", "--frames", "1-100"],
        state="queued",
        reason="",
        server_id=None,
        pieces=[],
        co2_g=None,
        energy_kwh=None,
        run_now_co2_g=None,
        run_now_server_id=None,
        explanation="",
        plan_epoch=0,
        created_at_ms=T0,
        updated_at_ms=T0,
        version=1,
    )
    return replace(record, **changes)


def planned(record: TaskRecord, epoch: int, server: str = "srv-a") -> TaskRecord:
    return replace(
        record,
        state="planned",
        server_id=server,
        pieces=[[T0, T0 + 3_600_000]],
        co2_g=12.5,
        energy_kwh=0.3,
        run_now_co2_g=40.0,
        run_now_server_id="srv-b",
        explanation="waits for wind",
        plan_epoch=epoch,
        version=record.version + 1,
    )


# --- tasks ----------------------------------------------------------------------------------------


async def test_task_round_trips_every_field(registry: Registry) -> None:
    await registry.add_task(task())
    assert await registry.get_task("tsk-1") == task()
    done = planned(task(), epoch=3)
    done = replace(
        done,
        started_at_ms=T0 + 5,
        finished_at_ms=T0 + 9,
        command=None,
        cwd="/srv/render",
        env={"FRAMES": "1-100", "EMPTY": ""},
        runs=[[T0 + 5, T0 + 9]],
        run_since_ms=None,
        exit_code=0,
        output_tail="done\n",
        agent_epoch=4,
        measured_co2_g=11.5,
        measured_energy_kwh=0.25,
        measured_at_ms=T0 + 20,
    )
    assert await registry.update_task(done, expected_version=1)
    got = await registry.get_task("tsk-1")
    assert got == done and got.pieces == [[T0, T0 + 3_600_000]] and isinstance(got.co2_g, float)


async def test_task_id_is_unique_and_unknown_is_not_found(registry: Registry) -> None:
    await registry.add_task(task())
    with pytest.raises(Conflict):
        await registry.add_task(task(name="other"))
    with pytest.raises(NotFound):
        await registry.get_task("tsk-nope")
    with pytest.raises(NotFound):
        await registry.update_task(task("tsk-nope", version=2), expected_version=1)


async def test_list_tasks_by_owner_and_state_oldest_first(registry: Registry) -> None:
    await registry.add_task(task("t-3", "bob", created_at_ms=T0 + 3))
    await registry.add_task(task("t-1", "alice", created_at_ms=T0 + 1))
    await registry.add_task(task("t-2", "alice", created_at_ms=T0 + 2))
    assert await registry.update_task(planned(await registry.get_task("t-2"), 1), 1)
    assert [t.id for t in await registry.list_tasks()] == ["t-1", "t-2", "t-3"]
    assert [t.id for t in await registry.list_tasks(owner="alice")] == ["t-1", "t-2"]
    assert [t.id for t in await registry.list_tasks(states=["queued"])] == ["t-1", "t-3"]
    assert [t.id for t in await registry.list_tasks("alice", ["planned"])] == ["t-2"]
    assert await registry.list_tasks(states=[]) == []
    assert await registry.list_tasks(owner={"$ne": None}) == []  # type: ignore[arg-type]


async def test_list_tasks_written_since(registry: Registry) -> None:
    for n in (1, 2, 3):
        await registry.add_task(task(f"t-{n}", "alice" if n < 3 else "bob", created_at_ms=T0 + n, updated_at_ms=T0 + n))
    since = [t.id for t in await registry.list_tasks(updated_since_ms=T0 + 2)]
    assert since == ["t-2", "t-3"]
    assert [t.id for t in await registry.list_tasks("alice", ["queued"], T0 + 2)] == ["t-2"]
    assert await registry.list_tasks(updated_since_ms=T0 + 4) == []
    current = await registry.get_task("t-1")
    assert await registry.update_task(replace(current, state="cancelled", updated_at_ms=T0 + 9, version=2), 1)
    assert [t.id for t in await registry.list_tasks(updated_since_ms=T0 + 4)] == ["t-1"]
    with pytest.raises(TypeError):
        await registry.list_tasks(updated_since_ms="yesterday")  # type: ignore[arg-type]


DAY = 86_400_000


async def test_archived_tasks_are_read_and_updated_as_before(make_registry: MakeRegistry) -> None:
    """Archiving is invisible to callers: every read gives what it gave, and an archived task
    can still be written, with the same compare-and-set (another instance sees the same)."""
    registry, other = await make_registry(), await make_registry()
    kinds = {
        "old-done": ("done", 0),
        "old-cancelled": ("cancelled", 0),
        "old-failed": ("failed", 0),
        "old-queued": ("queued", 0),
        "new-done": ("done", 10 * DAY),
    }
    for n, (id_, (state, age)) in enumerate(kinds.items()):
        await registry.add_task(task(id_, "alice" if n % 2 else "bob", created_at_ms=T0 + n))
        current = await registry.get_task(id_)
        changed = replace(current, state=state, updated_at_ms=T0 + age + n, version=2)
        assert await registry.update_task(changed, 1)

    async def reads(r: Registry) -> list:
        return [
            [await r.get_task(id_) for id_ in kinds],
            await r.list_tasks(),
            await r.list_tasks("alice"),
            await r.list_tasks(states=["done", "cancelled"]),
            await r.list_tasks(states=["queued", "running"]),
            await r.list_tasks(updated_since_ms=T0),
            await r.list_tasks(updated_since_ms=T0 + 5 * DAY),
        ]

    before = await reads(registry)
    await registry.archive_tasks(T0 + 5 * DAY)
    await registry.archive_tasks(T0 + 5 * DAY)  # twice: nothing more happens
    assert await reads(registry) == before
    assert await reads(other) == before
    # written again: the same compare-and-set, then read as it now is
    archived = await other.get_task("old-done")
    assert not await registry.update_task(replace(archived, reason="stale", version=2), 1)
    assert await registry.update_task(replace(archived, state="failed", updated_at_ms=T0 + 6 * DAY, version=3), 2)
    assert not await other.update_task(replace(archived, reason="late", version=3), 2)
    assert (await other.get_task("old-done")).state == "failed"
    assert [(t.id, t.version) for t in await other.list_tasks(states=["failed"])] == [
        ("old-done", 3),
        ("old-failed", 2),
    ]
    assert [t.id for t in await other.list_tasks(updated_since_ms=T0 + 6 * DAY)] == ["old-done", "new-done"]
    await registry.archive_tasks(T0 + 7 * DAY)
    assert [(t.id, t.version) for t in await other.list_tasks(states=["failed"])] == [
        ("old-done", 3),
        ("old-failed", 2),
    ]
    current = await other.get_task("old-done")
    assert await other.update_task(replace(current, reason="measured", version=4), 3)
    assert (await registry.get_task("old-done")).reason == "measured"


async def test_update_is_compare_and_set_on_the_version(registry: Registry) -> None:
    await registry.add_task(task())
    assert await registry.update_task(planned(task(), 1), expected_version=1)
    stale = replace(task(), state="cancelled", version=2)
    assert not await registry.update_task(stale, expected_version=1)
    assert (await registry.get_task("tsk-1")).state == "planned"
    with pytest.raises(ValueError):
        await registry.update_task(replace(task(), version=7), expected_version=2)


async def test_a_lower_plan_epoch_cannot_overwrite_a_newer_plan(registry: Registry) -> None:
    await registry.add_task(task())
    assert await registry.update_task(planned(task(), epoch=5, server="srv-new"), 1)
    current = await registry.get_task("tsk-1")
    assert not await registry.update_task(planned(current, epoch=4, server="srv-old"), 2)
    assert (await registry.get_task("tsk-1")).server_id == "srv-new"
    # A write that keeps the epoch (a cancel through the api) goes through.
    assert await registry.update_task(replace(current, state="cancelled", version=3), 2)


async def test_racing_updates_from_two_instances_one_wins_each_round(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    await a.add_task(task())
    for round_ in range(1, 9):
        current = await a.get_task("tsk-1")
        results = await asyncio.gather(
            *(
                reg.update_task(
                    replace(current, reason=f"{name}{round_}", version=current.version + 1), current.version
                )
                for name, reg in (("a", a), ("b", b)) * 3
            )
        )
        assert sum(results) == 1, results
        assert (await b.get_task("tsk-1")).version == round_ + 1
    assert len(await b.list_tasks()) == 1


async def test_mongo_finds_the_newest_version_whatever_its_hint_says(mongodb_url, monkeypatch) -> None:
    """MongoDB reads a task by `_id` from a version hint that FerretDB may lose writes of: a
    lagging hint, a missing one and one whose version was deleted all lead to the newest, and
    superseded versions older than TASK_VERSION_KEEP_MS are deleted by the next update."""
    import uuid

    from pymongo import AsyncMongoClient

    from backend.adapters import mongo_tasks
    from backend.adapters.mongo import MongoRegistry
    from tests.contract.test_registry_contract import _mongo_db_url

    db_name = f"tasker_hint_{uuid.uuid4().hex[:12]}"
    registry = MongoRegistry(_mongo_db_url(mongodb_url, db_name))
    client = AsyncMongoClient(_mongo_db_url(mongodb_url, db_name), serverSelectionTimeoutMS=3000)
    await registry.start()
    try:
        db = client[db_name]
        clock = [T0]
        monkeypatch.setattr(mongo_tasks, "now_ms", lambda: clock[0])
        await registry.add_task(task())
        for version in range(1, 5):  # versions 1..5, one minute apart
            clock[0] += 60_000
            current = await registry.get_task("tsk-1")
            assert await registry.update_task(replace(current, reason=f"r{version}", version=version + 1), version)
        assert (await db.task_heads.find_one({"_id": "tsk-1"}))["version"] == 5
        for hint in (2, None, 0):  # lagging, lost, pointing at no version
            await db.task_heads.update_one({"_id": "tsk-1"}, {"$set": {"version": hint}})
            newest = await registry.get_task("tsk-1")
            assert (newest.version, newest.reason) == (5, "r4")
        await db.task_heads.delete_one({"_id": "tsk-1"})  # no head at all
        assert (await registry.get_task("tsk-1")).version == 5
        # an update 20 minutes on deletes every version but the two newest, and moves the hint
        clock[0] += 20 * 60_000
        assert await registry.update_task(replace(newest, reason="r5", version=6), 5)
        kept = sorted(d["version"] for d in await db.task_versions.find({"task_id": "tsk-1"}).to_list())
        assert kept == [5, 6]
        assert (await db.task_heads.find_one({"_id": "tsk-1"}))["version"] == 6
        assert not await registry.update_task(replace(newest, reason="late", version=6), 5)
        assert (await registry.get_task("tsk-1")).reason == "r5"
    finally:
        await registry.close()
        await client.drop_database(db_name)
        await client.close()


async def test_mongo_archive_takes_finished_tasks_out_of_the_versions(mongodb_url) -> None:
    """What archiving is for: the collection every list reads keeps only unfinished and recent
    tasks (FerretDB reads all of it for any query)."""
    import uuid

    from pymongo import AsyncMongoClient

    from backend.adapters.mongo import MongoRegistry
    from tests.contract.test_registry_contract import _mongo_db_url

    db_name = f"tasker_archive_{uuid.uuid4().hex[:12]}"
    registry = MongoRegistry(_mongo_db_url(mongodb_url, db_name))
    client = AsyncMongoClient(_mongo_db_url(mongodb_url, db_name), serverSelectionTimeoutMS=3000)
    await registry.start()
    try:
        for n in range(6):
            await registry.add_task(task(f"t-{n}", created_at_ms=T0 + n))
            state = "done" if n < 4 else "running"
            assert await registry.update_task(replace(task(f"t-{n}"), state=state, updated_at_ms=T0 + n, version=2), 1)
        await registry.archive_tasks(T0 + 3)
        live = sorted({d["task_id"] for d in await client[db_name].task_versions.find({}).to_list()})
        assert live == ["t-3", "t-4", "t-5"]
        assert sorted(d["_id"] for d in await client[db_name].task_heads.find({}).to_list()) == live
        assert len(await registry.list_tasks(states=["done"])) == 4
    finally:
        await registry.close()
        await client.drop_database(db_name)
        await client.close()


async def test_an_embedded_registry_from_before_update_times_lists_tasks_by_them(tmp_path) -> None:
    import sqlite3

    from backend.adapters.sqlite_registry import SqliteRegistry
    from backend.adapters.task_values import task_json

    path = tmp_path / "registry.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE tasks (id TEXT PRIMARY KEY, owner TEXT NOT NULL, state TEXT NOT NULL, "
        "created_at_ms INTEGER NOT NULL, version INTEGER NOT NULL, plan_epoch INTEGER NOT NULL, doc TEXT NOT NULL)"
    )
    for n in (1, 2):
        record = task(f"t-{n}", created_at_ms=T0 + n, updated_at_ms=T0 + 10 * n)
        old.execute(
            "INSERT INTO tasks VALUES (?, 'alice', 'queued', ?, 1, 0, ?)", (record.id, T0 + n, task_json(record))
        )
    old.commit()
    old.close()
    registry = SqliteRegistry(path)
    await registry.start()
    try:
        assert [t.id for t in await registry.list_tasks(updated_since_ms=T0 + 15)] == ["t-2"]
        assert await registry.update_task(replace(task("t-1"), updated_at_ms=T0 + 30, version=2), 1)
        assert [t.id for t in await registry.list_tasks(updated_since_ms=T0 + 15)] == ["t-1", "t-2"]
    finally:
        await registry.close()


# --- the lease ------------------------------------------------------------------------------------


async def test_lease_is_held_by_one_and_renewed_with_its_epoch(registry: Registry) -> None:
    first = await registry.acquire_lease("scheduler", "p1", T0, 15_000)
    assert first is not None
    assert await registry.acquire_lease("scheduler", "p2", T0 + 1_000, 15_000) is None
    assert await registry.acquire_lease("scheduler", "p1", T0 + 5_000, 15_000) == first
    # Renewed until T0 + 20 s: p2 still cannot take it at T0 + 18 s.
    assert await registry.acquire_lease("scheduler", "p2", T0 + 18_000, 15_000) is None
    lease = await registry.get_lease("scheduler")
    assert lease is not None and (lease.holder, lease.epoch, lease.expires_at_ms) == ("p1", first, T0 + 20_000)


async def test_an_expired_lease_is_taken_over_with_a_higher_epoch(registry: Registry) -> None:
    first = await registry.acquire_lease("scheduler", "p1", T0, 15_000)
    second = await registry.acquire_lease("scheduler", "p2", T0 + 15_001, 15_000)
    assert first is not None and second is not None and second > first
    # The old holder, back from a pause, neither renews nor takes it back.
    assert await registry.acquire_lease("scheduler", "p1", T0 + 16_000, 15_000) is None
    # A holder that let its own lease expire gets a new epoch too.
    third = await registry.acquire_lease("scheduler", "p2", T0 + 40_000, 15_000)
    assert third is not None and third > second


async def test_released_lease_is_free_at_once(registry: Registry) -> None:
    epoch = await registry.acquire_lease("scheduler", "p1", T0, 15_000)
    assert epoch is not None
    await registry.release_lease("scheduler", "p2", epoch)  # not the holder: no effect
    assert await registry.acquire_lease("scheduler", "p2", T0 + 1, 15_000) is None
    await registry.release_lease("scheduler", "p1", epoch)
    taken = await registry.acquire_lease("scheduler", "p2", T0 + 2, 15_000)
    assert taken is not None and taken > epoch
    assert await registry.get_lease("other") is None


async def test_racing_takeovers_leave_one_holder(make_registry: MakeRegistry) -> None:
    instances = [await make_registry() for _ in range(3)]
    await instances[0].acquire_lease("scheduler", "dead", T0, 1_000)
    results = await asyncio.gather(
        *(reg.acquire_lease("scheduler", f"p{i}", T0 + 5_000, 15_000) for i, reg in enumerate(instances * 2))
    )
    won = [r for r in results if r is not None]
    assert len(won) == 1 and won[0] == 2
    lease = await instances[1].get_lease("scheduler")
    assert lease is not None and lease.epoch == 2 and lease.holder != "dead"


# --- grid traces ----------------------------------------------------------------------------------


async def test_grid_traces_replace_per_region(registry: Registry) -> None:
    assert await registry.grid_trace() == {}
    await registry.replace_grid_trace("eu-north", [(T0 + 3_600_000, 30), (T0, 25.5)])
    await registry.replace_grid_trace("us-west", [(T0, 300.0)])
    assert await registry.grid_trace() == {"eu-north": [(T0, 25.5), (T0 + 3_600_000, 30.0)], "us-west": [(T0, 300.0)]}
    await registry.replace_grid_trace("eu-north", [(T0, 40.0)])
    await registry.replace_grid_trace("us-west", [])
    assert await registry.grid_trace() == {"eu-north": [(T0, 40.0)]}
    with pytest.raises(ValueError):
        await registry.replace_grid_trace("eu-north", [(T0, float("nan"))])
