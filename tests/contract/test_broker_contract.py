"""The Broker port's contract, run over the embedded broker and the real RabbitMQ.

Both adapters must give the packager and the api the same guarantees: each work message handled
once by one of the competing consumers, redelivered when the handler fails, dead-lettered (and
counted) when it cannot be decoded, at most `prefetch` in flight per consumer; every event seen
by every subscriber. The RabbitMQ runs use a random name prefix per test and delete what they
declared, so parallel runs do not see each other's messages.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aio_pika
import pytest
from yarl import URL

from backend.adapters.memory_broker import MemoryBroker
from backend.adapters.rabbitmq import RabbitMQBroker
from backend.adapters.work_journal import JournalInUse
from backend.ports import Broker, Delivery, Unavailable, Undecodable

pytestmark = pytest.mark.timeout(60)

WAIT_S = 10.0


async def eventually(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Wait until `condition()` holds, or fail naming `what` did not happen."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


async def eventually_depth(broker: Broker, queue: str, expected: int) -> None:
    """RabbitMQ's counts trail the deliveries by a moment; poll until they settle."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while (depth := await broker.queue_depth(queue)) != expected:
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"queue_depth({queue!r}) stayed {depth}, expected {expected}")
        await asyncio.sleep(0.05)


@dataclass
class Brokers:
    """The broker under test, and a way to get a second one that shares its queues.

    For RabbitMQ a peer is another connection, as another process would have; for the embedded
    broker, which lives in one process, the peer is the same broker.
    """

    kind: str
    broker: Broker
    peer: Callable[[], Awaitable[Broker]]


