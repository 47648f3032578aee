"""Group commit (packager and ingest): parts that arrive while a write is busy go out together,
each caller released only once its write succeeded; a refused part does not sink the others;
memory stays bounded however many messages the broker hands over."""

from __future__ import annotations

import asyncio

import pytest

from backend.adapters.sqlite_timeseries import SqliteTimeSeries
from backend.ports import Unavailable
from backend.services.group_commit import GroupCommit
from backend.services.ingest import IngestService
from backend.services.readings import ReadingBatch
from backend.services.telemetry import Telemetry
from backend.services.wire import decode_readings, encode_readings, queue_for
from tasker.domain import Reading
from tests.unit.test_packager import packager_over

T0 = 1_795_000_000_000


def readings(n: int, start: int = 0, server: str = "srv_aaaaaaaaaa") -> list[Reading]:
    return [Reading(server, "power", T0 + (start + i) * 1000, float(start + i)) for i in range(n)]


class GatedWrites:
    """A store write that records each call and finishes only when the test opens its gate."""

    def __init__(self) -> None:
        self.calls: list[list[Reading]] = []
        self.gates: list[asyncio.Event] = []

    async def __call__(self, parts) -> None:
        self.calls.append([r for part in parts for r in part])
        gate = asyncio.Event()
        self.gates.append(gate)
        await gate.wait()

    def open_all(self) -> None:
        for gate in self.gates:
            gate.set()


async def finish(store: GatedWrites, callers: list[asyncio.Task]) -> None:
    """Let every write through, including those that start meanwhile, until the callers are done."""
    async with asyncio.timeout(5):
        while not all(t.done() for t in callers):
            store.open_all()
            await settle()
    await asyncio.gather(*callers)


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_messages_arriving_during_a_write_go_out_together_in_one_write():
    store = GatedWrites()
    groups = GroupCommit(store, len, max_size=1_000, max_writes=1)
    first = asyncio.create_task(groups.submit(readings(2)))
    await settle()
    later = [asyncio.create_task(groups.submit(readings(3, 10 * i))) for i in range(1, 5)]
    await settle()
    # One write in flight with the first message; the other four wait, none of them is done.
    assert [len(c) for c in store.calls] == [2]
    assert not any(t.done() for t in [first, *later])

    store.gates[0].set()
    await first
    await settle()
    assert [len(c) for c in store.calls] == [2, 12]  # the four waiting messages in one write
    assert not any(t.done() for t in later)  # nothing is acked before its write succeeded
    store.open_all()
    await asyncio.gather(*later)


async def test_a_group_stops_growing_at_max_readings():
    store = GatedWrites()
    groups = GroupCommit(store, len, max_size=5, max_writes=1)
    callers = [asyncio.create_task(groups.submit(readings(3, 10 * i))) for i in range(5)]
    await settle()
    while not all(t.done() for t in callers):
        store.open_all()
        await settle()
    # 3 alone (the slot was free), then groups closed once they held 5 or more.
    assert [len(c) for c in store.calls] == [3, 6, 6]


async def test_room_holds_back_messages_once_every_slot_and_the_next_group_are_full():
    store = GatedWrites()
    groups = GroupCommit(store, len, max_size=4, max_writes=1)
    writing = asyncio.create_task(groups.submit(readings(4)))
    waiting = asyncio.create_task(groups.submit(readings(4, 10)))
    await settle()
    blocked = asyncio.create_task(groups.room())
    await settle()
    assert not blocked.done()
    store.gates[0].set()  # the write finishes: the waiting group starts, there is room again
    await settle()
    assert blocked.done()
    store.open_all()
    await asyncio.gather(writing, waiting)


async def test_a_cancelled_caller_does_not_cancel_the_write_of_the_others():
    store = GatedWrites()
    groups = GroupCommit(store, len, max_size=100, max_writes=1)
    busy = asyncio.create_task(groups.submit(readings(1)))
    await settle()
    gone = asyncio.create_task(groups.submit(readings(2, 10)))
    stays = asyncio.create_task(groups.submit(readings(2, 20)))
    await settle()
    gone.cancel()
    store.open_all()
    await busy
    await settle()
    store.open_all()
    await stays
    assert [len(c) for c in store.calls] == [1, 4]


