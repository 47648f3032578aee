"""The sender through outages: buffered, bounded, retried with backoff, never resent once accepted."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web

from sensors.sender import ReadingSender, SenderRefused, sensor_backoff
from tasker.client import TaskerClient

FAST = sensor_backoff(0.01, 0.05)


class HeldPost:
    """A post the endpoint holds until the test answers it, so the test decides what happens meanwhile."""

    def __init__(self, batch: list[dict]) -> None:
        self.batch = batch
        self.answered: asyncio.Future[tuple[int, dict]] = asyncio.get_running_loop().create_future()

    @property
    def values(self) -> list[float]:
        return values(self.batch)

    def answer(self, status: int, body: dict | None = None) -> None:
        self.answered.set_result((status, body if body is not None else {"error": f"answered {status}"}))


class ReadingsEndpoint:
    """`POST /api/v1/readings` whose next answers are scripted; records every batch it sees."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict]] = []  # (status, body) answered in order, then 202s
        self.batches: list[list[dict]] = []  # every batch received, whatever the answer
        self.accepted: list[dict] = []
        self.held: asyncio.Queue[HeldPost] | None = None  # set by hold(): the test answers each post
        self.holding: list[HeldPost] = []
        self.runner: web.AppRunner | None = None
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    async def handle(self, request: web.Request) -> web.Response:
        batch = (await request.json())["readings"]
        self.batches.append(batch)
        if self.held is not None:
            post = HeldPost(batch)
            self.holding.append(post)
            self.held.put_nowait(post)
            status, body = await post.answered
            if status == 202:
                self.accepted.extend(batch)
            return web.json_response(body, status=status)
        if self.script:
            status, body = self.script.pop(0)
            return web.json_response(body, status=status)
        self.accepted.extend(batch)
        return web.json_response({"accepted": len(batch)}, status=202)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/readings", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    def hold(self) -> None:
        """From now on every post waits for the test's answer (see `next_post`)."""
        self.held = asyncio.Queue()

    async def next_post(self) -> HeldPost:
        assert self.held is not None
        return await asyncio.wait_for(self.held.get(), 5)

    async def stop(self) -> None:
        for post in self.holding:  # a failed test must not leave the server waiting on a handler
            if not post.answered.done():
                post.answer(503)
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


class PostsEnded:
    """The sender's client, telling the test when a post has ended (so it waits on that, not on time)."""

    def __init__(self, api: TaskerClient) -> None:
        self.api = api
        self.base_url = api.base_url
        self.ended: asyncio.Queue[None] = asyncio.Queue()

    async def post_readings_body(self, body: bytes) -> int:
        try:
            return await self.api.post_readings_body(body)
        finally:
            self.ended.put_nowait(None)

    async def next_end(self) -> None:
        """Wait for a post that ends from now on. The sender has handled its answer by the time this returns:
        it goes on without yielding until its backoff sleep, and this wakes only after that."""
        while not self.ended.empty():
            self.ended.get_nowait()
        await asyncio.wait_for(self.ended.get(), 5)


@pytest.fixture
async def endpoint():
    ep = ReadingsEndpoint()
    await ep.start()
    yield ep
    await ep.stop()


def items(n: int, start: int = 0) -> list[tuple[str, str, int, float]]:
    return [("srv_a", "power", 1_800_000_000_000 + 1000 * i, float(i)) for i in range(start, start + n)]


def values(readings: list[dict]) -> list[float]:
    return [r["value"] for r in readings]


def accounted(sender: ReadingSender) -> int:
    """Every submitted reading is in exactly one of these counts."""
    s = sender.stats
    return s.sent + s.buffered + s.dropped + s.dropping + s.rejected


async def running(sender: ReadingSender):
    task = asyncio.create_task(sender.run())
    await asyncio.sleep(0)
    return task


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_readings_arrive_in_batches_in_order(endpoint):
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, batch_size=4, backoff=FAST)
        task = await running(sender)
        sender.submit(items(10))
        assert await sender.drain(5)
        await stop(task)
    assert [r["value"] for r in endpoint.accepted] == [float(i) for i in range(10)]
    assert max(len(b) for b in endpoint.batches) <= 4
    assert endpoint.accepted[0] == {"server_id": "srv_a", "metric": "power", "ts": 1_800_000_000_000, "value": 0.0}
    assert (sender.stats.sent, sender.stats.buffered, sender.stats.dropped) == (10, 0, 0)


