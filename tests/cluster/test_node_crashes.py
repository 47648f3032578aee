"""Crashes in a three-node cluster under sustained ingest: a Cassandra node, then the RabbitMQ
node the backend is connected to, are killed with SIGKILL, and so are a packager process and an
API process meanwhile.

What a user would notice, and what must hold:
- a sensor that retries (on 503 or a refused connection, moving to another API process as a
  load balancer would) never gets any other answer, and all its readings are accepted;
- afterwards every accepted reading is stored exactly once, the rollups agree with them, and
- once the killed nodes are back, each Cassandra node answers a read from its own replica
  with every reading (the missed writes reached it).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import pytest
from cassandra import ConsistencyLevel
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
from cassandra.policies import WhiteListRoundRobinPolicy
from cassandra.query import tuple_factory

from backend import downsample as ds
from backend.adapters.cassandra import parse_target
from tests.cluster.conftest import CLUSTER_HOSTS, services
from tests.integration.backend_rig import (
    Expected,
    Mode,
    assert_exactly_once,
    assert_history_matches,
    listening_url,
    make_readings,
    running_backend,
    spawn_backend,
    user_session,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(1800)

HOUR_MS = 3_600_000
BATCH = 150
FRONT_ROLES = ["ingest", "api", "history"]


@dataclass
class Sensor:
    """Posts batches in order to one of several API processes, as `tasker sensors` behind a load
    balancer would: on 503 it retries, on a refused connection it moves to the next process.
    Any other answer is an error the sensor would see, and is recorded."""

    http: aiohttp.ClientSession
    token: str
    fronts: list[str]
    posted: int = 0
    retries: int = 0
    errors: list[str] = field(default_factory=list)
    longest_pause_s: float = 0.0

    async def post_all(self, batches: list[list[dict]], pace_s: float) -> None:
        for batch in batches:
            await self._post(batch)
            self.posted += 1
            await asyncio.sleep(pace_s)

    async def _post(self, batch: list[dict]) -> None:
        began = time.monotonic()
        turn = self.posted  # batches take turns over the processes
        while True:
            front = self.fronts[turn % len(self.fronts)]
            try:
                async with self.http.post(
                    f"{front}/api/v1/readings",
                    json={"readings": batch},
                    headers={"Authorization": f"Bearer {self.token}"},
                ) as response:
                    status, text = response.status, await response.text()
            except aiohttp.ClientError:
                status, text = 0, "connection failed"
                turn += 1
            if status == 202:
                self.longest_pause_s = max(self.longest_pause_s, time.monotonic() - began)
                return
            if status not in (0, 503):
                self.errors.append(f"{status} from {front}: {text[:300]}")
                return
            self.retries += 1
            if time.monotonic() - began > 300:
                self.errors.append(f"no 202 within 300 s; last: {status} {text[:300]}")
                return
            await asyncio.sleep(0.2)


async def until(condition, what: str, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout_s:.0f} s"
        await asyncio.sleep(0.1)


def rabbitmq_node_of(backend) -> str:
    """The cluster node (`rabbitmq-2`) the backend's broker connection is on right now."""
    host = backend.broker._connection.url.host
    return f"rabbitmq-{CLUSTER_HOSTS.index(host) + 1}"


def read_from_each_node(
    cassandra_url: str, series: list[tuple[str, str]], days: list[int]
) -> dict[str, dict[tuple[str, str], dict[int, float]]]:
    """For each Cassandra node: every raw reading of the series, read at ONE through that node
    alone (the cluster's snitch has a node answer such a read from its own replica, checked with
    query tracing when this test was written)."""
    target = parse_target(cassandra_url)
    cluster = Cluster(target.hosts, port=target.port, protocol_version=5)
    try:
        # No speculative read of another replica when this one is slow: it would hide a gap.
        cluster.connect().execute(
            f"ALTER TABLE {target.keyspace}.raw_minutes WITH speculative_retry = 'NONE'", timeout=60
        )
    finally:
        cluster.shutdown()
    out = {}
    for host in target.hosts:
        only = ExecutionProfile(
            load_balancing_policy=WhiteListRoundRobinPolicy([host]),
            consistency_level=ConsistencyLevel.ONE,
            row_factory=tuple_factory,
        )
        cluster = Cluster([host], port=target.port, protocol_version=5, execution_profiles={EXEC_PROFILE_DEFAULT: only})
        try:
            session = cluster.connect()
            select = session.prepare(
                f"SELECT points FROM {target.keyspace}.raw_minutes WHERE server_id = ? AND metric = ? AND day = ?"
            )
            found: dict[tuple[str, str], dict[int, float]] = {}
            for server_id, metric in series:
                readings = found.setdefault((server_id, metric), {})
                for day in days:
                    for (points,) in session.execute(select, (server_id, metric, day), timeout=30):
                        readings.update({day * ds.DAY_MS + ts: v for ts, v in (points or {}).items()})
            out[host] = found
        finally:
            cluster.shutdown()
    return out