class RabbitMQBrokers:
    """RabbitMQ brokers sharing one random name prefix; `close` deletes what they declared."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.prefix = f"tasker-test-{uuid.uuid4().hex[:8]}"
        self.started: list[RabbitMQBroker] = []

    async def make(self, url: str | None = None) -> RabbitMQBroker:
        broker = RabbitMQBroker(url or self.url, prefix=self.prefix, retry_backoff=0.01)
        await broker.start()
        self.started.append(broker)
        return broker

    async def close(self) -> None:
        queues: set[str] = set()
        exchanges: set[str] = set()
        for broker in self.started:
            await broker.close()
            declared_queues, declared_exchanges = broker.declared_names()
            queues |= declared_queues
            exchanges |= declared_exchanges
        assert all(name.startswith(self.prefix + ".") for name in queues | exchanges)
        connection = await aio_pika.connect(self.url)
        async with connection:
            channel = await connection.channel()
            for name in queues:
                await channel.queue_delete(name)
            for name in exchanges:
                await channel.exchange_delete(name)


@pytest.fixture
async def rabbitmq(amqp_url: str) -> AsyncIterator[RabbitMQBrokers]:
    brokers = RabbitMQBrokers(amqp_url)
    try:
        yield brokers
    finally:
        await brokers.close()


@pytest.fixture(params=["memory", "rabbitmq"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[Brokers]:
    if request.param == "memory":
        # Journaled, as `tasker backend` runs it.
        broker = MemoryBroker(retry_backoff=0.01, journal=request.getfixturevalue("tmp_path") / "queue.db")
        await broker.start()

        async def same() -> Broker:
            return broker

        yield Brokers("memory", broker, same)
        await broker.close()
        return

    rabbitmq = RabbitMQBrokers(request.getfixturevalue("amqp_url"))
    try:
        yield Brokers("rabbitmq", await rabbitmq.make(), rabbitmq.make)
    finally:
        await rabbitmq.close()


def queue_name() -> str:
    return f"readings.power-{uuid.uuid4().hex[:6]}"


# --- work queues ------------------------------------------------------------------------------


async def test_published_messages_reach_a_consumer_once_each(brokers: Brokers) -> None:
    broker = brokers.broker
    queue = queue_name()
    bodies = [f"batch-{i}".encode() for i in range(20)]
    for body in bodies:
        await broker.publish_work(queue, body)
    await eventually_depth(broker, queue, 20)

    seen: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        seen.append(delivery)

    await broker.consume_work(queue, handler, prefetch=5)
    await eventually(lambda: len(seen) >= 20, "all 20 messages handled")
    await asyncio.sleep(0.2)  # a duplicate would arrive now
    assert sorted(d.body for d in seen) == sorted(bodies)
    assert not any(d.redelivered for d in seen)
    await eventually_depth(broker, queue, 0)


async def test_competing_consumers_split_the_work_without_duplicates(brokers: Brokers) -> None:
    queue = queue_name()
    handled: dict[str, list[bytes]] = {"a": [], "b": []}

    def handler_for(name: str) -> Callable[[Delivery], Awaitable[None]]:
        async def handler(delivery: Delivery) -> None:
            await asyncio.sleep(0.005)  # slow enough that both consumers get a share
            handled[name].append(delivery.body)

        return handler

    await brokers.broker.consume_work(queue, handler_for("a"), prefetch=2)
    peer = await brokers.peer()
    await peer.consume_work(queue, handler_for("b"), prefetch=2)
    bodies = [str(i).encode() for i in range(100)]
    await asyncio.gather(*(brokers.broker.publish_work(queue, b) for b in bodies))

    await eventually(lambda: len(handled["a"]) + len(handled["b"]) >= 100, "100 messages handled")
    await asyncio.sleep(0.2)
    everything = handled["a"] + handled["b"]
    assert Counter(everything) == Counter(bodies), "a message was lost or handled twice"
    assert handled["a"] and handled["b"], "one consumer got all the work"


async def test_a_failing_handler_gets_the_message_again_and_nothing_is_lost(brokers: Brokers) -> None:
    broker = brokers.broker
    queue = queue_name()
    attempts: Counter[bytes] = Counter()
    redelivered: dict[bytes, bool] = {}
    done: list[bytes] = []

    async def flaky(delivery: Delivery) -> None:
        attempts[delivery.body] += 1
        if attempts[delivery.body] <= 2:
            raise ConnectionError("time-series store unreachable")
        redelivered[delivery.body] = delivery.redelivered
        done.append(delivery.body)

    await broker.consume_work(queue, flaky, prefetch=3)
    bodies = [f"m{i}".encode() for i in range(6)]
    for body in bodies:
        await broker.publish_work(queue, body)

    await eventually(lambda: len(done) >= 6, "every message handled after two failures")
    await asyncio.sleep(0.2)
    assert sorted(done) == sorted(bodies)
    assert all(attempts[b] == 3 for b in bodies)
    assert all(redelivered.values()), "a retried message was not flagged as redelivered"
    assert broker.dead_lettered() == 0
    await eventually_depth(broker, queue, 0)


async def test_an_undecodable_message_is_dead_lettered_and_counted(brokers: Brokers) -> None:
    broker = brokers.broker
    queue = queue_name()
    attempts: Counter[bytes] = Counter()
    good: list[bytes] = []

    async def strict(delivery: Delivery) -> None:
        attempts[delivery.body] += 1
        if delivery.body.startswith(b"garbage"):
            raise Undecodable("not JSON")
        good.append(delivery.body)

    await broker.consume_work(queue, strict, prefetch=2)
    for body in [b"ok-1", b"garbage-1", b"ok-2", b"garbage-2", b"ok-3"]:
        await broker.publish_work(queue, body)

    await eventually(lambda: len(good) >= 3, "the decodable messages handled")
    await eventually(lambda: broker.dead_lettered() >= 2, "two messages counted as dead-lettered")
    await asyncio.sleep(0.2)
    assert sorted(good) == [b"ok-1", b"ok-2", b"ok-3"]
    assert attempts[b"garbage-1"] == attempts[b"garbage-2"] == 1, "an undecodable message was retried"
    assert broker.dead_lettered() == 2
    await eventually_depth(broker, queue, 0)

    # The consumer keeps going after dead-lettering.
    await broker.publish_work(queue, b"ok-4")
    await eventually(lambda: b"ok-4" in good, "a message after the dead-lettered ones")


async def test_no_more_than_prefetch_messages_are_in_flight_per_consumer(brokers: Brokers) -> None:
    broker = brokers.broker
    queue = queue_name()
    release = asyncio.Event()
    in_flight = 0
    most = 0
    done = 0

    async def blocking(delivery: Delivery) -> None:
        nonlocal in_flight, most, done
        in_flight += 1
        most = max(most, in_flight)
        await release.wait()
        in_flight -= 1
        done += 1

    for i in range(10):
        await broker.publish_work(queue, str(i).encode())
    await broker.consume_work(queue, blocking, prefetch=3)

    await eventually(lambda: in_flight == 3, "three handler calls in flight")
    await asyncio.sleep(0.3)  # more would have been delivered by now
    assert most == 3
    # Unacked messages still count as waiting: nothing is acked yet.
    await eventually_depth(broker, queue, 10)

    release.set()
    await eventually(lambda: done == 10, "all ten messages handled")
    assert most == 3
    await eventually_depth(broker, queue, 0)


# --- events -----------------------------------------------------------------------------------


async def test_every_subscriber_gets_every_event_published_after_it_subscribed(brokers: Brokers) -> None:
    channel = f"live-{uuid.uuid4().hex[:6]}"
    received: dict[str, list[bytes]] = {"a": [], "b": []}

    def collect(name: str) -> Callable[[bytes], Awaitable[None]]:
        async def handler(body: bytes) -> None:
            received[name].append(body)

        return handler

    await brokers.broker.publish_event(channel, b"before anyone listened")
    await brokers.broker.subscribe_events(channel, collect("a"))
    peer = await brokers.peer()
    await peer.subscribe_events(channel, collect("b"))

    events = [f"reading-{i}".encode() for i in range(20)]
    for body in events:
        await brokers.broker.publish_event(channel, body)

    await eventually(lambda: len(received["a"]) >= 20 and len(received["b"]) >= 20, "20 events each")
    await asyncio.sleep(0.2)
    assert received["a"] == events, "subscriber a missed, repeated or reordered events"
    assert received["b"] == events, "subscriber b missed, repeated or reordered events"


async def test_events_on_another_channel_are_not_received(brokers: Brokers) -> None:
    suffix = uuid.uuid4().hex[:6]
    received: list[bytes] = []

    async def handler(body: bytes) -> None:
        received.append(body)

    await brokers.broker.subscribe_events(f"chat-{suffix}", handler)
    await brokers.broker.publish_event(f"live-{suffix}", b"live reading")
    await brokers.broker.publish_event(f"chat-{suffix}", b"hello")
    await eventually(lambda: received == [b"hello"], "the chat event alone")
    await asyncio.sleep(0.2)
    assert received == [b"hello"]


async def test_ping_answers_when_the_broker_is_up(brokers: Brokers) -> None:
    await brokers.broker.ping()


# --- embedded broker only ---------------------------------------------------------------------


async def test_memory_publisher_waits_while_the_queue_is_full(tmp_path: Path) -> None:
    broker = MemoryBroker(max_depth=3, journal=tmp_path / "queue.db")
    await broker.start()
    try:
        for i in range(3):
            await broker.publish_work("power", str(i).encode())
        fourth = asyncio.create_task(broker.publish_work("power", b"3"))
        await asyncio.sleep(0.1)
        assert not fourth.done(), "publish_work did not wait although the queue was full"
        assert await broker.queue_depth("power") == 3

        handled: list[bytes] = []

        async def handler(delivery: Delivery) -> None:
            handled.append(delivery.body)

        await broker.consume_work("power", handler, prefetch=1)
        await asyncio.wait_for(fourth, WAIT_S)
        await eventually(lambda: len(handled) == 4, "all four messages handled")
        assert handled == [b"0", b"1", b"2", b"3"]
    finally:
        await broker.close()


@pytest.mark.parametrize("journaled", [True, False])
async def test_memory_close_puts_messages_in_flight_back(tmp_path: Path, journaled: bool) -> None:
    broker = MemoryBroker(journal=tmp_path / "queue.db" if journaled else None)
    await broker.start()
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()

    await broker.publish_work("power", b"only")
    await broker.consume_work("power", stuck, prefetch=1)
    await asyncio.wait_for(started.wait(), WAIT_S)
    await broker.close()
    assert await broker.queue_depth("power") == 1

    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery)

    await broker.start()
    await broker.consume_work("power", handler, prefetch=1)
    await eventually(lambda: len(handled) == 1, "the message handed out again")
    assert handled[0].body == b"only" and handled[0].redelivered
    await broker.close()


def test_memory_rejects_a_prefetch_below_one() -> None:
    with pytest.raises(ValueError, match="prefetch"):
        asyncio.run(MemoryBroker().consume_work("power", lambda d: asyncio.sleep(0), prefetch=0))


async def collect_all(broker: MemoryBroker, queue: str, expected: int) -> list[Delivery]:
    """Consume `queue` until `expected` messages were handled, then a moment more for extras."""
    handled: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        handled.append(delivery)

    await broker.consume_work(queue, handler, prefetch=4)
    await eventually(lambda: len(handled) >= expected, f"{expected} messages handled")
    await asyncio.sleep(0.2)
    return handled


async def test_memory_journal_keeps_unacked_messages_for_the_next_run_and_forgets_acked_ones(
    tmp_path: Path,
) -> None:
    journal = tmp_path / "queue.db"
    first = MemoryBroker(journal=journal)
    await first.start()
    for i in range(6):
        await first.publish_work("readings.power", f"m{i}".encode())
    acked: list[bytes] = []

    async def ack_two_then_stall(delivery: Delivery) -> None:
        if len(acked) < 2:
            acked.append(delivery.body)
            return
        await asyncio.Event().wait()  # in flight when the broker stops

    await first.consume_work("readings.power", ack_two_then_stall, prefetch=1)
    await eventually(lambda: len(acked) == 2, "two messages acked")
    await first.close()

    second = MemoryBroker(journal=journal)
    await second.start()
    try:
        await second.publish_work("readings.power", b"new")
        handled = await collect_all(second, "readings.power", 5)
        assert [d.body for d in handled] == [b"m2", b"m3", b"m4", b"m5", b"new"], (
            "the previous run's unacked messages must come first, in order, and acked ones never"
        )
        assert all(d.redelivered for d in handled[:4]) and not handled[4].redelivered
    finally:
        await second.close()

    third = MemoryBroker(journal=journal)
    await third.start()
    try:
        assert await third.queue_depth("readings.power") == 0, "acked messages came back"
    finally:
        await third.close()


CRASHING_PUBLISHER = """
import asyncio, os, signal, sys
from backend.adapters.memory_broker import MemoryBroker