async def test_503_is_retried_and_the_batch_arrives_once(endpoint):
    endpoint.script = [(503, {"error": "broker unavailable"}), (503, {"error": "broker unavailable"})]
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, backoff=FAST)
        task = await running(sender)
        sender.submit(items(5))
        assert await sender.drain(5)
        await stop(task)
    assert len(endpoint.batches) == 3
    assert [r["value"] for r in endpoint.accepted] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert sender.stats.sent == 5
    assert "broker unavailable" in sender.stats.last_error


async def test_backend_down_then_back_delivers_everything_buffered_once(endpoint):
    await endpoint.stop()
    async with TaskerClient(endpoint.url, "tik_x") as api:
        client = PostsEnded(api)
        sender = ReadingSender(client, batch_size=3, backoff=FAST)
        task = await running(sender)
        sender.submit(items(4))
        await client.next_end()
        sender.submit(items(3, start=4))
        await client.next_end()
        assert sender.stats.sent == 0 and sender.stats.buffered == 7
        assert "connection refused" in sender.stats.last_error
        await endpoint.start()
        assert await sender.drain(5)
        await stop(task)
    values = [r["value"] for r in endpoint.accepted]
    assert values == [float(i) for i in range(7)]  # in order, each once
    assert sender.stats.sent == 7


async def test_a_full_buffer_drops_the_oldest_and_counts_them(endpoint):
    await endpoint.stop()
    async with TaskerClient(endpoint.url, "tik_x") as api:
        client = PostsEnded(api)
        sender = ReadingSender(client, max_buffer=5, backoff=FAST)
        task = await running(sender)
        for i in range(8):
            # A reading lands while a post is in flight or during the backoff after one, as it happens;
            # either way the post in flight has failed (and been put back) before the next reading.
            sender.submit(items(1, start=i))
            await client.next_end()
        assert (sender.stats.dropped, sender.stats.dropping, sender.stats.buffered) == (3, 0, 5)
        await endpoint.start()
        assert await sender.drain(5)
        await stop(task)
    assert values(endpoint.accepted) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert "dropped 3" in sender.stats.line()


@pytest.mark.parametrize(
    ("newer", "dropped_meanwhile", "retried", "accepted"),
    [
        (3, 0, [3.0, 4.0, 5.0], [3.0, 4.0, 5.0, 6.0, 7.0]),
        (5, 2, [5.0, 6.0, 7.0], [5.0, 6.0, 7.0, 8.0, 9.0]),  # over by more than the batch in flight
    ],
)
async def test_an_overflow_while_a_post_fails_drops_the_oldest_which_were_in_flight(
    endpoint, newer, dropped_meanwhile, retried, accepted
):
    endpoint.hold()
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, max_buffer=5, batch_size=3, backoff=FAST)
        task = await running(sender)
        sender.submit(items(5))
        post = await endpoint.next_post()
        assert post.values == [0.0, 1.0, 2.0]
        for i in range(5, 5 + newer):
            sender.submit(items(1, start=i))
        # 0, 1 and 2 are the oldest but cannot be recalled: they go if their post fails.
        assert (sender.stats.buffered, sender.stats.dropped, sender.stats.dropping) == (5, dropped_meanwhile, 3)
        assert f"dropped {dropped_meanwhile} (+3 unless the post in flight is accepted)" in sender.stats.line()
        assert accounted(sender) == 5 + newer
        post.answer(503)
        post = await endpoint.next_post()
        assert post.values == retried
        assert (sender.stats.buffered, sender.stats.dropped, sender.stats.dropping) == (5, 3 + dropped_meanwhile, 0)
        post.answer(202)
        (await endpoint.next_post()).answer(202)
        assert await sender.drain(5)
        await stop(task)
    assert values(endpoint.accepted) == accepted
    assert (sender.stats.sent, sender.stats.buffered, sender.stats.dropped) == (5, 0, 3 + dropped_meanwhile)
    assert "unless" not in sender.stats.line()


async def test_readings_over_the_bound_in_an_accepted_post_are_sent_not_dropped(endpoint):
    endpoint.hold()
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, max_buffer=5, batch_size=3, backoff=FAST)
        task = await running(sender)
        sender.submit(items(5))
        post = await endpoint.next_post()
        sender.submit(items(3, start=5))
        assert (sender.stats.buffered, sender.stats.dropping) == (5, 3)
        post.answer(202)
        post = await endpoint.next_post()
        assert post.values == [3.0, 4.0, 5.0]
        assert (sender.stats.sent, sender.stats.buffered, sender.stats.dropped, sender.stats.dropping) == (3, 5, 0, 0)
        post.answer(202)
        (await endpoint.next_post()).answer(202)
        assert await sender.drain(5)
        await stop(task)
    assert values(endpoint.accepted) == [float(i) for i in range(8)]
    assert (sender.stats.sent, sender.stats.dropped) == (8, 0)


