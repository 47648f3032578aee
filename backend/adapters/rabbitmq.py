"""The distributed broker: RabbitMQ through aio-pika.

Topology (every name starts with `prefix`, `tasker` by default):

- `tasker.readings`: durable direct exchange; a work message for queue `q` (the backend names
  them `readings.<metric>`) is routed with key `q` to the durable queue `tasker.q`, e.g.
  `tasker.readings.power`.
- `tasker.dead` (durable fanout) -> `tasker.dead-letter`: where undecodable messages go (every
  work queue names it as its `x-dead-letter-exchange`), and the readings a store refused, alone
  (`dead_letter`, with the work queue and the reason in `x-tasker-*` headers).
- `tasker.events.<channel>`: fanout exchange per event channel; each subscriber binds its own
  exclusive, auto-delete, length-capped queue. Events are transient.

On a cluster (`amqp://user:pass@h1,h2,h3/vhost`, or `?queue_type=quorum` with one host) the work
and dead-letter queues are quorum queues, replicated on every node: a publish is confirmed once
a majority of them has it, and the queue survives the loss of a minority. The connection then
goes to the listed hosts in turn: when the node it is on goes away, it reconnects to the next one
that answers (`FailoverConnection`).

Work messages are persistent and published on a channel with publisher confirms, so
`publish_work` returns only once RabbitMQ has the message. Consumers ack only after their handler
returned. The connection is robust: after RabbitMQ comes back, aio-pika re-declares the topology
and the consumers by itself; while it is away `publish_work` fails at once with `Unavailable`
rather than waiting for the reconnect, so ingest can answer 503.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq
from aio_pika.abc import (
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
)
from yarl import URL

from backend.ports import EventHandler, Unavailable, Undecodable, WorkHandler
from tasker.backoff import RetryBackoff

log = logging.getLogger(__name__)

# What a lost connection or a refused operation looks like from aio-pika and below.
_BROKER_ERRORS = (aiormq.exceptions.AMQPError, ConnectionError, OSError, RuntimeError, TimeoutError)

EVENT_QUEUE_MAX_LENGTH = 10_000
EVENT_PREFETCH = 256
_MAX_NAME = 200  # AMQP names are at most 255 bytes; leave room for the prefix


QUEUE_TYPES = ("classic", "quorum")


@dataclass(frozen=True, slots=True)
class BrokerTarget:
    """What an `amqp://` URL names: one URL per node, and the kind of queue to declare."""

    urls: list[str]
    """`amqp://user:pass@host:port/vhost` of each listed host, in the order given."""
    queue_type: str
    """`?queue_type=classic|quorum`; quorum by default when several hosts are listed."""
    where: str
    """`RabbitMQ at h1:5672,h2:5672`, for messages (never the password)."""


def parse_broker_url(url: str) -> BrokerTarget:
    """The BrokerTarget of `amqp[s]://[user[:pass]@]host[:port][,host[:port]]/vhost[?queue_type=...]`
    (other query options are left to aio-pika); ValueError naming what is wrong."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"broker URL: expected amqp:// or amqps://, got {parts.scheme or 'no'} scheme")
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    default_port = 5671 if parts.scheme == "amqps" else 5672
    hosts = []
    for entry in hostlist.split(","):
        host, port = entry, ""
        if ":" in entry and not entry.endswith("]"):
            host, _, port = entry.rpartition(":")
        if not host or port and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"broker URL: bad host {entry!r}; expected host[:port][,host[:port]]")
        hosts.append(f"{host}:{port or default_port}")
    options = parse_qsl(parts.query, keep_blank_values=True)
    ours = [value for key, value in options if key == "queue_type"]
    rest = urlencode([(key, value) for key, value in options if key != "queue_type"])
    queue_type = ours[-1] if ours else ("quorum" if len(hosts) > 1 else "classic")
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"broker URL: queue_type={queue_type!r}; expected one of {', '.join(QUEUE_TYPES)}")
    urls = [urlunsplit((parts.scheme, f"{userinfo}{at}{host}", parts.path, rest, "")) for host in hosts]
    return BrokerTarget(urls, queue_type, f"RabbitMQ at {','.join(hosts)}")


