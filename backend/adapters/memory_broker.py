"""The embedded broker: in-process work queues with RabbitMQ's ack semantics, and fan-out events.

Used by `tasker demo` and `tasker backend` with `TASKER_BROKER_URL=memory://`. It behaves like
the RabbitMQ adapter as far as one process can tell: competing consumers, at most `prefetch`
unacked messages per consumer, a failed handler's message requeued at the head of its queue and
delivered again with `redelivered=True`, an `Undecodable` one dead-lettered and counted.

Durability, as RabbitMQ's publisher confirms promise it: given a journal (`WorkJournal`, a SQLite
file), `publish_work` returns only once the message is committed there, an ack deletes it, and
on `start` every message left unacked by an earlier run (a crash, a `kill -9`) is queued again,
before anything new, flagged redelivered. Events stay in memory: they are live fan-out, lost
for a subscriber that is not connected, as with RabbitMQ.

Work queues are bounded in messages and in bytes of bodies (ready plus unacked, all queues
together), which bounds what ingest has confirmed but the store does not hold yet: a publish
waits up to `full_wait_s` for room, then raises Unavailable, which ingest answers with 503.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from backend.adapters.work_journal import WorkJournal
from backend.ports import EventHandler, Unavailable, Undecodable, WorkHandler
from tasker.backoff import RetryBackoff

log = logging.getLogger(__name__)

DEFAULT_MAX_DEPTH = 100_000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Bodies held at most: about 2 million readings (a 2,000-reading message is some 58 kB)."""
DEFAULT_FULL_WAIT_S = 2.0
DEFAULT_EVENT_BUFFER = 10_000
DEAD_LETTERS_KEPT = 10_000


@dataclass(slots=True)
class MemoryDelivery:
    """One delivery of a work message (the `Delivery` of `backend.ports`)."""

    body: bytes
    redelivered: bool = False
    message_id: int = 0
    """Its row in the journal (0 without a journal)."""


class _Budget:
    """Messages and body bytes held by all work queues (ready + unacked), against the bounds."""

    def __init__(self, max_messages: int, max_bytes: int) -> None:
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.bytes = 0
        self._freed = asyncio.Event()

    def _fits(self, size: int) -> bool:
        # An empty broker takes any message, so one over max_bytes cannot wait forever.
        return self.messages == 0 or (self.messages < self.max_messages and self.bytes + size <= self.max_bytes)

    async def reserve(self, size: int, wait_s: float, queue: str) -> None:
        """Count a message in; wait up to `wait_s` for room, then Unavailable."""
        if not self._fits(size):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s
            while not self._fits(size):
                left = deadline - loop.time()
                if left <= 0:
                    raise Unavailable(
                        f"embedded work queues are full ({self.messages:,} messages, "
                        f"{self.bytes / 1e6:.1f} MB of readings not yet stored; limits "
                        f"{self.max_messages:,} messages, {self.max_bytes / 1e6:.0f} MB): the "
                        f"packager is behind, so {queue!r} takes nothing more for now"
                    )
                freed = self._freed
                try:
                    await asyncio.wait_for(freed.wait(), left)
                except TimeoutError:
                    pass
        self.add(size)

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size

    def release(self, size: int) -> None:
        self.messages -= 1
        self.bytes -= size
        # Wake every waiter; each checks again whether its message fits now.
        self._freed.set()
        self._freed = asyncio.Event()


class _WorkQueue:
    """Ready messages plus the count of delivered-but-unacked ones."""

    def __init__(self) -> None:
        self.ready: deque[MemoryDelivery] = deque()
        self.unacked = 0
        self._wakeup = asyncio.Event()

    @property
    def depth(self) -> int:
        return len(self.ready) + self.unacked

    def put(self, delivery: MemoryDelivery) -> None:
        self.ready.append(delivery)
        self._wakeup.set()

    async def take(self) -> MemoryDelivery:
        while not self.ready:
            self._wakeup.clear()
            await self._wakeup.wait()
        self.unacked += 1
        return self.ready.popleft()

    def settled(self) -> None:
        """A delivered message was acked or dead-lettered."""
        self.unacked -= 1

    def requeue(self, delivery: MemoryDelivery) -> None:
        self.unacked -= 1
        # Like RabbitMQ: back at the head of the queue, flagged as seen before.
        self.ready.appendleft(MemoryDelivery(delivery.body, True, delivery.message_id))
        self._wakeup.set()