async def test_a_refused_message_is_retried_alone_and_only_it_fails():
    calls: list[int] = []

    async def write(parts) -> None:
        batch = [r for part in parts for r in part]
        calls.append(len(batch))
        await asyncio.sleep(0.01)
        if any(r.value < 0 for r in batch):
            raise ValueError("value out of range")

    groups = GroupCommit(write, len, max_size=100, max_writes=1)
    first = asyncio.create_task(groups.submit(readings(1)))
    await settle()
    good = asyncio.create_task(groups.submit(readings(2, 10)))
    bad = asyncio.create_task(groups.submit([Reading("srv_bbbbbbbbbb", "power", T0, -1.0)]))
    await first
    await good
    with pytest.raises(ValueError, match="out of range"):
        await bad
    assert calls[:2] == [1, 3]  # the group of both, refused
    assert sorted(calls[2:]) == [1, 2]  # then each on its own


class RefusingStore(SqliteTimeSeries):
    """The embedded store, refusing (like Cassandra's 32-bit float column) huge values."""

    async def write_raw(self, batch) -> None:
        await asyncio.sleep(0.02)  # slow enough that messages pile up into one group
        if any(r.value > 1e38 for r in batch):
            raise ValueError("value is not a finite 32-bit float")
        await super().write_raw(batch)


async def test_the_packager_dead_letters_a_refused_message_and_stores_the_rest(tmp_path):
    store = RefusingStore(tmp_path / "ts.db")
    async with packager_over(store, prefetch=16) as (broker, telemetry, _):
        good = [readings(5, 10 * i) for i in range(6)]
        for batch in good[:3]:
            await broker.publish_work(queue_for("power"), encode_readings("power", batch, T0))
        await broker.publish_work(
            queue_for("power"),
            encode_readings("power", [Reading("srv_aaaaaaaaaa", "power", T0 + 999_000, 3e38 * 10 / 9)], T0),
        )
        for batch in good[3:]:
            await broker.publish_work(queue_for("power"), encode_readings("power", batch, T0))
        async with asyncio.timeout(5):
            while broker.dead_lettered() < 1 or telemetry.readings_stored.value(metric="power") < 30:
                await asyncio.sleep(0.01)
        page = await store.raw("srv_aaaaaaaaaa", "power", T0, T0 + 10**7, 100)
        assert sorted(r.ts_ms for r in page.readings) == sorted(r.ts_ms for b in good for r in b)
        assert broker.dead_lettered() == 1
        assert broker.dead_letters[0][1].count(b"3.333") == 1  # the refused message itself
        assert await broker.queue_depth(queue_for("power")) == 0


async def test_refused_readings_alone_are_dead_lettered_and_their_neighbours_stored(tmp_path):
    # Ingest merges the POSTs of many sensors into one message: a value the store refuses used
    # to dead-letter the whole message, losing other sensors' acknowledged readings.
    store = RefusingStore(tmp_path / "ts.db")
    async with packager_over(store, prefetch=16) as (broker, telemetry, _):
        good = readings(40, 0)
        poison = [Reading("srv_bbbbbbbbbb", "power", T0 + 7_000 + i, 3.4e38) for i in range(3)]
        mixed = good[:10] + poison[:1] + good[10:25] + poison[1:] + good[25:]
        await broker.publish_work(queue_for("power"), encode_readings("power", mixed, T0))
        async with asyncio.timeout(5):
            while telemetry.readings_dead_lettered.value(metric="power") < 3:
                await asyncio.sleep(0.01)
            while telemetry.readings_stored.value(metric="power") < 40:
                await asyncio.sleep(0.01)
        page = await store.raw("srv_aaaaaaaaaa", "power", T0, T0 + 10**7, 100)
        assert sorted((r.ts_ms, r.value) for r in page.readings) == sorted((r.ts_ms, r.value) for r in good)
        assert (await store.raw("srv_bbbbbbbbbb", "power", T0, T0 + 10**7, 100)).readings == []
        assert broker.dead_lettered() == 1  # one dead letter holding the three refused readings
        dead = decode_readings(broker.dead_letters[0][1])
        assert sorted(r.ts_ms for r in dead.readings) == [r.ts_ms for r in poison]
        assert telemetry.readings_stored.value(metric="power") == 40
        assert await broker.queue_depth(queue_for("power")) == 0