class FailoverConnection(aio_pika.RobustConnection):
    """A robust connection that tries the cluster's nodes in turn: each (re)connect attempt goes
    to the next URL of the list, so losing the node it is on means reconnecting to another.

    aio-pika's RobustConnection reconnects to `self.url` and clears `self.transport` right before
    each attempt (aio-pika 10.x); the next URL is chosen there. The cluster fault tests catch a
    change of that behaviour."""

    def __init__(self, urls: list[str], first: int = 0, **kwargs: Any) -> None:
        super().__init__(URL(urls[first]), **kwargs)
        self._urls = [URL(u) for u in urls]
        self._turn = first - 1  # the first attempt goes to urls[first]

    @property
    def transport(self) -> Any:
        return self._transport_now

    @transport.setter
    def transport(self, value: Any) -> None:
        if value is None and getattr(self, "_urls", None):
            self._turn = (self._turn + 1) % len(self._urls)
            self.url = self._urls[self._turn]
        self._transport_now = value


@dataclass(slots=True)
class RabbitDelivery:
    """One delivery of a work message (the `Delivery` of `backend.ports`)."""

    body: bytes
    redelivered: bool


def _check_name(kind: str, name: str) -> None:
    if not name or len(name) > _MAX_NAME or not name.isprintable() or " " in name:
        raise ValueError(f"invalid {kind} name {name!r}: expected 1-{_MAX_NAME} printable characters, no spaces")


def _check_work_queue_name(queue: str) -> None:
    _check_name("queue", queue)
    # Those names below the prefix belong to the dead-letter queue and the event subscribers.
    if queue == "dead-letter" or queue.startswith("events."):
        raise ValueError(f"invalid queue name {queue!r}: 'dead-letter' and 'events.*' are reserved")