async def test_ingest_goes_on_through_node_crashes_and_every_reading_is_stored_once(cluster: Mode, tmp_path):
    now = int(time.time() * 1000)
    start = now - now % HOUR_MS - 3 * HOUR_MS
    end = start + 2 * HOUR_MS
    killed: list[str] = []
    spawned = []
    async with running_backend(cluster, FRONT_ROLES) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(4)]
        readings = make_readings(servers, start, 2_400, 2_000, seed=16)  # 80 min per server
        expected = Expected()
        expected.add(readings)
        batches = [readings[i : i + BATCH] for i in range(0, len(readings), BATCH)]

        packagers = [await spawn_backend(cluster, ["packager"], tmp_path / f"packager-{i}.log") for i in (1, 2)]
        front_b = await spawn_backend(cluster, FRONT_ROLES, tmp_path / "front-b.log")
        spawned += [*packagers, front_b]
        sensor = Sensor(http, api.token, [url, listening_url(front_b.log())])
        posting = asyncio.create_task(sensor.post_all(batches, pace_s=0.3))
        try:
            await until(lambda: sensor.posted >= 8, "the first batches")
            await asyncio.to_thread(services, "kill", "cassandra-2")
            killed.append("cassandra-2")
            await until(lambda: sensor.posted >= 16, "ingest with a Cassandra node down")
            packagers[0].kill()  # SIGKILL, holding unacked messages
            await until(lambda: sensor.posted >= 22, "ingest with a packager gone")
            rabbit = rabbitmq_node_of(backend)
            await asyncio.to_thread(services, "kill", rabbit)
            killed.append(rabbit)
            await until(lambda: sensor.posted >= 30, "ingest with the backend's RabbitMQ node down")
            assert rabbitmq_node_of(backend) != rabbit, "the backend did not move to another RabbitMQ node"
            front_b.kill()
            await until(lambda: sensor.posted >= 36, "ingest with an API process gone")

            # Back again: the nodes rejoin their clusters; new packager and API processes.
            await asyncio.to_thread(services, "start", rabbit)
            await asyncio.to_thread(services, "start", "cassandra-2")
            killed.clear()
            packagers.append(await spawn_backend(cluster, ["packager"], tmp_path / "packager-3.log"))
            front_c = await spawn_backend(cluster, FRONT_ROLES, tmp_path / "front-c.log")
            spawned += [packagers[-1], front_c]
            sensor.fronts.append(listening_url(front_c.log()))
            await asyncio.wait_for(posting, 900)
        finally:
            posting.cancel()
            for name in killed:
                await asyncio.to_thread(services, "start", name)

        try:
            assert sensor.errors == [], "a sensor saw errors"
            assert sensor.posted == len(batches)
            found = await wait_until_stored(api, expected, start, end, timeout_s=300)
            assert_exactly_once(found, expected)
            for (server_id, metric), series in expected.series.items():
                for points in (2, 120):
                    assert_history_matches(await api.history(server_id, metric, start, end, points), series)

            # Every node holds every reading once the killed one is back (hints replayed).
            days = sorted({ts // ds.DAY_MS for ts in range(start, end, HOUR_MS)} | {(end - 1) // ds.DAY_MS})
            deadline = time.monotonic() + 600
            while True:
                per_node = await asyncio.to_thread(
                    read_from_each_node, cluster.settings.timeseries_url, list(expected.series), days
                )
                differing = [host for host, found_there in per_node.items() if found_there != expected.series]
                if not differing or time.monotonic() > deadline:
                    break
                await asyncio.sleep(5)
            for host, found_there in per_node.items():
                missing = sum(len(set(s) - set(found_there.get(k, {}))) for k, s in expected.series.items())
                assert found_there == expected.series, f"node {host} lacks {missing} readings or differs"
            print(
                f"{expected.total} readings in {len(batches)} batches: stored once and on every node; "
                f"the sensor retried {sensor.retries} times, its longest wait for a 202 was "
                f"{sensor.longest_pause_s:.1f} s"
            )
        finally:
            for process in spawned:
                process.stop()
