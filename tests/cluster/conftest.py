"""The three-node cluster of `compose/local/services up --nodes 3`, for `scripts/test-cluster`.

These tests kill and restart cluster nodes and take minutes on a small machine, so the regular
suite (`scripts/test`, plain `pytest`) does not collect them: `scripts/test-cluster` sets
TASKER_CLUSTER_TESTS=1 after bringing the cluster up. The single nodes are not touched.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tasker.config import Settings
from tests.integration.backend_rig import REPO, Mode, delete_rabbitmq_names

if os.environ.get("TASKER_CLUSTER_TESTS") != "1":
    collect_ignore_glob = ["test_*.py"]

SERVICES = str(REPO / "compose" / "local" / "services")
CLUSTER_HOSTS = ("127.0.0.11", "127.0.0.12", "127.0.0.13")


def services(*args: str) -> str:
    """Run `compose/local/services ARGS`; its output, or a failure naming what it said."""
    result = subprocess.run([SERVICES, *args], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"services {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def cluster_amqp_url() -> str:
    return os.environ.get("TASKER_CLUSTER_AMQP_URL", f"amqp://guest:guest@{','.join(CLUSTER_HOSTS)}/")


@pytest.fixture(scope="session")
def cluster_cassandra_url() -> str:
    return os.environ.get(
        "TASKER_CLUSTER_CASSANDRA_URL", f"cassandra://{','.join(CLUSTER_HOSTS)}/tasker_cluster?replication=3"
    )


@pytest.fixture
async def cluster(cluster_amqp_url: str, cluster_cassandra_url: str, mongodb_url: str) -> AsyncIterator[Mode]:
    """A backend configuration over the cluster with a keyspace, database and queue prefix of its
    own, all deleted afterwards."""
    suffix = uuid.uuid4().hex[:10]
    parts = urlsplit(cluster_cassandra_url)
    keyspace = f"{parts.path.strip('/')}_{suffix}"
    cassandra = parts._replace(path=f"/{keyspace}").geturl()
    mongo_parts = urlsplit(mongodb_url)
    database = f"{mongo_parts.path.strip('/') or 'tasker_test'}_cluster_{suffix}"
    mongodb = mongo_parts._replace(path=f"/{database}").geturl()
    prefix = f"tasker-cluster-{suffix}"
    yield Mode(
        "cluster",
        Settings(broker_url=cluster_amqp_url, timeseries_url=cassandra, registry_url=mongodb),
        queue_prefix=prefix,
    )

    from cassandra.cluster import Cluster
    from pymongo import MongoClient

    from backend.adapters.cassandra import parse_target
    from backend.adapters.rabbitmq import parse_broker_url

    target = parse_target(cassandra)
    session_cluster = Cluster(target.hosts, port=target.port, protocol_version=5)
    try:
        session_cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        session_cluster.shutdown()
    client = MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(database)
    finally:
        client.close()
    await delete_rabbitmq_names(parse_broker_url(cluster_amqp_url).urls[0], prefix)