class RabbitMQBroker:
    """The `Broker` port over RabbitMQ (distributed mode)."""

    def __init__(
        self,
        url: str,
        prefix: str = "tasker",
        connect_timeout: float = 5.0,
        operation_timeout: float = 10.0,
        ping_timeout: float = 1.5,
        reconnect_interval: float = 1.0,
        retry_backoff: float = 0.1,
        retry_backoff_max: float = 5.0,
    ) -> None:
        """`url`: `amqp://user:pass@host:5672/vhost`, or several hosts for a cluster (see
        `parse_broker_url`). `prefix`: first part of every queue and
        exchange name (tests use a random one to stay apart). `operation_timeout`: longest wait
        for a publish confirm or a declaration before `Unavailable`. `ping_timeout`: longest
        `ping`. `reconnect_interval`: pause between reconnect attempts. `retry_backoff`/
        `retry_backoff_max`: first and longest delay before a failed message is requeued."""
        _check_name("prefix", prefix)
        target = parse_broker_url(url)
        self._urls = target.urls
        self.queue_type = target.queue_type
        # Said in every error; never the password.
        self.where = target.where
        self._password = URL(target.urls[0]).password or ""
        self.prefix = prefix
        self.connect_timeout = connect_timeout
        self.operation_timeout = operation_timeout
        self.ping_timeout = ping_timeout
        self.reconnect_interval = reconnect_interval
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max

        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractRobustChannel | None = None  # work messages, with confirms
        self._event_channel: AbstractRobustChannel | None = None  # events, no confirms
        self._topology_channel: AbstractRobustChannel | None = None  # declarations, depth, ping
        self._subscribe_channel: AbstractRobustChannel | None = None
        # aio-pika holds channels weakly; these references keep the consumers' channels alive.
        self._consumer_channels: list[AbstractRobustChannel] = []
        self._readings_exchange: AbstractExchange | None = None
        self._event_exchanges: dict[str, AbstractExchange] = {}
        self._work_queues: set[str] = set()
        self._declare_lock = asyncio.Lock()
        self._queue_names: set[str] = set()
        self._exchange_names: set[str] = set()
        self._unacked: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._dead_count = 0

    # --- names ---------------------------------------------------------------------------------

    @property
    def readings_exchange(self) -> str:
        return f"{self.prefix}.readings"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.prefix}.dead"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.prefix}.dead-letter"

    def work_queue_name(self, queue: str) -> str:
        """The RabbitMQ queue behind the work queue `queue`: `readings.power` -> `tasker.readings.power`."""
        return f"{self.prefix}.{queue}"

    def events_exchange_name(self, channel: str) -> str:
        return f"{self.prefix}.events.{channel}"

    def declared_names(self) -> tuple[set[str], set[str]]:
        """The (queues, exchanges) this broker declared, e.g. for a test to delete them."""
        return set(self._queue_names), set(self._exchange_names)

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and declare the readings and dead-letter topology; Unavailable if unreachable."""
        try:
            self._connection = connection = await self._connect()
            self._topology_channel = await connection.channel(publisher_confirms=False)
            self._publish_channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            self._event_channel = await connection.channel(publisher_confirms=False)
            self._subscribe_channel = await connection.channel(publisher_confirms=False)
            await self._subscribe_channel.set_qos(prefetch_count=EVENT_PREFETCH)
            await self._declare_exchange(self.readings_exchange, aio_pika.ExchangeType.DIRECT, durable=True)
            await self._declare_exchange(self.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True)
            dead = await self._topology_channel.declare_queue(
                self.dead_letter_queue, durable=True, arguments=self._queue_type_arguments()
            )
            self._queue_names.add(self.dead_letter_queue)
            await dead.bind(self.dead_letter_exchange, routing_key="")
        except _BROKER_ERRORS as exc:
            await self.close()
            raise self._unavailable("cannot connect", exc) from None
        self._readings_exchange = await self._publish_channel.get_exchange(self.readings_exchange, ensure=False)

    async def _connect(self) -> FailoverConnection:
        """A connection to the first listed node that answers."""
        failure: BaseException | None = None
        for first in range(len(self._urls)):
            connection = FailoverConnection(self._urls, first, reconnect_interval=self.reconnect_interval)
            try:
                await connection.connect(timeout=self.connect_timeout)
                return connection
            except _BROKER_ERRORS as exc:
                failure = exc
                await connection.close()
        assert failure is not None
        raise failure

    async def close(self) -> None:
        """Stop consuming and disconnect; unacked messages go back to their queues."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        if self._connection is not None:
            connection, self._connection = self._connection, None
            self._consumer_channels.clear()
            try:
                await connection.close()
            except Exception:  # noqa: BLE001 - closing a broken connection may fail; it is gone either way
                log.debug("error while closing the RabbitMQ connection", exc_info=True)

    def _unavailable(self, what: str, exc: BaseException | None = None) -> Unavailable:
        reason = f"{type(exc).__name__}: {exc}" if exc is not None else ""
        if exc is not None and not str(exc):
            reason = type(exc).__name__
        if self._password:
            reason = reason.replace(self._password, "***")
        return Unavailable(f"{self.where}: {what}" + (f" ({reason})" if reason else ""))

    def _require_connected(self) -> AbstractRobustConnection:
        """The connection if it is up right now; otherwise fail at once, not after the reconnect."""
        connection = self._connection
        if connection is None:
            raise self._unavailable("not connected")
        if connection.is_closed or not connection.connected.is_set():
            raise self._unavailable("connection lost, reconnecting")
        return connection

    async def ping(self) -> None:
        """One round trip to RabbitMQ within `ping_timeout`; Unavailable with the reason otherwise."""
        self._require_connected()
        assert self._topology_channel is not None
        try:
            async with asyncio.timeout(self.ping_timeout):
                channel = await self._topology_channel.get_underlay_channel()
                await channel.exchange_declare(exchange=self.readings_exchange, exchange_type="direct", durable=True)
        except TimeoutError:
            raise self._unavailable(f"no answer within {self.ping_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("not answering", exc) from None

    # --- topology ------------------------------------------------------------------------------

    async def _declare_exchange(self, name: str, kind: aio_pika.ExchangeType, durable: bool) -> None:
        assert self._topology_channel is not None
        # Declared on the topology channel with robust=True, so aio-pika re-declares it on reconnect.
        await self._topology_channel.declare_exchange(name, kind, durable=durable, timeout=self.operation_timeout)
        self._exchange_names.add(name)

    def _work_queue_arguments(self) -> dict[str, Any]:
        return {"x-dead-letter-exchange": self.dead_letter_exchange, **self._queue_type_arguments()}

    def _queue_type_arguments(self) -> dict[str, Any]:
        # A queue keeps the type it was declared with: declaring it again with another fails.
        return {"x-queue-type": "quorum"} if self.queue_type == "quorum" else {}

    async def _ensure_work_queue(self, queue: str) -> None:
        """Declare (once) the durable queue for `queue` and bind it, so nothing published is lost
        for want of a queue even before any consumer started."""
        if queue in self._work_queues:
            return
        _check_work_queue_name(queue)
        async with self._declare_lock:
            if queue in self._work_queues:
                return
            assert self._topology_channel is not None
            name = self.work_queue_name(queue)
            declared = await self._topology_channel.declare_queue(
                name, durable=True, arguments=self._work_queue_arguments(), timeout=self.operation_timeout
            )
            self._queue_names.add(name)
            await declared.bind(self.readings_exchange, routing_key=queue, timeout=self.operation_timeout)
            self._work_queues.add(queue)

    # --- work queues ---------------------------------------------------------------------------

    async def publish_work(self, queue: str, body: bytes) -> None:
        """Publish a persistent message and wait for RabbitMQ's confirm.

        Raises Unavailable at once when the connection is down, or when no confirm comes within
        `operation_timeout`; the message may then or may not have been stored (at least once).
        """
        self._require_connected()
        assert self._readings_exchange is not None
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        try:
            async with asyncio.timeout(self.operation_timeout):
                await self._ensure_work_queue(queue)
                await self._readings_exchange.publish(message, routing_key=queue, mandatory=True)
        except aio_pika.exceptions.PublishError as exc:
            # Unroutable: the queue vanished (deleted, or a wiped node); declare it again next time.
            self._work_queues.discard(queue)
            raise self._unavailable(f"work queue {self.work_queue_name(queue)!r} missing", exc) from None
        except aio_pika.exceptions.DeliveryError as exc:
            raise self._unavailable("message refused (nack)", exc) from None
        except TimeoutError:
            raise self._unavailable(f"no confirm within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("publish failed", exc) from None

    async def dead_letter(self, queue: str, body: bytes, reason: str) -> None:
        """Publish `body` to the dead-letter exchange, persistent and confirmed, with the work
        queue it came from and why in its headers (as RabbitMQ's own x-death would say)."""
        self._require_connected()
        assert self._publish_channel is not None
        message = aio_pika.Message(
            body,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={"x-tasker-queue": self.work_queue_name(queue), "x-tasker-reason": reason[:500]},
        )
        try:
            async with asyncio.timeout(self.operation_timeout):
                exchange = await self._publish_channel.get_exchange(self.dead_letter_exchange, ensure=False)
                await exchange.publish(message, routing_key="", mandatory=True)
        except aio_pika.exceptions.DeliveryError as exc:
            raise self._unavailable("dead letter refused (nack)", exc) from None
        except TimeoutError:
            raise self._unavailable(f"no confirm of a dead letter within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("dead letter not published", exc) from None
        self._dead_count += 1
        log.warning("dead-lettered readings from work queue %r: %s", queue, reason)

    async def consume_work(self, queue: str, handler: WorkHandler, prefetch: int) -> None:
        """Register a consumer on its own channel with `prefetch` unacked messages at most.

        The handler runs once per message, up to `prefetch` at a time. Its outcome decides the
        message's fate: returned -> ack; Undecodable -> reject to the dead-letter queue (counted);
        any other exception -> requeue after a backoff that grows while failures continue.
        """
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        connection = self._require_connected()
        backoff = RetryBackoff(self.retry_backoff, self.retry_backoff_max)

        async def on_message(message: AbstractIncomingMessage) -> None:
            self._unacked[queue] += 1
            try:
                await self._handle(queue, message, handler, backoff)
            finally:
                self._unacked[queue] -= 1

        try:
            async with asyncio.timeout(self.operation_timeout):
                await self._ensure_work_queue(queue)
                channel = await connection.channel(publisher_confirms=False)
                self._consumer_channels.append(channel)
                await channel.set_qos(prefetch_count=prefetch)
                # A robust queue object of this channel, so the consumer is restored on reconnect.
                declared = await channel.declare_queue(
                    self.work_queue_name(queue), durable=True, arguments=self._work_queue_arguments()
                )
                await declared.consume(on_message)
        except TimeoutError:
            raise self._unavailable(f"consumer not registered within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("cannot register consumer", exc) from None

    async def _handle(
        self, queue: str, message: AbstractIncomingMessage, handler: WorkHandler, backoff: RetryBackoff
    ) -> None:
        delivery = RabbitDelivery(message.body, bool(message.redelivered))
        try:
            await handler(delivery)
        except Undecodable as exc:
            if await self._settle(message.reject(requeue=False)):
                self._dead_count += 1
                log.warning("dead-lettered a message from work queue %r: %s", queue, exc)
            return
        except Exception as exc:  # noqa: BLE001 - any handler failure means "try again later"
            delay = backoff.failed()
            log.warning("handler failed on work queue %r, requeueing in %.2fs: %r", queue, delay, exc)
            # The message stays unacked meanwhile, so a failing store also throttles deliveries.
            await asyncio.sleep(delay)
            await self._settle(message.nack(requeue=True))
            return
        backoff.succeeded()
        await self._settle(message.ack())

    async def _settle(self, settlement: Any) -> bool:
        """Send an ack/nack/reject; if the channel is gone RabbitMQ redelivers the message anyway."""
        try:
            await settlement
        except (aio_pika.exceptions.MessageProcessError, *_BROKER_ERRORS) as exc:
            log.info("could not settle a message (%r); RabbitMQ will deliver it again", exc)
            return False
        return True

    async def queue_depth(self, queue: str) -> int:
        """Messages ready in the queue plus those this process holds unacked.

        RabbitMQ's own count (from a queue declare) leaves out unacked messages; those of other
        processes are not included.
        """
        self._require_connected()
        _check_work_queue_name(queue)
        assert self._topology_channel is not None
        try:
            async with asyncio.timeout(self.operation_timeout):
                await self._ensure_work_queue(queue)
                channel = await self._topology_channel.get_underlay_channel()
                result = await channel.queue_declare(
                    self.work_queue_name(queue), durable=True, arguments=self._work_queue_arguments()
                )
        except TimeoutError:
            raise self._unavailable(f"no answer within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("cannot read queue depth", exc) from None
        return int(result.message_count or 0) + self._unacked[queue]

    def dead_lettered(self) -> int:
        """Messages this broker rejected to the dead-letter queue since it started."""
        return self._dead_count

    # --- events --------------------------------------------------------------------------------

    async def _event_exchange(self, channel: str) -> AbstractExchange:
        exchange = self._event_exchanges.get(channel)
        if exchange is None:
            _check_name("event channel", channel)
            name = self.events_exchange_name(channel)
            await self._declare_exchange(name, aio_pika.ExchangeType.FANOUT, durable=False)
            assert self._event_channel is not None
            exchange = await self._event_channel.get_exchange(name, ensure=False)
            self._event_exchanges[channel] = exchange
        return exchange

    async def publish_event(self, channel: str, body: bytes) -> None:
        """Send a transient event to the subscribers connected now; no confirm is awaited."""
        self._require_connected()
        try:
            async with asyncio.timeout(self.operation_timeout):
                exchange = await self._event_exchange(channel)
                await exchange.publish(
                    aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT),
                    routing_key="",
                    mandatory=False,
                )
        except TimeoutError:
            raise self._unavailable(f"event not sent within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("event publish failed", exc) from None

    async def subscribe_events(self, channel: str, handler: EventHandler) -> None:
        """Receive, in order, every event published on `channel` from now on.

        A subscriber's queue is capped at EVENT_QUEUE_MAX_LENGTH: one that lags further behind
        loses the oldest events rather than filling RabbitMQ's memory.
        """
        self._require_connected()
        assert self._subscribe_channel is not None
        inbox: asyncio.Queue[AbstractIncomingMessage] = asyncio.Queue()  # bounded by the prefetch

        async def on_event(message: AbstractIncomingMessage) -> None:
            inbox.put_nowait(message)

        try:
            async with asyncio.timeout(self.operation_timeout):
                await self._event_exchange(channel)
                name = f"{self.events_exchange_name(channel)}.{uuid.uuid4().hex[:12]}"
                queue = await self._subscribe_channel.declare_queue(
                    name,
                    exclusive=True,
                    auto_delete=True,
                    arguments={"x-max-length": EVENT_QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
                )
                self._queue_names.add(name)
                await queue.bind(self.events_exchange_name(channel), routing_key="")
                await queue.consume(on_event)
        except TimeoutError:
            raise self._unavailable(f"subscription not made within {self.operation_timeout:g}s") from None
        except _BROKER_ERRORS as exc:
            raise self._unavailable("cannot subscribe to events", exc) from None
        task = asyncio.create_task(self._deliver_events(channel, inbox, handler))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver_events(
        self, channel: str, inbox: asyncio.Queue[AbstractIncomingMessage], handler: EventHandler
    ) -> None:
        # One task per subscription keeps the events in order (aio-pika runs callbacks concurrently).
        while True:
            message = await inbox.get()
            try:
                await handler(message.body)
            except Exception:  # noqa: BLE001 - one bad event must not end the subscription
                log.exception("event handler failed on channel %r", channel)
            await self._settle(message.ack())
