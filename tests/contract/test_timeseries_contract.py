"""One contract for every TimeSeriesStore: the embedded SQLite file and the real Cassandra.

Each test runs over both adapters. The Cassandra runs use a keyspace of their own (random name,
dropped at the end of the module) on the node at the `cassandra_url` fixture; they fail, never
skip, when that node does not answer. Values are multiples of 1/4 so they survive Cassandra's
32-bit float column exactly.
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest
from cassandra.cluster import Cluster

from backend import downsample as ds
from backend.adapters.cassandra import CassandraTimeSeries, pack_partitions, parse_url
from backend.adapters.sqlite_timeseries import SqliteTimeSeries
from backend.ports import Latest, TimeSeriesStore, Unavailable, minutes_of
from tasker.domain import Reading

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: a day, hour and minute boundary

ADAPTERS = ["sqlite", "cassandra"]


@dataclass
class Backing:
    """How a test opens stores over one shared backing store, and reaches behind the port."""

    open: Callable[[], Awaitable[TimeSeriesStore]]
    drop_raw: Callable[[str, str, int, int], Awaitable[None]]


@pytest.fixture(scope="module")
def cassandra_keyspace(cassandra_url):
    """A keyspace of this module's own on the real Cassandra: (its URL, a blocking session to
    reach behind the port). Dropped at the end."""
    parts = urlsplit(cassandra_url)
    url = parts._replace(path=f"/{parts.path.strip('/') or 'tasker_test'}_ts_{uuid.uuid4().hex[:10]}").geturl()
    hosts, port, keyspace = parse_url(url)
    cluster = Cluster(hosts, port=port, protocol_version=5)
    session = cluster.connect()  # fails (never skips) when Cassandra is not up
    yield url, session
    session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=60)
    cluster.shutdown()


@pytest.fixture(params=ADAPTERS)
async def backing(request, tmp_path) -> AsyncIterator[Backing]:
    opened: list[TimeSeriesStore] = []
    path = tmp_path / "timeseries.db"
    if request.param == "cassandra":
        url, session = request.getfixturevalue("cassandra_keyspace")
        keyspace = parse_url(url)[2]

    async def open_store() -> TimeSeriesStore:
        if request.param == "cassandra":
            store: TimeSeriesStore = CassandraTimeSeries(url)
        else:
            store = SqliteTimeSeries(path)
        await store.start()
        opened.append(store)
        return store

    def delete_sqlite(server_id: str, metric: str, from_ms: int, to_ms: int) -> None:
        with sqlite3.connect(path) as con:
            con.execute(
                "DELETE FROM readings WHERE server_id = ? AND metric = ? AND ts_ms >= ? AND ts_ms < ?",
                (server_id, metric, from_ms, to_ms),
            )

    def delete_cassandra(server_id: str, metric: str, from_ms: int, to_ms: int) -> None:
        for day in range(ds.day_of(from_ms), ds.day_of(to_ms - 1) + 1):
            session.execute(
                f"DELETE FROM {keyspace}.raw_minutes WHERE server_id = %s AND metric = %s AND day = %s",
                (server_id, metric, day),
            )

    async def drop_raw(server_id: str, metric: str, from_ms: int, to_ms: int) -> None:
        delete = delete_cassandra if request.param == "cassandra" else delete_sqlite
        await asyncio.to_thread(delete, server_id, metric, from_ms, to_ms)

    yield Backing(open_store, drop_raw)
    for store in opened:
        await store.close()


@pytest.fixture
async def store(backing: Backing) -> TimeSeriesStore:
    return await backing.open()


def new_server() -> str:
    """A server id no other test (or earlier run on the shared keyspace) uses."""
    return f"srv-{uuid.uuid4().hex[:12]}"


def value(rng: random.Random) -> float:
    return rng.randrange(0, 8_000) / 4  # exact in a 32-bit float


async def all_raw(
    store: TimeSeriesStore, server: str, metric: str, from_ms: int, to_ms: int, limit: int = 1_000
) -> list[Reading]:
    """Every raw reading of a range, by following the cursor to the end."""
    out: list[Reading] = []
    cursor = None
    while True:
        page = await store.raw(server, metric, from_ms, to_ms, limit, cursor)
        out.extend(page.readings)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def expected_points(written: dict[int, float], width_ms: int, lo: int, to_ms: int):
    """(start, min, avg, max) per bucket of `width_ms`, from the readings we wrote."""
    points = [(ts, v) for ts, v in written.items() if lo <= ts < to_ms]
    return [(r.start_ms, r.min, r.avg, r.max) for r in ds.rollup(points, width_ms)]


def assert_series_equal(got, expected):
    assert [(p[0], p[1], p[3]) for p in got] == [(p[0], p[1], p[3]) for p in expected]
    for g, e in zip(got, expected):
        assert g[2] == pytest.approx(e[2], rel=1e-9), f"avg of bucket {g[0]}"


# --- writes ------------------------------------------------------------------------------------


async def test_duplicates_are_stored_exactly_once(store: TimeSeriesStore):
    server = new_server()
    rng = random.Random(1)
    readings = [Reading(server, "power", T0 + i * 1_000, value(rng)) for i in range(300)]
    await store.write(readings)
    await store.write(readings[100:200])  # a redelivered message
    await store.write(readings[250:] + readings[:10] + readings[5:15])  # overlaps within a batch
    await store.write([])

    got = await all_raw(store, server, "power", T0 - ds.DAY_MS, T0 + ds.DAY_MS)
    assert sorted(got, key=lambda r: r.ts_ms) == readings
    # The co2 metric of the same server is a separate series.
    assert (await store.raw(server, "co2", T0, T0 + ds.DAY_MS, 10)).readings == []


async def test_rewriting_a_reading_with_a_new_value_keeps_only_the_new_one(store: TimeSeriesStore):
    server = new_server()
    await store.write([Reading(server, "power", T0 + 500, 10.0), Reading(server, "power", T0 + 1500, 20.0)])
    await store.write([Reading(server, "power", T0 + 500, 30.0)])
    page = await store.raw(server, "power", T0, T0 + ds.MINUTE_MS, 10)
    assert [(r.ts_ms, r.value) for r in page.readings] == [(T0 + 1500, 20.0), (T0 + 500, 30.0)]
    series = await store.history(server, "power", T0, T0 + ds.MINUTE_MS, 1)
    assert series.points == [(T0, 20.0, 25.0, 30.0)]


async def test_rollups_equal_aggregates_of_raw_despite_duplicates_and_concurrent_writers(
    backing: Backing,
):
    """Random readings across minute, hour and day boundaries, delivered like a crashing,
    restarting pair of packagers would: batches split buckets, some are redelivered, and two
    writers write the same minutes at once."""
    writer_a, writer_b = await backing.open(), await backing.open()
    server = new_server()
    rng = random.Random(42)
    start = T0 - 2 * ds.HOUR_MS - 17_000  # across midnight
    span = 4 * ds.HOUR_MS
    stamps = sorted(rng.sample(range(start, start + span), 2_400))
    readings = [Reading(server, "power", ts, value(rng)) for ts in stamps]
    written = {r.ts_ms: r.value for r in readings}

    batches = [readings[i : i + 150] for i in range(0, len(readings), 150)]
    rng.shuffle(batches)
    redelivered = [b[rng.randrange(len(b)) :] for b in rng.sample(batches, 5)]

    async def deliver(store: TimeSeriesStore, work: list[list[Reading]]) -> None:
        for batch in work:
            await store.write(batch)

    # The two writers share the minutes: A gets the even, B the odd batches (plus redeliveries).
    await asyncio.gather(
        deliver(writer_a, batches[0::2] + redelivered[:3]),
        deliver(writer_b, batches[1::2] + redelivered[3:]),
    )
    # A restarted packager redelivers a message whose rollups were already computed.
    restarted = await backing.open()
    await restarted.write(batches[0])

    reader = await backing.open()
    lo, hi = ds.bucket_start(start, ds.HOUR_MS), ds.bucket_start(start + span, ds.HOUR_MS) + ds.HOUR_MS
    raw = await all_raw(reader, server, "power", lo, hi, limit=700)
    assert {r.ts_ms: r.value for r in raw} == written
    minutes = (hi - lo) // ds.MINUTE_MS
    by_minute = await reader.history(server, "power", lo, hi, minutes)
    assert by_minute.resolution_s == 60
    assert_series_equal(by_minute.points, expected_points(written, ds.MINUTE_MS, lo, hi))
    hours = (hi - lo) // ds.HOUR_MS
    by_hour = await reader.history(server, "power", lo, hi, hours)
    assert by_hour.resolution_s == 3600
    assert_series_equal(by_hour.points, expected_points(written, ds.HOUR_MS, lo, hi))


async def test_rollups_of_a_whole_fleet_written_instant_by_instant_agree_with_raw(backing: Backing):
    """The packager's group writes: many servers (more than one multi-partition read takes), each
    write holding a few seconds of every server, so every write touches a minute (or two) of
    each, and a late reading lands in an older minute and hour of some servers."""
    store = await backing.open()
    servers = [new_server() for _ in range(130)]
    rng = random.Random(17)
    start = T0 - ds.HOUR_MS - 50_000  # three minutes across an hour boundary
    written: dict[tuple[str, str], dict[int, float]] = {(s, m): {} for s in servers for m in ("power", "co2")}
    writes: list[list[Reading]] = []
    for first in range(0, 180, 25):  # 25 instants per write: minutes split across writes
        batch = []
        for second in range(first, min(first + 25, 180)):
            for server in servers:
                for metric in ("power", "co2"):
                    ts = start + second * 1_000
                    batch.append(Reading(server, metric, ts, value(rng)))
        writes.append(batch)
    late = [Reading(s, "power", start - 2 * ds.HOUR_MS + 7_000, value(rng)) for s in servers[::9]]
    writes[3] = writes[3] + late
    writes.append(writes[2][: len(writes[2]) // 2])  # a redelivered half
    for batch in writes:
        await store.write(batch)
        for r in batch:
            written[(r.server_id, r.metric)][r.ts_ms] = r.value

    lo, hi = ds.bucket_start(start - 2 * ds.HOUR_MS, ds.HOUR_MS), T0
    for server in servers[::7] + [servers[-1]]:
        for metric in ("power", "co2"):
            series = written[(server, metric)]
            minutes = await store.history(server, metric, lo, hi, (hi - lo) // ds.MINUTE_MS)
            assert minutes.resolution_s == 60
            assert_series_equal(minutes.points, expected_points(series, ds.MINUTE_MS, lo, hi))
            hours = await store.history(server, metric, lo, hi, (hi - lo) // ds.HOUR_MS)
            assert_series_equal(hours.points, expected_points(series, ds.HOUR_MS, lo, hi))
    newest = await store.latest(servers[:3])
    assert newest[(servers[0], "co2")] == Latest(start + 179_000, written[(servers[0], "co2")][start + 179_000])


async def test_raw_writes_reach_the_rollups_once_their_minutes_are_recomputed(backing: Backing):
    """The packager's way of writing: raw rows first (`write_raw`), the minutes they touched
    recomputed later in one go (`recompute_rollups`), by two writers at once, with late data
    landing in an older minute and hour."""
    writer_a, writer_b = await backing.open(), await backing.open()
    server = new_server()
    rng = random.Random(23)
    start = T0 - ds.HOUR_MS - 150_000  # five minutes across an hour boundary
    readings = [Reading(server, m, start + i * 1_000, value(rng)) for i in range(300) for m in ("power", "co2")]
    lo, hi = ds.bucket_start(start, ds.HOUR_MS), ds.bucket_start(start, ds.HOUR_MS) + 2 * ds.HOUR_MS

    await writer_a.write_raw(readings[:200])
    assert len(await all_raw(writer_a, server, "power", lo, hi)) == 100
    assert (await writer_a.latest([server]))[(server, "power")] == Latest(start + 99_000, readings[198].value)
    # Raw rows alone: the minutes have no rollups yet.
    assert (await writer_a.history(server, "power", lo, hi, 120)).points == []

    async def packager(store: TimeSeriesStore, batches: list[list[Reading]]) -> None:
        touched: set = set()
        for batch in batches:
            await store.write_raw(batch)
            touched |= minutes_of(batch)
        await store.recompute_rollups(touched)

    rest = readings[200:]
    late = [Reading(server, "power", start - 2 * ds.HOUR_MS + 5_000, 12.5)]
    await asyncio.gather(
        packager(writer_a, [rest[0:100], rest[200:300], late]),
        packager(writer_b, [rest[100:200], rest[300:]]),
    )
    await writer_a.recompute_rollups(minutes_of(readings[:200]))
    await writer_b.recompute_rollups(set())  # nothing to do: harmless

    everything = readings + late
    lo -= 2 * ds.HOUR_MS
    for metric in ("power", "co2"):
        written = {r.ts_ms: r.value for r in everything if r.metric == metric}
        minutes = await writer_b.history(server, metric, lo, hi, (hi - lo) // ds.MINUTE_MS)
        assert minutes.resolution_s == 60
        assert_series_equal(minutes.points, expected_points(written, ds.MINUTE_MS, lo, hi))
        hours = await writer_b.history(server, metric, lo, hi, (hi - lo) // ds.HOUR_MS)
        assert_series_equal(hours.points, expected_points(written, ds.HOUR_MS, lo, hi))


# --- history -----------------------------------------------------------------------------------


async def test_history_picks_the_resolution_and_keeps_at_most_max_points(store: TimeSeriesStore):
    server = new_server()
    rng = random.Random(5)
    # Two hours at 1 Hz, the second hour shifted by half a second (sub-second timestamps).
    written = {T0 + i * 1_000 + (500 if i >= 3600 else 0): value(rng) for i in range(7_200)}
    await store.write([Reading(server, "power", ts, v) for ts, v in written.items()])
    to = T0 + 2 * ds.HOUR_MS

    cases = [
        # (from, max_points, stored resolution it must use, output bucket width)
        (T0, 2, 3600, 3600),
        (T0, 120, 60, 60),  # exactly the minutes
        (T0, 50, 60, 180),  # 120 minutes into 40 buckets of 3
        (T0, 1_000, 1, 8),  # raw: 7,200 s into 900 buckets of 8 s
        (T0 + 90 * ds.MINUTE_MS, 1_800, 1, 1),  # 30 minutes of raw, untouched
    ]
    for from_ms, max_points, stored_s, width_s in cases:
        series = await store.history(server, "power", from_ms, to, max_points)
        assert series.resolution_s == width_s, (from_ms, max_points)
        assert 0 < len(series.points) <= max_points
        lo = ds.bucket_start(from_ms, stored_s * 1_000)
        assert_series_equal(series.points, expected_points(written, width_s * 1_000, lo, to))

    empty = await store.history(server, "power", T0 - ds.DAY_MS, T0 - ds.HOUR_MS, 100)
    assert empty.points == []
    with pytest.raises(ValueError, match="max_points"):
        await store.history(server, "power", T0, to, 0)
    with pytest.raises(ValueError, match="after from"):
        await store.history(server, "power", to, T0, 10)


async def test_a_day_at_500_points_and_30_days_are_served_from_rollups(backing: Backing, store: TimeSeriesStore):
    server = new_server()
    rng = random.Random(9)
    start = T0 - 30 * ds.DAY_MS
    # One reading every 10 minutes over 30 days (4,320), plus a full minute of 1 Hz readings.
    written = {start + i * 10 * ds.MINUTE_MS + rng.randrange(600_000): value(rng) for i in range(4_320)}
    written.update({T0 - ds.DAY_MS // 2 + i * 1_000: value(rng) for i in range(60)})
    readings = [Reading(server, "power", ts, v) for ts, v in written.items()]
    for i in range(0, len(readings), 1_000):
        await store.write(readings[i : i + 1_000])

    day_before = await store.history(server, "power", T0 - ds.DAY_MS, T0, 500)
    month_before = await store.history(server, "power", start, T0, 500)
    # Raw rows gone behind the store's back: answers that come from rollups do not change.
    await backing.drop_raw(server, "power", start, T0)
    assert (await store.raw(server, "power", start, T0, 10)).readings == []
    day = await store.history(server, "power", T0 - ds.DAY_MS, T0, 500)
    month = await store.history(server, "power", start, T0, 500)

    assert day.resolution_s == 180  # 1440 minute rollups in threes (raw would give 173 s)
    assert day == day_before
    assert_series_equal(day.points, expected_points(written, 180_000, T0 - ds.DAY_MS, T0))
    assert month.resolution_s == 7_200  # 720 hourly rollups in twos
    assert month == month_before
    assert len(month.points) == 360
    assert_series_equal(month.points, expected_points(written, 7_200_000, start, T0))


# --- raw paging --------------------------------------------------------------------------------


async def test_raw_pages_newest_first_through_everything_across_days(store: TimeSeriesStore):
    server = new_server()
    rng = random.Random(11)
    stamps = sorted(rng.sample(range(T0 - 3 * ds.HOUR_MS, T0 + 3 * ds.HOUR_MS), 1_234))
    readings = [Reading(server, "co2", ts, value(rng)) for ts in stamps]
    await store.write(readings)
    newest_first = readings[::-1]

    first = await store.raw(server, "co2", T0 - ds.DAY_MS, T0 + ds.DAY_MS, 100)
    assert first.readings == newest_first[:100]
    assert first.next_cursor is not None
    second = await store.raw(server, "co2", T0 - ds.DAY_MS, T0 + ds.DAY_MS, 100, first.next_cursor)
    assert second.readings == newest_first[100:200]

    # Following the cursor reaches the oldest reading, across the midnight partition boundary.
    assert await all_raw(store, server, "co2", T0 - ds.DAY_MS, T0 + ds.DAY_MS, limit=100) == newest_first
    # One page holding everything has no next page; neither does an exact fit.
    whole = await store.raw(server, "co2", T0 - ds.DAY_MS, T0 + ds.DAY_MS, 5_000)
    assert whole.readings == newest_first and whole.next_cursor is None
    fit = await store.raw(server, "co2", T0 - ds.DAY_MS, T0 + ds.DAY_MS, len(readings))
    assert fit.next_cursor is None

    # A range keeps its bounds: from inclusive, to exclusive, also when paging.
    lo, hi = stamps[200], stamps[1_000]
    in_range = [r for r in newest_first if lo <= r.ts_ms < hi]
    assert await all_raw(store, server, "co2", lo, hi, limit=77) == in_range


async def test_raw_pages_of_dense_minutes_cut_inside_a_minute(store: TimeSeriesStore):
    """Ten readings a second (600 a minute): pages and bounds that fall inside a minute."""
    server = new_server()
    rng = random.Random(5)
    start = T0 - 5 * ds.MINUTE_MS - 1_234
    readings = [Reading(server, "power", start + i * 100, value(rng)) for i in range(3_500)]
    await store.write(readings)
    newest_first = readings[::-1]
    assert await all_raw(store, server, "power", T0 - ds.HOUR_MS, T0 + ds.HOUR_MS, limit=7) == newest_first
    lo, hi = readings[321].ts_ms, readings[2_999].ts_ms + 50
    assert await all_raw(store, server, "power", lo, hi, limit=1_000) == newest_first[500:3_179]
    one = await store.raw(server, "power", lo, hi, 1)
    assert one.readings == [readings[2_999]] and one.next_cursor is not None
    series = await store.history(server, "power", lo, hi, 5_000)
    assert series.resolution_s == 1
    assert_series_equal(series.points, expected_points({r.ts_ms: r.value for r in readings}, 1_000, lo, hi))


async def test_garbled_cursor_and_bad_limits_are_clear_errors(store: TimeSeriesStore):
    server = new_server()
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.raw(server, "power", T0, T0 + ds.DAY_MS, 10, cursor="not-a-cursor")
    with pytest.raises(ValueError, match="limit"):
        await store.raw(server, "power", T0, T0 + ds.DAY_MS, 0)
    with pytest.raises(ValueError, match="after from"):
        await store.raw(server, "power", T0, T0, 10)


# --- latest, purge, schema -----------------------------------------------------------------------


async def test_latest_keeps_the_newest_reading_even_when_older_ones_arrive_later(store: TimeSeriesStore):
    a, b = new_server(), new_server()
    await store.write([Reading(a, "power", T0 + 5_000, 50.0), Reading(a, "co2", T0 + 1_000, 1.0)])
    await store.write([Reading(a, "power", T0 + 4_000, 40.0), Reading(a, "power", T0 + 3_000, 30.0)])
    await store.write([Reading(b, "power", T0, 7.0), Reading(b, "power", T0 + 9_000, 9.5)])
    await store.write([Reading(a, "co2", T0 + 2_000, 2.25)])

    mine = await store.latest([a, b])
    assert {k: (v.ts_ms, v.value) for k, v in mine.items()} == {
        (a, "power"): (T0 + 5_000, 50.0),
        (a, "co2"): (T0 + 2_000, 2.25),
        (b, "power"): (T0 + 9_000, 9.5),
    }
    assert set(await store.latest([b])) == {(b, "power")}
    assert await store.latest([]) == {}
    everyone = await store.latest()
    assert {k: everyone[k] for k in mine} == mine


async def test_purge_removes_a_server_and_nothing_else(store: TimeSeriesStore):
    gone, kept = new_server(), new_server()
    for server in (gone, kept):
        await store.write([Reading(server, m, T0 + i * 30_000, float(i)) for m in ("power", "co2") for i in range(200)])
    # A sensor whose clock runs a minute ahead: its newest reading is "in the future".
    ahead = int(time.time() * 1000) + 60_000
    await store.write([Reading(gone, "power", ahead, 5.0)])
    await store.purge(gone)
    assert (await store.raw(gone, "power", ahead - ds.DAY_MS, ahead + 1, 10)).readings == []
    for metric in ("power", "co2"):
        assert (await store.raw(gone, metric, T0 - ds.DAY_MS, T0 + ds.DAY_MS, 10)).readings == []
        assert (await store.history(gone, metric, T0, T0 + ds.DAY_MS, 100)).points == []
        assert (await store.history(gone, metric, T0, T0 + 2 * ds.HOUR_MS, 100)).points == []
        assert len(await all_raw(store, kept, metric, T0, T0 + ds.DAY_MS)) == 200
        assert (await store.history(kept, metric, T0, T0 + ds.DAY_MS, 24)).points != []
    assert set(await store.latest([gone, kept])) == {(kept, "power"), (kept, "co2")}
    await store.purge(new_server())  # a server with nothing stored: harmless


async def test_schema_creation_twice_is_harmless_and_data_survives_a_restart(backing: Backing):
    first = await backing.open()
    server = new_server()
    await first.write([Reading(server, "power", T0 + i * 1_000, 1.5 * i) for i in range(90)])
    await first.close()
    again = await backing.open()
    await again.start()  # starting an already started store changes nothing
    await again.ping()
    await again.write([Reading(server, "power", T0 + 90_000, 135.0)])
    assert len(await all_raw(again, server, "power", T0, T0 + ds.HOUR_MS)) == 91
    series = await again.history(server, "power", T0, T0 + 2 * ds.MINUTE_MS, 2)
    assert [(p[0], p[1], p[3]) for p in series.points] == [(T0, 0.0, 88.5), (T0 + 60_000, 90.0, 135.0)]


# --- Cassandra specifics -------------------------------------------------------------------------


async def test_cassandra_layout_follows_the_design_and_retention_changes_migrate(cassandra_keyspace):
    url, session = cassandra_keyspace
    keyspace = parse_url(url)[2]
    store = CassandraTimeSeries(url, retention_days=30)
    await store.start()
    await store.close()

    def table(name: str):
        return session.execute(
            "SELECT default_time_to_live, compaction, compression FROM system_schema.tables"
            " WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, name),
        ).one()

    def columns(name: str):
        rows = session.execute(
            "SELECT column_name, kind, clustering_order, type FROM system_schema.columns"
            " WHERE keyspace_name = %s AND table_name = %s",
            (keyspace, name),
        )
        return {r.column_name: (r.kind, r.clustering_order, r.type) for r in rows}

    raw = table("raw_minutes")
    assert raw.default_time_to_live == 30 * 86_400
    assert raw.compaction["class"].endswith("TimeWindowCompactionStrategy")
    assert raw.compression["class"].endswith("ZstdCompressor")
    assert columns("raw_minutes") == {
        "server_id": ("partition_key", "none", "text"),
        "metric": ("partition_key", "none", "text"),
        "day": ("partition_key", "none", "int"),
        "minute": ("clustering", "desc", "int"),
        "points": ("regular", "none", "map<int, float>"),
    }
    assert table("rollup_60").default_time_to_live == 30 * 86_400

    # A new retention takes effect at the next start; starting again with it changes nothing.
    for _ in range(2):
        store = CassandraTimeSeries(url, retention_days=400)
        await store.start()
        await store.close()
        assert table("raw_minutes").default_time_to_live == 400 * 86_400
        assert table("rollup_3600").default_time_to_live == 400 * 86_400


@pytest.mark.parametrize(
    "url",
    [
        "cassandra://127.0.0.1:9042",  # no keyspace
        "cassandra://127.0.0.1:9042/bad-name",
        "cassandra://127.0.0.1:notaport/ks",
        "cassandra://a:9042,b:9043/ks",
        "http://127.0.0.1:9042/ks",
        "cassandra:///ks",
    ],
)
def test_a_bad_cassandra_url_is_a_clear_error(url):
    with pytest.raises(ValueError, match="time-series URL"):
        CassandraTimeSeries(url)


def test_cassandra_rows_are_packed_into_few_batches_without_splitting_small_partitions():
    parts = [[("a", i) for i in range(3)], [("b", i) for i in range(12)], [("c", 0)], [("d", 0), ("d", 1)]]
    batches = list(pack_partitions(parts, max_rows=5, max_partitions=2))
    # "b" alone exceeds 5 rows: full chunks of it go alone, its remainder shares a batch; at
    # most 2 partitions and 5 rows per batch.
    assert sorted("".join(row[0] for row in b) for b in batches) == ["aaabb", "bbbbb", "bbbbb", "cdd"]
    assert sorted(r for b in batches for r in b) == sorted(r for p in parts for r in p)
    assert list(pack_partitions([], 5, 2)) == []


def test_minute_rows_are_packed_by_their_readings():
    """Weighted rows (a minute row weighs its readings): a batch stays under the weight."""
    parts = [[("a", 3), ("a", 3)], [("b", 7), ("b", 4)], [("c", 1)]]
    batches = list(pack_partitions(parts, max_rows=8, max_partitions=5, weight=lambda row: row[1]))
    assert [[row[1] for row in b] for b in batches] == [[7], [3, 3], [4, 1]]  # a full chunk goes at once
    heavy = list(pack_partitions([[("x", 9), ("x", 2)]], max_rows=8, max_partitions=5, weight=lambda row: row[1]))
    assert heavy == [[("x", 9)], [("x", 2)]]  # a row heavier than a batch still goes, alone


def test_cassandra_url_with_several_hosts():
    assert parse_url("cassandra://10.0.0.1,10.0.0.2:9142/tasker") == (["10.0.0.1", "10.0.0.2"], 9142, "tasker")
    assert parse_url("cassandra://db/tasker") == (["db"], 9042, "tasker")


async def test_cassandra_down_is_unavailable_not_a_traceback():
    store = CassandraTimeSeries("cassandra://127.0.0.1:1/tasker_nowhere")
    with pytest.raises(Unavailable, match="cannot connect"):
        await store.start()
    with pytest.raises(Unavailable, match="not started"):
        await store.write([Reading("s", "power", T0, 1.0)])


async def test_cassandra_a_stale_rollup_recomputation_landing_last_does_not_win(cassandra_keyspace):
    """Packager A reads a minute, then stalls before writing its rollup; packager B writes a new
    reading to that minute and recomputes it; A's stale rollup lands last. The rollup must still
    count B's reading (A's write carries the older read time, so Cassandra keeps B's)."""
    url = cassandra_keyspace[0]
    a, b = CassandraTimeSeries(url), CassandraTimeSeries(url)
    await a.start()
    await b.start()
    server = new_server()
    await a.write([Reading(server, "power", T0 + 1_000, 10.0)])

    a_has_read, b_is_done = asyncio.Event(), asyncio.Event()
    write_rows = a._batches.write_rows

    async def stalling_write_rows(name, by_partition):
        if name == "insert_r60":
            a_has_read.set()
            await b_is_done.wait()
        return await write_rows(name, by_partition)

    a._batches.write_rows = stalling_write_rows  # type: ignore[method-assign]
    stale = asyncio.create_task(a.write([Reading(server, "power", T0 + 2_000, 20.0)]))
    await a_has_read.wait()
    await b.write([Reading(server, "power", T0 + 3_000, 60.0)])
    b_is_done.set()
    await stale
    for store in (a, b):
        minute = await store.history(server, "power", T0, T0 + ds.MINUTE_MS, 1)
        assert minute.points == [(T0, 10.0, 30.0, 60.0)]
        hour = await store.history(server, "power", T0, T0 + ds.HOUR_MS, 1)
        assert hour.points == [(T0, 10.0, 30.0, 60.0)]
    await a.close()
    await b.close()
