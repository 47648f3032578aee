"""No accepted reading is lost to a bad neighbour.

A value a store cannot hold (1e308 W does not fit Cassandra's 32-bit float) used to be answered
202, then dead-lettered at the packager with every other sensor's readings that ingest had merged
into the same broker message. Two defences, each tested as the attack it stops:

- ingest refuses, whole and with the item named, any batch holding a value outside the metric's
  domain for that server, in both modes alike: what is accepted every store holds;
- should a refused value reach the packager anyway (a message published by something other than
  this ingest), only the refused readings go to the dead-letter queue, counted; the rest of the
  message is stored.
"""

from __future__ import annotations

import asyncio
import json
import random
import time

import aio_pika
import aiohttp
import orjson
import pytest

from backend.services.wire import encode_readings, queue_for
from tasker.domain import Reading
from tests.integration.backend_rig import (
    Expected,
    assert_exactly_once,
    assert_history_matches,
    make_readings,
    running_backend,
    user_session,
    wait_until_stored,
)

pytestmark = pytest.mark.timeout(300)

HOUR_MS = 3_600_000
MAX_WATTS = 400  # Api.add_server's default: power above 4,000 W is refused for these servers
POISON = (1e308, -1e308, 3.5e38, 1e10, 4_000.5, float("nan"), float("inf"))


def poison_value(rng: random.Random, metric: str) -> float:
    value = rng.choice(POISON)
    return 1.5e9 if metric == "co2" and value == 4_000.5 else value  # over co2's own ceiling


async def test_poison_mixed_into_sustained_load_loses_no_good_reading(mode):
    rng = random.Random(14)
    async with running_backend(mode) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        good_servers = [(await api.add_server())["id"] for _ in range(4)]
        bad_server = (await api.add_server())["id"]
        now = int(time.time() * 1000)
        start = now - now % HOUR_MS - 3 * HOUR_MS
        readings = make_readings(good_servers, start, 600, 3_000, seed=14)  # 30 min per server
        good_batches = [readings[i : i + 100] for i in range(0, len(readings), 100)]
        bad_batches = []
        for i in range(len(good_batches)):
            batch = make_readings([bad_server], start + i * 100_000, 50, 1_000, seed=100 + i)
            poisoned = rng.sample(range(len(batch)), rng.randint(1, 3))
            for index in poisoned:
                batch[index]["value"] = poison_value(rng, batch[index]["metric"])
            bad_batches.append((batch, sorted(poisoned)))

        async def good_sensor(batches):
            for batch in batches:
                await api.post_retrying(batch)

        async def bad_sensor():
            for batch, poisoned in bad_batches:
                # NaN and inf are not JSON: send the literals as a naive client would.
                body = aiohttp.payload.StringPayload(json.dumps({"readings": batch}), content_type="application/json")
                status, answer = await api.call("POST", "/api/v1/readings", data=body)
                assert status == 400, answer
                assert sorted({d["index"] for d in answer["details"]}) == poisoned, answer
                assert all(d["field"] == "value" for d in answer["details"]), answer

        # The good sensors post at the same time as the bad one, so ingest merges them.
        await asyncio.gather(bad_sensor(), *(good_sensor(good_batches[i::4]) for i in range(4)))
        expected = Expected()
        expected.add(readings)
        end = start + 2 * HOUR_MS
        found = await wait_until_stored(api, expected, start, end, timeout_s=120)
        assert_exactly_once(found, expected)
        for (server_id, metric), series in expected.series.items():
            assert_history_matches(await api.history(server_id, metric, start, end, 4), series)
        # Refused whole: not one reading of a poisoned batch was stored.
        for metric in ("power", "co2"):
            assert await api.all_raw(bad_server, metric, start, end) == []
        assert backend.broker.dead_lettered() == 0
        print(
            f"{mode.name}: {expected.total} good readings stored exactly once beside "
            f"{len(bad_batches)} poisoned batches refused whole"
        )


async def test_the_packager_dead_letters_only_the_readings_cassandra_refuses(distributed, amqp_url):
    rng = random.Random(15)
    async with running_backend(distributed) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        servers = [(await api.add_server())["id"] for _ in range(3)]
        now = int(time.time() * 1000)
        start = now - now % HOUR_MS - 3 * HOUR_MS
        good = [
            Reading(servers[i % 3], "power", start + i * 1_000, float(rng.randrange(0, 8_000)) / 4)
            for i in range(3_000)
        ]
        poison = [
            Reading(servers[i % 3], "power", start + 4 * HOUR_MS // 3 + i * 1_000, value)
            for i, value in enumerate((1e308, 3.5e38, -1e308, 1e39))
        ]
        # Messages as an older or foreign publisher might send them, bypassing ingest's checks:
        # each of the first four holds one reading Cassandra cannot store among 250 good ones.
        bodies = []
        for i in range(0, len(good), 250):
            part = good[i : i + 250]
            if i // 250 < len(poison):
                part = part[:100] + [poison[i // 250]] + part[100:]
            bodies.append(encode_readings("power", part, now))
        await asyncio.gather(*(backend.broker.publish_work(queue_for("power"), body) for body in bodies))

        expected = Expected()
        expected.add({"server_id": r.server_id, "metric": r.metric, "ts": r.ts_ms, "value": r.value} for r in good)
        end = start + 2 * HOUR_MS
        found = await wait_until_stored(api, expected, start, end, timeout_s=120)
        assert_exactly_once(found, expected)
        deadline = time.monotonic() + 30
        while backend.telemetry.readings_dead_lettered.value(metric="power") < len(poison):
            assert time.monotonic() < deadline, "the refused readings were not dead-lettered"
            await asyncio.sleep(0.2)
        assert backend.telemetry.readings_dead_lettered.value(metric="power") == len(poison)
        assert backend.telemetry.readings_stored.value(metric="power") == len(good)
        assert await backend.broker.queue_depth(queue_for("power")) == 0

        # The dead-letter queue holds exactly the refused readings, each alone with its reason.
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            dead = await channel.declare_queue(f"{distributed.queue_prefix}.dead-letter", passive=True)
            refused = []
            while (message := await dead.get(timeout=5, fail=False)) is not None:
                assert "32-bit float" in message.headers["x-tasker-reason"]
                refused += orjson.loads(message.body)["value"]
                await message.ack()
        assert sorted(refused) == sorted(r.value for r in poison)
