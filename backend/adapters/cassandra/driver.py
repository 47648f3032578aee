"""The bridge to cassandra-driver: one session on the cluster, its requests awaited on asyncio.

Every request goes through the driver's async API (`execute_async` futures handed to the event
loop with `call_soon_threadsafe`); only connect, prepare and shutdown, which the driver offers
only blocking, run in a worker thread. Nothing blocks the event loop, and at most MAX_IN_FLIGHT
requests of a session are in flight at once.

Every read and write runs at the URL's consistency (`target.CassandraTarget`). The driver learns
the other nodes from whichever listed host answers and moves its requests off a node that goes
away; a request that was in flight on it fails as Unavailable and is retried by the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any, TypeVar

from cassandra import RequestValidationException
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, Session
from cassandra.policies import DCAwareRoundRobinPolicy, ExponentialReconnectionPolicy, TokenAwarePolicy
from cassandra.query import PreparedStatement, tuple_factory

from backend.adapters.cassandra.target import CassandraTarget
from backend.ports import Unavailable

MAX_IN_FLIGHT = 64  # concurrent requests per session

T = TypeVar("T")


class CassandraSession:
    """A session on the cluster a CassandraTarget names, with statements prepared by name.
    Requests before `connect` or after `close` raise Unavailable ("not started")."""

    def __init__(self, target: CassandraTarget) -> None:
        self.target = target
        self._cluster: Cluster | None = None
        self._session: Session | None = None
        self._prepared: dict[str, PreparedStatement] = {}
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)

    @property
    def where(self) -> str:
        """The store and its cluster, as error messages and logs name them."""
        t = self.target
        return f"time-series store (Cassandra {','.join(t.hosts)}:{t.port}/{t.keyspace})"

    @property
    def connected(self) -> bool:
        return self._session is not None

    async def connect(self) -> None:
        """Connect to the cluster; Unavailable when no listed host answers."""
        profile = ExecutionProfile(
            load_balancing_policy=TokenAwarePolicy(DCAwareRoundRobinPolicy()),
            consistency_level=self.target.consistency,
            row_factory=tuple_factory,
            request_timeout=15.0,
        )
        cluster = Cluster(
            self.target.hosts,
            port=self.target.port,
            protocol_version=4,
            execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            connect_timeout=5,
            # The driver's default backoff grows to 10 minutes; a packager waiting on the store
            # should notice it is back within seconds.
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
        )
        try:
            session = await asyncio.to_thread(cluster.connect)
        except Exception as exc:  # NoHostAvailable, timeouts, refused connections
            await asyncio.to_thread(cluster.shutdown)
            raise Unavailable(f"{self.where}: cannot connect: {exc}") from exc
        self._cluster, self._session = cluster, session

    async def prepare(self, statements: dict[str, str]) -> None:
        """Prepare each named CQL statement (`{ks}` stands for the keyspace) for `statement`
        and `run`."""
        self._prepared = await asyncio.to_thread(self._prepare_all, statements)

    def _prepare_all(self, statements: dict[str, str]) -> dict[str, PreparedStatement]:
        if self._session is None:
            raise Unavailable(f"{self.where}: not started")
        try:
            return {
                name: self._session.prepare(cql.format(ks=self.target.keyspace)) for name, cql in statements.items()
            }
        except RequestValidationException:
            raise
        except Exception as exc:
            raise Unavailable(f"{self.where}: cannot prepare statements: {exc}") from exc

    async def close(self) -> None:
        cluster, self._cluster, self._session = self._cluster, None, None
        self._prepared = {}
        if cluster is not None:
            await asyncio.to_thread(cluster.shutdown)

    async def execute(self, statement: Any, params: Sequence[Any] | None = None) -> list[tuple]:
        """Run one statement through the driver's async API; every page of its rows."""
        session = self._session
        if session is None:
            raise Unavailable(f"{self.where}: not started")
        async with self._slots:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[list[tuple]] = loop.create_future()
            rows: list[tuple] = []
            try:
                response = session.execute_async(statement, params)
            except Exception as exc:  # e.g. the session was shut down
                raise Unavailable(f"{self.where}: {exc}") from exc

            def settle(result: list[tuple] | None, error: BaseException | None) -> None:
                if done.done():  # the awaiting task was cancelled
                    return
                if error is None:
                    done.set_result(result or [])
                else:
                    done.set_exception(error)

            # Called on the driver's I/O thread (or here, if already done): hand over to the loop.
            def on_page(page: Any) -> None:
                if page:
                    rows.extend(page)
                if response.has_more_pages:
                    response.start_fetching_next_page()
                else:
                    loop.call_soon_threadsafe(settle, rows, None)

            def on_error(exc: BaseException) -> None:
                loop.call_soon_threadsafe(settle, None, exc)

            response.add_callbacks(on_page, on_error)
            try:
                return await done
            except RequestValidationException:
                raise  # a bug in our CQL, not an outage
            except Exception as exc:
                raise Unavailable(f"{self.where}: {type(exc).__name__}: {exc}") from exc

    def statement(self, name: str) -> PreparedStatement:
        """The prepared statement of that name."""
        if self._session is None or not self._prepared:
            raise Unavailable(f"{self.where}: not started")
        return self._prepared[name]

    async def run(self, name: str, params: Sequence[Any]) -> list[tuple]:
        """Execute the prepared statement of that name; every page of its rows."""
        return await self.execute(self.statement(name), params)


async def all_of(work: Iterable[Coroutine[Any, Any, T]], *, paced: bool = False) -> list[T]:
    """Await coroutines concurrently (the session's semaphore bounds requests in flight); on the
    first failure cancel the rest and raise that failure itself. `paced` gives the event loop a
    turn after starting each, so that long work (a write of many batches) never holds it."""
    tasks: list[asyncio.Task[T]] = []
    try:
        async with asyncio.TaskGroup() as group:
            for coroutine in work:
                tasks.append(group.create_task(coroutine))
                if paced:
                    await asyncio.sleep(0)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return [task.result() for task in tasks]


def map_items(points: Any) -> list[tuple[int, float]]:
    """(key, value) pairs of a map the driver decoded (an OrderedMapSerializedKey, whose public
    Mapping API re-serializes every key on lookup; its item list is read directly, with the
    public API as the fallback). None (no cells) gives []."""
    if not points:
        return []
    items = getattr(points, "_items", None)
    return items if isinstance(items, list) else list(points.items())