class MemoryBroker:
    """The `Broker` port inside one process (embedded mode)."""

    def __init__(
        self,
        max_depth: int = DEFAULT_MAX_DEPTH,
        retry_backoff: float = 0.05,
        retry_backoff_max: float = 2.0,
        event_buffer: int = DEFAULT_EVENT_BUFFER,
        journal: str | Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        full_wait_s: float = DEFAULT_FULL_WAIT_S,
    ) -> None:
        """`max_depth`/`max_bytes`: messages and bytes of bodies the work queues may hold
        together (ready + unacked) before `publish_work` waits, for up to `full_wait_s` seconds,
        then raises Unavailable. `retry_backoff`/`retry_backoff_max`: first and longest delay
        before a failed message is requeued. `event_buffer`: events a slow subscriber may lag
        behind before the oldest are dropped. `journal`: the SQLite file that makes work
        messages durable; None keeps them in memory only (lost with the process)."""
        if max_depth < 1:
            raise ValueError(f"max_depth must be at least 1, got {max_depth}")
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, got {max_bytes}")
        self.max_depth = max_depth
        self.max_bytes = max_bytes
        self.full_wait_s = full_wait_s
        self.retry_backoff = retry_backoff
        self.retry_backoff_max = retry_backoff_max
        self.event_buffer = event_buffer
        self.journal = WorkJournal(journal) if journal is not None else None
        self.dead_letters: deque[tuple[str, bytes]] = deque(maxlen=DEAD_LETTERS_KEPT)
        """The most recent dead-lettered messages as (queue, body), for inspection."""
        self.events_dropped = 0
        """Events not delivered because a subscriber lagged more than `event_buffer` behind."""
        self._budget = _Budget(max_depth, max_bytes)
        self._queues: dict[str, _WorkQueue] = {}
        self._subscribers: dict[str, list[asyncio.Queue[bytes]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._dead_count = 0
        self._closed = False

    async def start(self) -> None:
        """Open the journal, if any, and queue again what it holds (what no run acked)."""
        self._closed = False
        if self.journal is None or self.journal.is_open:
            return
        rows = await self.journal.open()
        # The journal holds every message not acked, including any still in memory from before
        # a close: it is the truth, so the queues are rebuilt from it.
        self._queues.clear()
        self._budget = _Budget(self.max_depth, self.max_bytes)
        for message_id, queue, body in rows:
            self._queue(queue).put(MemoryDelivery(body, redelivered=True, message_id=message_id))
            self._budget.add(len(body))
        if rows:
            log.info("embedded broker: %d unacked message(s) from %s queued again", len(rows), self.journal.path)

    async def close(self) -> None:
        """Stop every consumer and subscriber; messages in flight go back to their queue, and
        the journal commits the last acks and closes."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._subscribers.clear()
        if self.journal is not None:
            await self.journal.close()

    async def ping(self) -> None:
        """The embedded broker answers whenever the process runs and its journal commits."""
        journal = self.journal
        if journal is None:
            return
        if not journal.is_open:
            raise Unavailable(f"embedded broker journal {journal.path}: not open")
        if journal.failure is not None:
            raise Unavailable(f"embedded broker journal {journal.path}: {journal.failure}")

    def _queue(self, name: str) -> _WorkQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _WorkQueue()
        return queue

    def _spawn(self, coro) -> asyncio.Task[None]:  # type: ignore[no-untyped-def]
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def publish_work(self, queue: str, body: bytes) -> None:
        """Return once the message is queued and, with a journal, committed to it. Waits while
        the queues are full, up to `full_wait_s`; then, or when the journal fails, Unavailable."""
        size = len(body)
        await self._budget.reserve(size, self.full_wait_s, queue)
        target = self._queue(queue)
        if self.journal is None:
            target.put(MemoryDelivery(body))
            return
        committed = self.journal.submit(queue, body)

        def landed(done: asyncio.Future[int]) -> None:
            # Runs even if the publisher stopped waiting: a committed message is never orphaned.
            if done.cancelled() or done.exception() is not None:
                self._budget.release(size)
            else:
                target.put(MemoryDelivery(body, message_id=done.result()))

        committed.add_done_callback(landed)
        await asyncio.shield(committed)

    async def dead_letter(self, queue: str, body: bytes, reason: str) -> None:
        """Keep `body` among the dead letters (in memory, as undecodable messages are) and count it."""
        if self._closed:
            raise Unavailable("embedded broker: closed")
        self._dead_count += 1
        self.dead_letters.append((queue, body))
        log.warning("dead-lettered readings from work queue %r: %s", queue, reason)

    def _settle(self, queue: _WorkQueue, delivery: MemoryDelivery) -> None:
        """An ack (or dead-lettering): the message leaves the queue, its room and the journal."""
        queue.settled()
        self._budget.release(len(delivery.body))
        if self.journal is not None:
            self.journal.forget(delivery.message_id)

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
            self._settle(queue, delivery)
            return
        except asyncio.CancelledError:
            queue.requeue(delivery)
            raise
        except Exception as exc:  # noqa: BLE001 - any handler failure means "try again later"
            delay = backoff.failed()
            log.warning("handler failed on work queue %r, requeueing in %.2fs: %r", name, delay, exc)
            try:
                await asyncio.sleep(delay)
            finally:
                queue.requeue(delivery)
            return
        backoff.succeeded()
        self._settle(queue, delivery)

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