class HeldBroker:
    """A broker whose publishes each wait for the test to confirm them (or fail them)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.confirms: list[asyncio.Future[None]] = []

    async def publish_work(self, queue: str, body: bytes) -> None:
        self.published.append((queue, body))
        confirm = asyncio.get_running_loop().create_future()
        self.confirms.append(confirm)
        await confirm

    def confirm_all(self, error: Exception | None = None) -> None:
        for confirm in self.confirms:
            if not confirm.done():
                confirm.set_exception(error) if error else confirm.set_result(None)


def posted(first: int, n: int = 3) -> ReadingBatch:
    batch = ReadingBatch()
    for i in range(first, first + n):
        batch.add(Reading(f"srv_{i % 2}", "power", T0 + i, float(i)))
        batch.add(Reading(f"srv_{i % 2}", "co2", T0 + i, float(i) / 2))
    return batch


async def test_posts_arriving_while_publishes_await_confirms_share_one_message():
    broker = HeldBroker()
    ingest = IngestService(broker, directory=None, telemetry=Telemetry())  # type: ignore[arg-type]
    posts = [asyncio.create_task(ingest.publish(posted(10 * i))) for i in range(8)]
    await settle()
    # Two messages per queue await their confirm; the six later POSTs wait, unanswered.
    assert sorted(q for q, _ in broker.published) == ["readings.co2"] * 2 + ["readings.power"] * 2
    broker.confirm_all()
    await settle()
    assert sum(p.done() for p in posts) == 2
    assert len(broker.published) == 6  # the six later POSTs: one message per queue
    broker.confirm_all()
    assert await asyncio.gather(*posts) == [6] * 8
    power = [r for q, body in broker.published if q == "readings.power" for r in decode_readings(body).readings]
    assert sorted(power, key=lambda r: r.ts_ms) == sorted(
        (r for i in range(8) for r in posted(10 * i).by_metric["power"]), key=lambda r: r.ts_ms
    )


async def test_a_failed_shared_message_fails_every_post_in_it():
    broker = HeldBroker()
    ingest = IngestService(broker, directory=None, telemetry=Telemetry())  # type: ignore[arg-type]
    posts = [asyncio.create_task(ingest.publish(posted(10 * i))) for i in range(5)]
    await settle()
    broker.confirm_all()
    await settle()
    broker.confirm_all(Unavailable("RabbitMQ at 127.0.0.1:5672: connection lost"))
    results = await asyncio.gather(*posts, return_exceptions=True)
    assert results[:2] == [6, 6]
    assert all(isinstance(r, Unavailable) and "connection lost" in str(r) for r in results[2:])


async def test_small_writes_overlap_and_large_ones_go_one_at_a_time():
    store = GatedWrites()
    groups = GroupCommit(store, len, max_size=100, max_writes=3, busy_size=10)
    small = [asyncio.create_task(groups.submit(readings(2, 10 * i))) for i in range(4)]
    await settle()
    # Three small writes at once (the cap); the fourth waits for a slot.
    assert [len(c) for c in store.calls] == [2, 2, 2]
    await finish(store, small)
    large = [asyncio.create_task(groups.submit(readings(12, 100 * i))) for i in range(3)]
    await settle()
    # 12 readings in flight is over busy_size: the others wait, and then go out together.
    assert [len(c) for c in store.calls[4:]] == [12]
    store.open_all()
    await settle()
    assert [len(c) for c in store.calls[4:]] == [12, 24]
    await finish(store, large)