@pytest.mark.parametrize(
    ("answer", "rejected", "dropped"),
    [
        ({"error": "1 of 3 readings are invalid", "details": [{"index": 1, "field": "value", "reason": "bad"}]}, 1, 2),
        ({"error": "malformed JSON body"}, 3, 0),
    ],
)
async def test_readings_over_the_bound_in_a_rejected_post_are_counted_once(endpoint, answer, rejected, dropped):
    endpoint.hold()
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, max_buffer=5, batch_size=3, backoff=FAST)
        task = await running(sender)
        sender.submit(items(5))
        post = await endpoint.next_post()
        sender.submit(items(3, start=5))
        post.answer(400, answer)
        post = await endpoint.next_post()
        assert post.values == [3.0, 4.0, 5.0]  # the valid rest of the rejected post was over the bound
        assert (sender.stats.rejected, sender.stats.dropped, sender.stats.dropping) == (rejected, dropped, 0)
        assert accounted(sender) == 8
        post.answer(202)
        (await endpoint.next_post()).answer(202)
        assert await sender.drain(5)
        await stop(task)
    assert values(endpoint.accepted) == [3.0, 4.0, 5.0, 6.0, 7.0]
    assert accounted(sender) == 8 and sender.stats.sent == 5


async def test_a_400_naming_items_drops_only_those_and_is_not_retried(endpoint, caplog):
    endpoint.script = [
        (
            400,
            {
                "error": "1 of 4 readings are invalid; nothing was accepted",
                "details": [{"index": 2, "field": "value", "reason": "must be >= 0 for power (W)"}],
            },
        )
    ]
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, backoff=FAST)
        task = await running(sender)
        sender.submit(items(4))
        assert await sender.drain(5)
        await asyncio.sleep(0.05)
        await stop(task)
    assert len(endpoint.batches) == 2  # the rejected one, then the valid rest once
    assert [r["value"] for r in endpoint.accepted] == [0.0, 1.0, 3.0]
    assert (sender.stats.sent, sender.stats.rejected) == (3, 1)
    assert "item 2 value must be >= 0 for power (W)" in sender.stats.last_error
    assert "must be >= 0 for power (W)" in caplog.text


async def test_a_400_without_item_details_drops_the_batch_without_retry(endpoint):
    endpoint.script = [(400, {"error": "malformed JSON body"})]
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, backoff=FAST)
        task = await running(sender)
        sender.submit(items(3))
        assert await sender.drain(5)
        await asyncio.sleep(0.05)
        await stop(task)
    assert len(endpoint.batches) == 1 and endpoint.accepted == []
    assert (sender.stats.sent, sender.stats.rejected) == (0, 3)
    assert "malformed JSON body" in sender.stats.line()


async def test_413_halves_the_batch_and_loses_nothing(endpoint):
    endpoint.script = [(413, {"error": "batch over 2 readings"})]
    async with TaskerClient(endpoint.url, "tik_x") as api:
        sender = ReadingSender(api, batch_size=4, backoff=FAST)
        task = await running(sender)
        sender.submit(items(4))
        assert await sender.drain(5)
        await stop(task)
    assert [len(b) for b in endpoint.batches] == [4, 2, 2]
    assert [r["value"] for r in endpoint.accepted] == [0.0, 1.0, 2.0, 3.0]


async def test_a_refused_key_stops_the_sender_with_what_to_do(endpoint):
    endpoint.script = [(401, {"error": "invalid ingest key"})]
    async with TaskerClient(endpoint.url, "tik_bad") as api:
        sender = ReadingSender(api, backoff=FAST)
        sender.submit(items(2))
        with pytest.raises(SenderRefused, match="invalid ingest key.*tasker keys create"):
            await asyncio.wait_for(sender.run(), 5)
    assert sender.stats.buffered == 2 and sender.stats.sent == 0


def test_backoff_grows_to_its_cap_and_resets():
    backoff = sensor_backoff(1.0, 8.0)
    delays = [backoff.failed() for _ in range(6)]
    assert 0.8 <= delays[0] <= 1.2
    assert 1.6 <= delays[1] <= 2.4
    assert all(d <= 8.0 * 1.2 for d in delays) and delays[-1] >= 8.0 * 0.8
    backoff.succeeded()
    assert backoff.failed() <= 1.2


def test_the_encoded_batch_is_the_wire_form():
    from sensors.sender import encode_batch

    assert json.loads(encode_batch([("s", "co2", 5, 1.5)])) == {
        "readings": [{"server_id": "s", "metric": "co2", "ts": 5, "value": 1.5}]
    }
