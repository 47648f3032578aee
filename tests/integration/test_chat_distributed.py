"""Chat across two `tasker backend --role api` processes, as behind a load balancer: they share
the real RabbitMQ (a name prefix of this test's own) and a MongoDB registry (FerretDB, a
database of this test's own), and nothing else."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from urllib.parse import urlsplit

import aio_pika
import aiohttp
import pytest
from pymongo import AsyncMongoClient

from backend.bootstrap import open_registry
from backend.services.auth import AuthService
from backend.services.chat import CHAT_CHANNEL
from tasker.config import Settings
from tests.integration.backend_rig import (
    Mode,
    delete_rabbitmq_names,
    listening_url,
    spawn_backend,
)
from tests.integration.test_chat import ChatClient, texts

pytestmark = [pytest.mark.timeout(180), pytest.mark.services]


@pytest.fixture
async def shared(amqp_url, mongodb_url, tmp_path):
    """Settings two api processes share: RabbitMQ with a prefix and a MongoDB database, both
    deleted afterwards; each process keeps its own (unused by chat) time-series file."""
    suffix = uuid.uuid4().hex[:8]
    base = urlsplit(mongodb_url)
    database = f"{base.path.strip('/') or 'tasker_test'}_chat_{suffix}"
    registry_url = base._replace(path=f"/{database}").geturl()
    prefix = f"tasker-chat-{suffix}"
    mode = Mode(
        "distributed",
        Settings(broker_url=amqp_url, timeseries_url=f"sqlite:///{tmp_path}/ts.db", registry_url=registry_url),
        queue_prefix=prefix,
    )
    yield mode
    await delete_rabbitmq_names(amqp_url, prefix)
    connection = await aio_pika.connect(amqp_url, timeout=5)
    async with connection:
        channel = await connection.channel()
        await channel.exchange_delete(f"{prefix}.events.{CHAT_CHANNEL}")
    client = AsyncMongoClient(mongodb_url, serverSelectionTimeoutMS=5000)
    try:
        await client.drop_database(database)
    finally:
        await client.close()


async def add_users(registry_url: str, *roles: str) -> list[tuple[str, str]]:
    """(username, password) of a new user per role, written straight into the shared registry."""
    registry = open_registry(registry_url)
    await registry.start()
    try:
        auth = AuthService(registry)
        users = []
        for role in roles:
            name, password = f"{role}-{secrets.token_hex(3)}", secrets.token_urlsafe(12)
            await auth.add_user(name, role, password)
            users.append((name, password))
        return users
    finally:
        await registry.close()


async def chat_client(
    http: aiohttp.ClientSession, url: str, user: tuple[str, str], since: dict[str, int] | None = None
) -> ChatClient:
    async with http.post(f"{url}/api/v1/auth/login", json={"username": user[0], "password": user[1]}) as r:
        assert r.status == 200, await r.text()
        token = (await r.json())["token"]
    client = ChatClient(url, token)
    await client.open(since)
    return client


async def test_messages_presence_and_reconnects_cross_between_two_api_processes(shared, tmp_path):
    alice, bob, eve = await add_users(shared.settings.registry_url, "sysadmin", "sysadmin", "engineer")
    one = await spawn_backend(
        shared, ["api"], tmp_path / "api-1.log", {"TASKER_TIMESERIES_URL": f"sqlite:///{tmp_path}/ts-1.db"}
    )
    two = await spawn_backend(
        shared, ["api"], tmp_path / "api-2.log", {"TASKER_TIMESERIES_URL": f"sqlite:///{tmp_path}/ts-2.db"}
    )
    clients: list[ChatClient] = []
    try:
        url_one, url_two = listening_url(one.log()), listening_url(two.log())
        async with aiohttp.ClientSession() as http:
            a = await chat_client(http, url_one, alice)
            b = await chat_client(http, url_two, bob)
            clients += [a, b]
            e = await chat_client(http, url_two, eve)
            clients.append(e)

            # The engineer connected to the other process shows up as online for alice.
            presence = await a.next("chat.presence", lambda f: eve[0] in {u["username"] for u in f["online"]})
            assert {u["username"] for u in presence["online"]} == {eve[0]}

            # Alice (process one) -> the engineer (process two), and back; never to bob.
            for i in range(3):
                await a.say(f"from one {i}")
            assert texts(await e.messages(3)) == [f"from one {i}" for i in range(3)]
            await e.say("from two", conversation=alice[0])
            assert texts(await a.messages(4)) == [f"from one {i}" for i in range(3)] + ["from two"]
            assert await b.quiet() == []

            # Both sides write at once: everyone sees the same consecutive ids in the same order.
            keys = [f"a{i}" for i in range(4)] + [f"e{i}" for i in range(4)]
            await asyncio.gather(
                *(a.send_frame({"type": "chat.send", "text": k, "client_key": k}) for k in keys[:4]),
                *(
                    e.send_frame({"type": "chat.send", "text": k, "client_key": k, "conversation": alice[0]})
                    for k in keys[4:]
                ),
            )
            seen_a, seen_e = await a.messages(8), await e.messages(9)
            assert [m["id"] for m in seen_a] == list(range(5, 13))
            assert seen_e[1:] == seen_a and sorted(texts(seen_a)) == sorted(keys)

            # Process one dies; alice reconnects to process two, naming the last id she saw.
            one.kill()
            await e.say("did you get that?", conversation=alice[0])
            moved = await chat_client(http, url_two, alice, since={alice[0]: 10})
            clients.append(moved)
            got = await moved.messages(3)
            assert [m["id"] for m in got] == [11, 12, 13] and got[-1]["text"] == "did you get that?"
            assert await moved.quiet() == []

            # History written through both processes is complete.
            await moved.send_frame({"type": "chat.history", "limit": 100})
            history = (await moved.next("chat.history"))["messages"]
            assert [m["id"] for m in history] == list(range(1, 14))
            # Timestamps follow the ids, except within the burst written through both processes
            # at once, where each process stamps its own (the ids give the order there).
            ts = {m["id"]: m["ts"] for m in history}
            burst = [ts[i] for i in range(5, 13)]
            assert [ts[i] for i in range(1, 5)] == sorted(ts[i] for i in range(1, 5))
            assert ts[4] <= min(burst) and max(burst) <= ts[13]
    finally:
        for client in clients:
            await client.close()
        one.kill()
        two.stop()
