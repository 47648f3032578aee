"""URLs that name a cluster: several Cassandra or RabbitMQ hosts, and how to use them.

What an operator writes in TASKER_TIMESERIES_URL / TASKER_BROKER_URL must either say what the
backend will do (which hosts, how many replicas, which consistency, which queue type) or be
refused with a message naming the setting's problem.
"""

from __future__ import annotations

import pytest
from cassandra import ConsistencyLevel

from backend.adapters.cassandra import CassandraTimeSeries, parse_target, replication_map
from backend.adapters.rabbitmq import RabbitMQBroker, parse_broker_url


def test_a_cassandra_cluster_url_names_its_hosts_replication_and_consistency():
    target = parse_target("cassandra://127.0.0.2,127.0.0.3,127.0.0.4:9043/tasker?replication=3")
    assert target.hosts == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert (target.port, target.keyspace, target.replication) == (9043, "tasker", 3)
    assert target.consistency == ConsistencyLevel.QUORUM


def test_cassandra_defaults_to_quorum_and_leaves_replication_to_the_keyspace():
    target = parse_target("cassandra://db/tasker")
    assert (target.hosts, target.port, target.replication) == (["db"], 9042, None)
    assert target.consistency == ConsistencyLevel.QUORUM


@pytest.mark.parametrize("level", ["ONE", "local_quorum", "ALL"])
def test_cassandra_consistency_is_chosen_by_name(level):
    target = parse_target(f"cassandra://a,b,c/tasker?replication=3&consistency={level}")
    assert target.consistency == getattr(ConsistencyLevel, level.upper())


def test_the_keyspace_is_replicated_in_every_data_centre():
    assert replication_map(3) == {"class": "NetworkTopologyStrategy", "replication_factor": "3"}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("cassandra://a,b/tasker?replication=0", "replication='0' is not a number of replicas"),
        ("cassandra://a,b/tasker?replication=three", "replication='three'"),
        ("cassandra://a,b/tasker?consistency=SOME", "consistency='SOME' is not one of"),
        ("cassandra://a,b/tasker?replicas=3", "unknown option replicas"),
        ("cassandra://a/tasker?replication=2&replication=3", "replication given more than once"),
        ("cassandra://a:9042,b:9043/tasker", "all hosts must use the same port"),
    ],
)
def test_a_bad_cassandra_cluster_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match="time-series URL") as error:
        CassandraTimeSeries(url)
    assert problem in str(error.value)


def test_a_rabbitmq_cluster_url_gives_one_url_per_node_and_quorum_queues():
    target = parse_broker_url("amqp://tasker:s3cret@127.0.0.2,127.0.0.3:5673,[::1]/prod?heartbeat=5")
    assert target.urls == [
        "amqp://tasker:s3cret@127.0.0.2:5672/prod?heartbeat=5",
        "amqp://tasker:s3cret@127.0.0.3:5673/prod?heartbeat=5",
        "amqp://tasker:s3cret@[::1]:5672/prod?heartbeat=5",
    ]
    assert target.queue_type == "quorum"
    assert "s3cret" not in target.where and "127.0.0.3:5673" in target.where


def test_one_rabbitmq_host_keeps_classic_queues_unless_told_otherwise():
    assert parse_broker_url("amqp://guest:guest@127.0.0.1:5672/").queue_type == "classic"
    one = parse_broker_url("amqps://guest:guest@rabbit.internal/?queue_type=quorum")
    assert one.queue_type == "quorum"
    assert one.urls == ["amqps://guest:guest@rabbit.internal:5671/"]  # the option is ours, not aio-pika's
    assert parse_broker_url("amqp://a,b/?queue_type=classic").queue_type == "classic"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("amqp://a,,b/", "bad host ''"),
        ("amqp://a,b:0/", "bad host 'b:0'"),
        ("amqp://a,b/?queue_type=stream", "queue_type='stream'"),
    ],
)
def test_a_bad_rabbitmq_cluster_url_says_what_is_wrong(url, problem):
    with pytest.raises(ValueError, match="broker URL") as error:
        RabbitMQBroker(url)
    assert problem in str(error.value)
