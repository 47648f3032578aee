"""Rollups recomputed per dirty minute, debounced: many writes into a minute cause one
recomputation, hours are recomputed less often, a message is acked only once its minutes and
their hours are recomputed, and a packager that dies
between its raw write and the recomputation leaves the message to be redelivered, after which
the rollups agree with the raw readings."""

from __future__ import annotations

import asyncio

import pytest

from backend import downsample as ds
from backend.adapters.sqlite_timeseries import SqliteTimeSeries
from backend.ports import Unavailable
from backend.services.rollups import DirtyMinutes
from backend.services.wire import decode_readings, encode_readings, queue_for
from tasker.domain import Reading
from tests.unit.test_packager import packager_over, wait_for

T0 = 1_795_000_020_000  # 20 s into a minute: a message of 20 readings stays in it
SERVER = "srv_aaaaaaaaaa"
MINUTE = T0 - T0 % ds.MINUTE_MS


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading(SERVER, "power", T0 + (start + i) * 1000, float(start + i) + 0.25) for i in range(n)]


class CountingStore(SqliteTimeSeries):
    """The embedded store, recording raw writes and recomputations; a recomputation waits for
    `gate` while it is closed."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.raw_writes = 0
        self.recomputed: list[set] = []  # the minutes of each recomputation that had any
        self.hours_recomputed: list[set] = []  # the minutes whose hours each one recomputed
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail_next_recompute = False

    async def write_raw(self, batch) -> None:
        await super().write_raw(batch)
        self.raw_writes += 1

    async def recompute_rollups(self, minutes, hours_of=None) -> None:
        await self.gate.wait()
        if self.fail_next_recompute:
            self.fail_next_recompute = False
            raise Unavailable("time-series store: connection refused (test)")
        await super().recompute_rollups(minutes, hours_of)
        if minutes:
            self.recomputed.append(set(minutes))
        if hours_of:
            self.hours_recomputed.append(set(hours_of))


async def minute_rollup(store: SqliteTimeSeries) -> tuple | None:
    """(min, avg, max) of the test minute from the 60 s rollups, None if it has none."""
    hour = MINUTE - MINUTE % ds.HOUR_MS
    series = await store.history(SERVER, "power", hour, hour + ds.HOUR_MS, 60)
    assert series.resolution_s == 60
    return next((p[1:] for p in series.points if p[0] == MINUTE), None)


def aggregate(values: list[float]) -> tuple[float, float, float]:
    return (min(values), sum(values) / len(values), max(values))


async def test_many_writes_into_one_minute_cause_one_recomputation(tmp_path):
    store = CountingStore(tmp_path / "ts.db")
    async with packager_over(store, prefetch=64, rollup_interval_s=3, rollup_hour_interval_s=3) as (
        broker,
        telemetry,
        _,
    ):
        queue = queue_for("power")
        await broker.publish_work(queue, encode_readings("power", readings(2), T0))
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 2)
        assert len(store.recomputed) == 1  # after a quiet spell: at once, no timer

        # Ten more writes, one after the other, each into the same minute.
        for i in range(10):
            await broker.publish_work(queue, encode_readings("power", readings(2, 2 + 2 * i), T0))
            await wait_for(lambda: store.raw_writes == 2 + i)
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 22, timeout=10)
        assert store.recomputed == [{(SERVER, "power", MINUTE)}] * 2  # the ten writes: one recomputation
        assert store.hours_recomputed == [{(SERVER, "power", MINUTE)}] * 2
        assert await minute_rollup(store) == pytest.approx(aggregate([r.value for r in readings(22)]))
        assert await broker.queue_depth(queue) == 0


async def test_a_message_goes_live_at_once_but_is_acked_only_once_its_minutes_are_recomputed(tmp_path):
    store = CountingStore(tmp_path / "ts.db")
    store.gate.clear()
    async with packager_over(store, prefetch=8) as (broker, telemetry, live):
        queue = queue_for("power")
        await broker.publish_work(queue, encode_readings("power", readings(5), T0))
        await wait_for(lambda: store.raw_writes == 1)
        # Live subscribers get the readings once their raw rows are in, without waiting for rollups.
        await wait_for(lambda: len(live) == 1)
        assert decode_readings(live[0]).readings == readings(5)
        # Raw rows are stored; the rollup is not, so neither is the message acked or counted.
        assert len((await store.raw(SERVER, "power", T0, T0 + 10**6, 100)).readings) == 5
        assert await minute_rollup(store) is None
        assert await broker.queue_depth(queue) == 1
        assert telemetry.readings_stored.value(metric="power") == 0
        store.gate.set()
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 5)
        assert await broker.queue_depth(queue) == 0
        assert await minute_rollup(store) == pytest.approx(aggregate([r.value for r in readings(5)]))


async def test_a_store_outage_during_the_recomputation_holds_the_ack_until_it_succeeds(tmp_path):
    store = CountingStore(tmp_path / "ts.db")
    store.fail_next_recompute = True
    async with packager_over(store, prefetch=8, rollup_interval_s=0.05) as (broker, telemetry, _):
        await broker.publish_work(queue_for("power"), encode_readings("power", readings(7), T0))
        await wait_for(lambda: telemetry.store_failures.value() == 1)
        assert await broker.queue_depth(queue_for("power")) == 1
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 7, timeout=10)
        assert store.raw_writes == 1  # the recomputation is retried, not the raw write
        assert await minute_rollup(store) == pytest.approx(aggregate([r.value for r in readings(7)]))
        assert await broker.queue_depth(queue_for("power")) == 0


async def test_a_packager_dying_mid_debounce_leaves_its_message_to_redeliver(tmp_path):
    """The first packager stores a message's raw rows and dies while their minute waits for its
    recomputation; the message was never acked, so the broker (here: the test, publishing the
    same bytes again, as RabbitMQ redelivers an unacked message) hands it to a restarted
    packager, and the rollups agree with the raw readings."""
    path = tmp_path / "ts.db"
    first = CountingStore(path)
    body = encode_readings("power", readings(10, 30), T0)
    async with packager_over(first, prefetch=8, rollup_interval_s=30) as (broker, telemetry, _):
        queue = queue_for("power")
        await broker.publish_work(queue, encode_readings("power", readings(3), T0))
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 3)
        await broker.publish_work(queue, body)
        await wait_for(lambda: first.raw_writes == 2)
        await asyncio.sleep(0.1)
        assert await broker.queue_depth(queue) == 1  # stored raw, waiting for the debounce: unacked
        assert await minute_rollup(first) == pytest.approx(aggregate([r.value for r in readings(3)]))
    # The packager and its broker connection are gone (closing cancels the wait: no ack).

    second = CountingStore(path)
    async with packager_over(second, prefetch=8) as (broker, telemetry, _):
        await broker.publish_work(queue_for("power"), body)
        await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 10)
        everything = readings(3) + readings(10, 30)
        assert await minute_rollup(second) == pytest.approx(aggregate([r.value for r in everything]))
        hour = await second.history(
            SERVER, "power", MINUTE - MINUTE % ds.HOUR_MS, MINUTE - MINUTE % ds.HOUR_MS + ds.HOUR_MS, 1
        )
        assert hour.resolution_s == 3600
        assert hour.points[0][1:] == pytest.approx(aggregate([r.value for r in everything]))


# --- DirtyMinutes on its own ----------------------------------------------------------------------


async def test_minutes_marked_during_a_recomputation_go_into_the_next_round_together():
    calls: list[set] = []
    release = asyncio.Event()

    async def recompute(minutes, hours_of) -> None:
        calls.append(set(minutes))
        await release.wait()

    dirty = DirtyMinutes(recompute, interval_s=0.05, hour_interval_s=0.05)
    dirty.start()
    try:
        first = dirty.mark({("a", "power", 0)})
        await asyncio.sleep(0.01)
        later = [dirty.mark({("a", "power", 60_000 * i)}) for i in range(1, 4)]
        later.append(dirty.mark({("b", "co2", 0)}))
        await asyncio.sleep(0.1)
        assert calls == [{("a", "power", 0)}]  # one round at a time
        assert not first.done() and not any(f.done() for f in later)
        release.set()
        async with asyncio.timeout(2):
            await asyncio.gather(first, *later)
        assert calls[1] == {("a", "power", 60_000), ("a", "power", 120_000), ("a", "power", 180_000), ("b", "co2", 0)}
        assert dirty.rounds == 2
    finally:
        await dirty.close()


async def test_a_failed_round_reaches_its_callers_and_later_rounds_still_run():
    outcomes = [Unavailable("time-series store: timed out (test)"), None]

    async def recompute(minutes, hours_of) -> None:
        outcome = outcomes.pop(0)
        if outcome is not None:
            raise outcome

    dirty = DirtyMinutes(recompute, interval_s=0.0)
    dirty.start()
    try:
        with pytest.raises(Unavailable, match="timed out"):
            await asyncio.wait_for(asyncio.shield(dirty.mark({("a", "power", 0)})), 2)
        await asyncio.wait_for(asyncio.shield(dirty.mark({("a", "power", 0)})), 2)
        assert dirty.rounds == 1 and outcomes == []
    finally:
        await dirty.close()


async def test_marking_nothing_waits_for_nothing():
    async def recompute(minutes, hours_of) -> None:  # pragma: no cover - must not be called
        raise AssertionError("recomputed nothing")

    dirty = DirtyMinutes(recompute)
    dirty.start()
    try:
        assert dirty.mark(set()).done()
        with pytest.raises(ValueError, match="interval_s"):
            DirtyMinutes(recompute, interval_s=-1)
        with pytest.raises(ValueError, match="hour_interval_s"):
            DirtyMinutes(recompute, interval_s=1, hour_interval_s=0.5)
    finally:
        await dirty.close()


async def test_hours_are_recomputed_less_often_and_callers_wait_for_them():
    """Minute rounds every `interval_s`; the hours of every minute recomputed since go in a round
    at most every `hour_interval_s`, also when no new minute comes; a caller's future settles
    only once its hours are done, and a failed hour round fails every caller waiting on it."""
    calls: list[tuple[set, set]] = []
    fail_hours = [True, False]

    async def recompute(minutes, hours_of) -> None:
        calls.append((set(minutes), set(hours_of)))
        if hours_of and not minutes and fail_hours.pop(0):
            raise Unavailable("time-series store: timed out (test)")

    dirty = DirtyMinutes(recompute, interval_s=0.01, hour_interval_s=0.4)
    dirty.start()
    try:
        a, b, c = ("a", "power", 0), ("a", "power", 60_000), ("b", "co2", 120_000)
        await asyncio.wait_for(asyncio.shield(dirty.mark({a})), 2)  # after a quiet spell: both at once
        assert calls == [({a}, {a})]
        second = dirty.mark({b})
        await asyncio.sleep(0.1)
        third = dirty.mark({c})
        await asyncio.sleep(0.1)
        assert calls[1:] == [({b}, set()), ({c}, set())]  # minute rounds only
        assert not second.done() and not third.done()  # their hours are owed
        with pytest.raises(Unavailable, match="timed out"):  # the hours-only round fails: both see it
            await asyncio.wait_for(asyncio.shield(second), 2)
        assert third.exception() is not None
        assert calls[3] == (set(), {b, c})
        fourth = dirty.mark({b})  # redelivered and written again: owed anew
        await asyncio.wait_for(asyncio.shield(fourth), 2)
        assert calls[-1][1] == {b} and dirty.rounds == 4
    finally:
        await dirty.close()
