"""The real services answer the way Tasker relies on: confirmed publishes and manual acks on a
durable queue, a Cassandra table partitioned per (server, metric, day), a unique MongoDB index.

These talk to the services `compose/local/services up` started; when one is missing they fail.
"""

from __future__ import annotations

import secrets
from urllib.parse import urlsplit

import aio_pika
import pamqp.commands
import pymongo
import pytest
from cassandra.cluster import Cluster


async def test_rabbitmq_confirmed_publish_and_manual_ack_on_durable_queue(amqp_url: str) -> None:
    queue_name = f"tasker-smoke-{secrets.token_hex(4)}"
    connection = await aio_pika.connect_robust(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queue = await channel.declare_queue(queue_name, durable=True)
        try:
            for i in range(3):
                confirmation = await channel.default_exchange.publish(
                    aio_pika.Message(f"reading-{i}".encode(), delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
                    routing_key=queue_name,
                )
                # With publisher confirms on, publish() returns the broker's Basic.Ack.
                assert isinstance(confirmation, pamqp.commands.Basic.Ack), confirmation

            # A message received but not acked is redelivered once its channel closes.
            consumer_channel = await connection.channel()
            first = await (await consumer_channel.get_queue(queue_name)).get(no_ack=False, timeout=5)
            assert first.body == b"reading-0"
            await consumer_channel.close()

            bodies = []
            for _ in range(3):
                message = await queue.get(no_ack=False, timeout=5)
                bodies.append((message.body, message.redelivered))
                await message.ack()
            assert sorted(b for b, _ in bodies) == [b"reading-0", b"reading-1", b"reading-2"]
            assert (b"reading-0", True) in bodies
            assert await queue.get(fail=False, timeout=5) is None
        finally:
            await queue.delete(if_unused=False, if_empty=False)


def test_cassandra_day_partitioned_table_round_trip(cassandra_url: str) -> None:
    parts = urlsplit(cassandra_url)
    keyspace = f"tasker_smoke_{secrets.token_hex(4)}"
    cluster = Cluster([parts.hostname], port=parts.port or 9042, connect_timeout=10)
    session = cluster.connect()
    try:
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        session.execute(
            f"""CREATE TABLE {keyspace}.readings (
                server_id text, metric text, day int, ts timestamp, value double,
                PRIMARY KEY ((server_id, metric, day), ts)
            ) WITH CLUSTERING ORDER BY (ts DESC)
              AND compaction = {{'class': 'TimeWindowCompactionStrategy',
                                 'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}}
              AND default_time_to_live = 86400"""
        )
        insert = session.prepare(
            f"INSERT INTO {keyspace}.readings (server_id, metric, day, ts, value) VALUES (?, ?, ?, ?, ?)"
        )
        day = 20_000
        base_ms = day * 86_400_000
        for i in range(5):
            session.execute(insert, ("srv_a", "power", day, base_ms + i * 1000, 100.0 + i))
        # Writing the same key again is an upsert: still five rows.
        session.execute(insert, ("srv_a", "power", day, base_ms, 100.0))
        session.execute(insert, ("srv_b", "power", day, base_ms, 7.0))
        rows = list(
            session.execute(
                f"SELECT ts, value FROM {keyspace}.readings WHERE server_id=%s AND metric=%s AND day=%s",
                ("srv_a", "power", day),
            )
        )
        assert [r.value for r in rows] == [104.0, 103.0, 102.0, 101.0, 100.0]  # newest first
        options = session.execute(
            "SELECT compaction FROM system_schema.tables WHERE keyspace_name=%s AND table_name='readings'",
            (keyspace,),
        ).one()
        assert options.compaction["class"].endswith("TimeWindowCompactionStrategy")
    finally:
        session.execute(f"DROP KEYSPACE IF EXISTS {keyspace}")
        cluster.shutdown()


def test_mongodb_insert_find_and_unique_index(mongodb_url: str) -> None:
    client = pymongo.MongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    db = client[f"tasker_smoke_{secrets.token_hex(4)}"]
    try:
        db.servers.create_index("name", unique=True)
        db.servers.insert_one({"_id": "srv_1", "name": "web-1", "pue": 1.4})
        assert db.servers.find_one({"name": "web-1"})["pue"] == 1.4
        with pytest.raises(pymongo.errors.DuplicateKeyError):
            db.servers.insert_one({"_id": "srv_2", "name": "web-1", "pue": 1.2})
        assert db.servers.count_documents({}) == 1
    finally:
        client.drop_database(db.name)
        client.close()