async def main():
    broker = MemoryBroker(journal=sys.argv[1])
    await broker.start()
    # Publishes racing each other, as concurrent POSTs do; each line is a confirm heard.
    async def publish(i):
        await broker.publish_work("readings.power", b"confirmed-%d" % i)
        print(i, flush=True)
    await asyncio.gather(*(publish(i) for i in range(200)))
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_memory_journal_messages_confirmed_before_a_sigkill_are_delivered_after_it(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    journal = tmp_path / "queue.db"
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", CRASHING_PUBLISHER, str(journal)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert crashed.returncode == -9, crashed.stderr
    confirmed = {int(line) for line in crashed.stdout.split()}
    assert len(confirmed) == 200

    broker = MemoryBroker(journal=journal)
    await broker.start()
    try:
        handled = await collect_all(broker, "readings.power", len(confirmed))
        bodies = Counter(d.body for d in handled)
        assert bodies == Counter(b"confirmed-%d" % i for i in confirmed), "lost or repeated a message"
    finally:
        await broker.close()


async def test_memory_journal_commits_concurrent_publishes_together(tmp_path: Path) -> None:
    broker = MemoryBroker(journal=tmp_path / "queue.db")
    await broker.start()
    try:
        await asyncio.gather(*(broker.publish_work("readings.co2", b"x" * 100) for _ in range(100)))
        assert broker.journal is not None
        assert broker.journal.commits <= 10, f"{broker.journal.commits} commits for 100 concurrent publishes"
        assert await broker.queue_depth("readings.co2") == 100
    finally:
        await broker.close()


async def test_memory_journal_is_refused_to_a_second_broker_while_in_use(tmp_path: Path) -> None:
    journal = tmp_path / "queue.db"
    first = MemoryBroker(journal=journal)
    await first.start()
    try:
        with pytest.raises(JournalInUse, match=f"journal {journal} is in use by another tasker backend"):
            await MemoryBroker(journal=journal).start()
    finally:
        await first.close()
    again = MemoryBroker(journal=journal)  # free once the first one closed
    await again.start()
    await again.close()


async def test_memory_publish_over_the_byte_bound_fails_as_unavailable_then_recovers(tmp_path: Path) -> None:
    broker = MemoryBroker(journal=tmp_path / "queue.db", max_bytes=1000, full_wait_s=0.3)
    await broker.start()
    try:
        await broker.publish_work("readings.power", b"a" * 600)
        loop = asyncio.get_running_loop()
        began = loop.time()
        with pytest.raises(Unavailable, match="embedded work queues are full .* packager is behind"):
            await broker.publish_work("readings.power", b"b" * 600)
        assert 0.25 <= loop.time() - began < 2.0, "publish did not wait its full_wait_s before failing"
        assert await broker.queue_depth("readings.power") == 1

        handled = await collect_all(broker, "readings.power", 1)
        assert [d.body for d in handled] == [b"a" * 600]
        await broker.publish_work("readings.power", b"b" * 600)  # room again once acked
        await eventually(lambda: len(handled) == 2, "the second message handled")
    finally:
        await broker.close()

    # What was refused was never journaled: the next run finds nothing.
    again = MemoryBroker(journal=tmp_path / "queue.db")
    await again.start()
    try:
        assert await again.queue_depth("readings.power") == 0
    finally:
        await again.close()


async def test_memory_a_journal_that_cannot_commit_refuses_publishes_and_fails_ping(tmp_path: Path) -> None:
    broker = MemoryBroker(journal=tmp_path / "queue.db")
    await broker.start()
    try:
        await broker.publish_work("readings.power", b"before")
        assert broker.journal is not None
        broker.journal._con.close()  # the file becomes unusable, as a failed disk would make it
        with pytest.raises(Unavailable, match=f"embedded broker journal {tmp_path / 'queue.db'}"):
            await broker.publish_work("readings.power", b"after")
        with pytest.raises(Unavailable, match="embedded broker journal"):
            await broker.ping()
        assert await broker.queue_depth("readings.power") == 1, "an unjournaled message was queued"
    finally:
        await broker.close()


async def test_memory_a_message_larger_than_the_bound_still_passes_through_an_empty_broker(
    tmp_path: Path,
) -> None:
    broker = MemoryBroker(journal=tmp_path / "queue.db", max_bytes=10, full_wait_s=0.1)
    await broker.start()
    try:
        await broker.publish_work("readings.power", b"z" * 100)
        assert [d.body for d in await collect_all(broker, "readings.power", 1)] == [b"z" * 100]
    finally:
        await broker.close()


# --- RabbitMQ only ----------------------------------------------------------------------------


async def test_rabbitmq_redelivers_to_another_consumer_when_one_dies_before_acking(
    rabbitmq: RabbitMQBrokers,
) -> None:
    dying = await rabbitmq.make()
    survivor = await rabbitmq.make()
    queue = queue_name()
    started = asyncio.Event()

    async def stuck(delivery: Delivery) -> None:
        started.set()
        await asyncio.Event().wait()  # never returns: the message stays unacked

    received: list[Delivery] = []

    async def handler(delivery: Delivery) -> None:
        received.append(delivery)

    await dying.consume_work(queue, stuck, prefetch=1)
    await dying.publish_work(queue, b"readings of server 7")
    await asyncio.wait_for(started.wait(), WAIT_S)
    await survivor.consume_work(queue, handler, prefetch=1)
    await asyncio.sleep(0.2)
    assert received == [], "the message was handed out twice while its first consumer lived"

    await dying.close()  # its connection ends without an ack, as if the process died
    await eventually(lambda: len(received) == 1, "the unacked message delivered again")
    assert received[0].body == b"readings of server 7"
    assert received[0].redelivered
    await eventually_depth(survivor, queue, 0)


async def test_rabbitmq_dead_letters_land_in_the_dead_letter_queue(rabbitmq: RabbitMQBrokers) -> None:
    broker = await rabbitmq.make()
    queue = queue_name()

    async def reject_all(delivery: Delivery) -> None:
        raise Undecodable("not JSON")

    await broker.consume_work(queue, reject_all, prefetch=1)
    await broker.publish_work(queue, b"\xff\xfe not a batch")
    await eventually(lambda: broker.dead_lettered() == 1, "one message dead-lettered")

    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{rabbitmq.prefix}.dead-letter", passive=True)
        message = await dead.get(timeout=WAIT_S)
        assert message is not None
        assert message.body == b"\xff\xfe not a batch"
        await message.ack()


async def test_a_dead_letter_sent_by_the_packager_is_counted(brokers: Brokers) -> None:
    broker = brokers.broker
    before = broker.dead_lettered()
    await broker.dead_letter(queue_name(), b"refused readings", "the store refused 1 readings: test")
    assert broker.dead_lettered() == before + 1


async def test_rabbitmq_a_dead_letter_sent_alone_lands_in_the_dead_letter_queue_with_its_reason(
    rabbitmq: RabbitMQBrokers,
) -> None:
    broker = await rabbitmq.make()
    queue = queue_name()
    await broker.dead_letter(queue, b"three refused readings", "the store refused 3 readings: too large")

    connection = await aio_pika.connect(rabbitmq.url)
    async with connection:
        channel = await connection.channel()
        dead = await channel.declare_queue(f"{rabbitmq.prefix}.dead-letter", passive=True)
        message = await dead.get(timeout=WAIT_S)
        assert message is not None
        assert message.body == b"three refused readings"
        assert message.headers["x-tasker-queue"] == f"{rabbitmq.prefix}.{queue}"
        assert message.headers["x-tasker-reason"] == "the store refused 3 readings: too large"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        await message.ack()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_rabbitmq_unreachable_fails_fast_naming_the_address_not_the_password() -> None:
    port = free_port()  # nothing listens there
    broker = RabbitMQBroker(f"amqp://tasker:s3cret-pw@127.0.0.1:{port}/", connect_timeout=1.0)
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(Unavailable) as start_error:
        await broker.start()
    assert loop.time() - began < 2.0
    with pytest.raises(Unavailable) as ping_error:
        await broker.ping()
    with pytest.raises(Unavailable):
        await broker.publish_work("power", b"x")
    for error in (start_error.value, ping_error.value):
        assert "RabbitMQ" in str(error) and f"127.0.0.1:{port}" in str(error)
        assert "s3cret-pw" not in str(error)


async def test_rabbitmq_start_gives_up_on_a_server_that_never_answers() -> None:
    silent = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    broker = RabbitMQBroker(f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=1.0)
    began = asyncio.get_running_loop().time()
    try:
        with pytest.raises(Unavailable, match=f"RabbitMQ at 127.0.0.1:{port}"):
            await broker.start()
        assert asyncio.get_running_loop().time() - began < 3.0
    finally:
        silent.close()
        await silent.wait_closed()


class FlakyLink:
    """A TCP relay to RabbitMQ that the test can cut and restore, like a network outage."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.down = False
        self._writers: list[asyncio.StreamWriter] = []
        self._pipes: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            sink.transport.abort()

    def cut(self) -> None:
        self.down = True
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self.down = False

    async def close(self) -> None:
        self.cut()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_rabbitmq_fails_fast_while_cut_off_and_resumes_by_itself(rabbitmq: RabbitMQBrokers) -> None:
    link = FlakyLink(URL(rabbitmq.url).port or 5672)
    await link.start()
    try:
        broker = await rabbitmq.make(str(URL(rabbitmq.url).with_port(link.port)))
        queue = queue_name()
        received: list[Delivery] = []
        release = asyncio.Event()

        async def handler(delivery: Delivery) -> None:
            if delivery.body == b"in flight at the cut":
                await release.wait()
            received.append(delivery)

        await broker.consume_work(queue, handler, prefetch=2)
        events: list[bytes] = []

        async def on_event(body: bytes) -> None:
            events.append(body)

        channel = f"live-{uuid.uuid4().hex[:6]}"
        await broker.subscribe_events(channel, on_event)
        await broker.publish_work(queue, b"before")
        await eventually(lambda: [d.body for d in received] == [b"before"], "the first message")
        await broker.publish_work(queue, b"in flight at the cut")
        await asyncio.sleep(0.2)

        link.cut()
        loop = asyncio.get_running_loop()
        await asyncio.sleep(0.1)
        began = loop.time()
        with pytest.raises(Unavailable, match="RabbitMQ"):
            await broker.publish_work(queue, b"during")
        assert loop.time() - began < 0.5, "publish_work waited for the reconnect"
        began = loop.time()
        with pytest.raises(Unavailable, match="RabbitMQ"):
            await broker.ping()
        assert loop.time() - began < 2.0
        release.set()  # its ack cannot reach RabbitMQ now; the message must come again

        link.restore()
        deadline = loop.time() + 20
        while True:
            try:
                await broker.publish_work(queue, b"after")
                break
            except Unavailable:
                if loop.time() > deadline:
                    pytest.fail("publishing did not resume within 20s of the link coming back")
                await asyncio.sleep(0.2)
        await broker.ping()
        await eventually(lambda: {b"after", b"in flight at the cut"} <= {d.body for d in received}, "consuming resumed")
        # The subscription comes back too (its exclusive queue is re-created); events sent while
        # it is being restored may be missed, as for any subscriber not connected.
        deadline = loop.time() + WAIT_S
        while not events:
            assert loop.time() < deadline, "no event reached the subscriber after the outage"
            await broker.publish_event(channel, b"event after")
            await asyncio.sleep(0.1)
        assert set(events) == {b"event after"}
        again = [d for d in received if d.body == b"in flight at the cut"]
        assert again[-1].redelivered
        assert b"during" not in {d.body for d in received}
    finally:
        await link.close()
