"""The embedded broker: in-process work queues with RabbitMQ's ack semantics, and fan-out events.

Used by `tasker demo` and `tasker backend` with `TASKER_BROKER_URL=memory://`. It behaves like
the RabbitMQ adapter as far as one process can tell: competing consumers, at most `prefetch`
unacked messages per consumer, a failed handler's message requeued at the head of its queue and
delivered again with `redelivered=True`, an `Undecodable` one dead-lettered and counted. Nothing
survives the process: durability is the distributed mode's job.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from backend.ports import EventHandler, Undecodable, WorkHandler

log = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 100_000
DEFAULT_EVENT_BUFFER = 10_000
DEAD_LETTERS_KEPT = 10_000


@dataclass(slots=True)
class MemoryDelivery:
    """One delivery of a work message (the `Delivery` of `backend.ports`)."""

    body: bytes
    redelivered: bool = False


class RetryBackoff:
    """Delay before a failed message is requeued, doubling per consecutive failure.

    Without it a handler whose store is down would receive the same message again at once, in a
    tight loop; with it the consumer slows to one attempt per `maximum` seconds per slot.
    """

    def __init__(self, initial: float, maximum: float) -> None:
        self.initial = initial
        self.maximum = maximum
        self._failures = 0

    def failed(self) -> float:
        """Record a failure and return how long to wait before giving the message back."""
        delay = min(self.maximum, self.initial * 2**self._failures) if self.initial > 0 else 0.0
        self._failures = min(self._failures + 1, 32)
        return delay

    def succeeded(self) -> None:
        self._failures = 0


class _WorkQueue:
    """Ready messages plus the count of delivered-but-unacked ones, under one lock."""

    def __init__(self, max_depth: int) -> None:
        self.ready: deque[MemoryDelivery] = deque()
        self.unacked = 0
        self.max_depth = max_depth
        lock = asyncio.Lock()
        self.has_ready = asyncio.Condition(lock)
        self.has_room = asyncio.Condition(lock)

    @property
    def depth(self) -> int:
        return len(self.ready) + self.unacked

    async def put(self, body: bytes) -> None:
        async with self.has_room:
            # Backpressure: the publisher waits rather than the queue growing without bound.
            await self.has_room.wait_for(lambda: self.depth < self.max_depth)
            self.ready.append(MemoryDelivery(body))
            self.has_ready.notify()

    async def take(self) -> MemoryDelivery:
        async with self.has_ready:
            await self.has_ready.wait_for(lambda: bool(self.ready))
            self.unacked += 1
            return self.ready.popleft()

    async def ack(self) -> None:
        async with self.has_room:
            self.unacked -= 1
            self.has_room.notify()

    async def requeue(self, delivery: MemoryDelivery) -> None:
        async with self.has_ready:
            self.unacked -= 1
            # Like RabbitMQ: back at the head of the queue, flagged as seen before.
            self.ready.appendleft(MemoryDelivery(delivery.body, redelivered=True))
            self.has_ready.notify()


class MemoryBroker:
    """The `Broker` port inside one process (embedded mode)."""

    def __init__(
        self,
        max_depth: int = DEFAULT_MAX_DEPTH,
        retry_backoff: float = 0.05,
        retry_backoff_max: float = 2.0,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
    ) -> None:
        """`max_depth`: messages a work queue may hold (ready + unacked) before `publish_work`
        waits. `retry_backoff`/`retry_backoff_max`: first and longest delay before a failed
        message is requeued. `event_buffer`: events a slow subscriber may lag behind before the
        oldest are dropped."""
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        self.max_depth = max_depth
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.event_buffer = event_buffer
        self.dead_letters: deque[tuple[str, bytes]] = deque(maxlen=DEAD_LETTERS_KEPT)
        """The most recent dead-lettered messages as (queue, body), for inspection."""
        self.events_dropped = 0
        """Events not delivered because a subscriber lagged more than `event_buffer` behind."""
        self._queues: dict[str, _WorkQueue] = {}
        self._subscribers: dict[str, list[asyncio.Queue[bytes]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dead_count = 0
        self._closed = False

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        """Stop every consumer and subscriber; messages in flight go back to their queue."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._subscribers.clear()

    async def ping(self) -> None:
        """The embedded broker answers whenever the process runs."""

    def _queue(self, name: str) -> _WorkQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _WorkQueue(self.max_depth)
        return queue

    def _spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def publish_work(self, queue: str, body: bytes) -> None:
        """Append to the queue; waits while the queue is full (backpressure)."""
        await self._queue(queue).put(body)

    async def consume_work(self, queue: str, handler: WorkHandler, prefetch: int) -> None:
        """Start a consumer running up to `prefetch` handler calls at once."""
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        self._spawn(self._consume(queue, self._queue(queue), handler, prefetch))

    async def _consume(self, name: str, queue: _WorkQueue, handler: WorkHandler, prefetch: int) -> None:
        slots = asyncio.Semaphore(prefetch)
        backoff = RetryBackoff(self.retry_backoff, self.retry_backoff_max)
        in_flight: set[asyncio.Task[None]] = set()
        try:
            while True:
                await slots.acquire()
                try:
                    delivery = await queue.take()
                except BaseException:
                    slots.release()
                    raise
                task = asyncio.create_task(self._handle(name, queue, delivery, handler, backoff))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
                task.add_done_callback(lambda _t: slots.release())
        finally:
            # A consumer that stops mid-message behaves like a dropped AMQP connection.
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, return_exceptions=True)

    async def _handle(
        self,
        name: str,
        queue: _WorkQueue,
        delivery: MemoryDelivery,
        handler: WorkHandler,
        backoff: RetryBackoff,
    ) -> None:
        try:
            await handler(delivery)
        except Undecodable as exc:
            self._dead_count += 1
            self.dead_letters.append((name, delivery.body))
            log.warning("dead-lettered a message from work queue %r: %s", name, exc)
            await queue.ack()
            return
        except asyncio.CancelledError:
            await asyncio.shield(queue.requeue(delivery))
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure means "try again later"
            delay = backoff.failed()
            log.warning("handler failed on work queue %r, requeueing in %.2fs: %r", name, delay, exc)
            try:
                await asyncio.sleep(delay)
            finally:
                await asyncio.shield(queue.requeue(delivery))
            return
        backoff.succeeded()
        await queue.ack()

    async def publish_event(self, channel: str, body: bytes) -> None:
        """Hand the event to every current subscriber; one that lags too far loses the oldest."""
        for inbox in self._subscribers.get(channel, ()):
            if inbox.full():
                inbox.get_nowait()
                self.events_dropped += 1
            inbox.put_nowait(body)

    async def subscribe_events(self, channel: str, handler: EventHandler) -> None:
        """Receive, in order, every event published on `channel` from now on."""
        inbox: asyncio.Queue[bytes] = asyncio.Queue(maxsize=self.event_buffer)
        self._subscribers.setdefault(channel, []).append(inbox)
        self._spawn(self._deliver_events(channel, inbox, handler))

    async def _deliver_events(self, channel: str, inbox: asyncio.Queue[bytes], handler: EventHandler) -> None:
        while True:
            body = await inbox.get()
            try:
                await handler(body)
            except Exception:  # noqa: BLE001 - one bad event must not end the subscription
                log.exception("event handler failed on channel %r", channel)

    async def queue_depth(self, queue: str) -> int:
        """Messages ready plus delivered-but-unacked in a work queue."""
        found = self._queues.get(queue)
        return found.depth if found is not None else 0

    def dead_lettered(self) -> int:
        """Messages dead-lettered (handler raised Undecodable) since this broker was created."""
        return self._dead_count
