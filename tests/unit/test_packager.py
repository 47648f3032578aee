"""The packager loop over the embedded broker: store outages pause it, bad messages are
dead-lettered and counted, stored messages go out live."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

import pytest

from backend.adapters.memory_broker import MemoryBroker
from backend.adapters.sqlite_timeseries import SqliteTimeSeries
from backend.ports import Unavailable
from backend.services.packager import Packager
from backend.services.telemetry import Telemetry
from backend.services.wire import LIVE_CHANNEL, decode_readings, encode_readings, queue_for
from tasker.domain import Reading

T0 = 1_795_000_000_000


class FlakyStore(SqliteTimeSeries):
    """The embedded store, with writes failing while `down` is set."""

    def __init__(self, path) -> None:
        super().__init__(path)
        self.down = False
        self.failed_writes = 0

    def _refuse_while_down(self) -> None:
        if self.down:
            self.failed_writes += 1
            raise Unavailable("time-series store: connection refused (test)")

    async def write_raw(self, readings) -> None:
        self._refuse_while_down()
        await super().write_raw(readings)

    async def recompute_rollups(self, minutes, hours_of=None) -> None:
        self._refuse_while_down()
        await super().recompute_rollups(minutes, hours_of)


@asynccontextmanager
async def packager_over(store, **options):
    """A started embedded broker and `store` with a packager consuming into it; (broker,
    telemetry, live events received)."""
    broker = MemoryBroker()
    await broker.start()
    await store.start()
    telemetry = Telemetry()
    # Hours every 0.2 s rather than 5 unless a test says: most wait for acks, not for the pacing.
    options.setdefault("rollup_hour_interval_s", 0.2)
    packager = Packager(broker, store, telemetry, backoff_initial_s=0.01, backoff_max_s=0.05, **options)
    live: list[bytes] = []

    async def on_live(body: bytes) -> None:
        live.append(body)

    await broker.subscribe_events(LIVE_CHANNEL, on_live)
    await packager.start()
    try:
        yield broker, telemetry, live
    finally:
        await broker.close()
        await packager.close()
        await store.close()


@pytest.fixture
async def rig(tmp_path):
    store = FlakyStore(tmp_path / "ts.db")
    async with packager_over(store, prefetch=2) as (broker, telemetry, live):
        yield broker, store, telemetry, live


def readings(n: int, start: int = 0) -> list[Reading]:
    return [Reading("srv_aaaaaaaaaa", "power", T0 + (start + i) * 1000, float(start + i)) for i in range(n)]


async def wait_for(predicate, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


async def stored(store, n_max=10_000) -> list[Reading]:
    page = await store.raw("srv_aaaaaaaaaa", "power", T0, T0 + 10**9, n_max)
    return sorted(page.readings, key=lambda r: r.ts_ms)


async def test_messages_are_stored_counted_and_announced_live(rig):
    broker, store, telemetry, live = rig
    await broker.publish_work(queue_for("power"), encode_readings("power", readings(3), T0))
    await wait_for(lambda: live)
    assert await stored(store) == readings(3)
    # Counted once the rollups are in, which may be after the live announcement.
    await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 3)
    assert decode_readings(live[0]).readings == readings(3)
    assert await broker.queue_depth(queue_for("power")) == 0


async def test_a_store_outage_pauses_without_acking_then_catches_up(rig):
    broker, store, telemetry, live = rig
    store.down = True
    for i in range(4):
        await broker.publish_work(queue_for("power"), encode_readings("power", readings(5, i * 5), T0))
    await wait_for(lambda: store.failed_writes >= 6)
    # Nothing is acked while the store refuses: every message is still in the queue.
    assert await broker.queue_depth(queue_for("power")) == 4
    assert telemetry.readings_stored.value(metric="power") == 0
    store.down = False
    await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 20)
    assert await stored(store) == readings(20)
    assert await broker.queue_depth(queue_for("power")) == 0
    assert telemetry.store_failures.value() == store.failed_writes


async def test_an_undecodable_message_is_dead_lettered_and_the_rest_still_flow(rig):
    broker, store, telemetry, live = rig
    await broker.publish_work(queue_for("power"), b"\x00 definitely not readings")
    await broker.publish_work(queue_for("power"), encode_readings("power", readings(2), T0))
    await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 2)
    await wait_for(lambda: broker.dead_lettered() == 1)
    assert broker.dead_letters[0][1].startswith(b"\x00")
    assert await stored(store) == readings(2)


async def test_a_redelivered_message_is_stored_once(rig):
    broker, store, telemetry, live = rig
    body = encode_readings("power", readings(4), T0)
    await broker.publish_work(queue_for("power"), body)
    await broker.publish_work(queue_for("power"), body)
    await wait_for(lambda: telemetry.readings_stored.value(metric="power") == 8)
    assert await stored(store) == readings(4)
