"""The embedded broker's journal: every work message published and not yet acked, in SQLite.

`submit`'s future resolves only once the message is committed (WAL, synchronous=FULL: it survives a
`kill -9` and a power cut), which is what lets the embedded broker confirm a publish, and so
ingest answer 202, with RabbitMQ's promise. `forget` (an ack) is not awaited: a deletion lost in
a crash only means the message is delivered again after the restart, and the time-series
store's writes are upserts. Concurrent appends and forgets share one transaction (group
commit): while one commit is on the journal's thread, the next ones gather.

One process at a time: the journal holds an exclusive lock on its file for as long as it is
open, so a second embedded backend pointed at the same file is refused instead of redelivering
the first one's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from backend.adapters.sqlite_tx import write_transaction
from backend.ports import Unavailable
from tasker.private_files import private_file

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body BLOB NOT NULL
)
"""


class JournalInUse(Exception):
    """Another process has the journal open; the message names the file."""


class WorkJournal:
    """Unacked work messages of the embedded broker, one row each, in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._con: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._next_id = 1
        self._appends: list[tuple[int, str, bytes, asyncio.Future[int]]] = []
        self._forgets: list[int] = []
        self._flushing: asyncio.Task[None] | None = None
        self.failure: str | None = None
        """Why the last commit failed, or None while the journal works."""
        self.commits = 0
        """Transactions committed since opening (for tests and figures)."""

    # --- opening and closing ----------------------------------------------------------------

    async def open(self) -> list[tuple[int, str, bytes]]:
        """Open (creating) the file, lock it, and return its messages as (id, queue, body), in
        the order they were published. JournalInUse when another process holds it; Unavailable
        when it cannot be opened."""
        if self._thread is not None:
            raise RuntimeError("the journal is already open")
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tasker-journal")
        try:
            rows = await asyncio.get_running_loop().run_in_executor(self._thread, self._open)
        except BaseException:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise
        self._next_id = (rows[-1][0] + 1) if rows else 1
        self.failure = None
        return rows

    def _open(self) -> list[tuple[int, str, bytes]]:
        try:
            private_file(self.path)
            # The lock is on a file descriptor kept open until close: closing any descriptor of
            # the database file itself would drop SQLite's own POSIX locks, hence a side file.
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise Unavailable(f"embedded broker journal {self.path}: cannot open: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalInUse(
                f"the embedded broker journal {self.path} is in use by another tasker backend; "
                "stop it, or give this one its own data directory (TASKER_TIMESERIES_URL) or "
                "journal (TASKER_BROKER_URL=memory:///path/to/queue.db)"
            ) from None
        try:
            con = sqlite3.connect(self.path, isolation_level=None, timeout=10, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            # FULL: a confirmed publish survives a power cut too, as RabbitMQ's confirm does.
            con.execute("PRAGMA synchronous=FULL")
            # Messages pass through: keep the WAL from staying at its high-water mark on disk.
            con.execute("PRAGMA journal_size_limit=16777216")
            con.execute(_SCHEMA)
            rows = con.execute("SELECT id, queue, body FROM work ORDER BY id").fetchall()
        except sqlite3.Error as exc:
            os.close(fd)
            raise Unavailable(f"embedded broker journal {self.path}: cannot open: {exc}") from exc
        self._con, self._lock_fd = con, fd
        return rows

    async def close(self) -> None:
        """Commit what is pending (the last acks), then close the file and release its lock."""
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            await self.flush()
        thread, self._thread = self._thread, None
        await asyncio.get_running_loop().run_in_executor(thread, self._close)
        thread.shutdown(wait=True)
        appends, self._appends, self._forgets = self._appends, [], []
        for *_, done in appends:
            if not done.done():
                done.set_exception(Unavailable(f"embedded broker journal {self.path}: closed"))

    def _close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    @property
    def is_open(self) -> bool:
        return self._thread is not None

    # --- appending and forgetting -----------------------------------------------------------

    def submit(self, queue: str, body: bytes) -> asyncio.Future[int]:
        """Store a message in the next commit; the future gives its id once committed, or
        Unavailable when the commit fails. The commit happens even if nobody awaits it."""
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if self._thread is None:
            done.set_exception(Unavailable(f"embedded broker journal {self.path}: not open"))
            return done
        message_id = self._next_id
        self._next_id += 1
        self._appends.append((message_id, queue, body, done))
        self._kick()
        return done

    def forget(self, message_id: int) -> None:
        """Delete an acked message, in the next commit (not awaited; see the module's note)."""
        if self._thread is None:
            return
        self._forgets.append(message_id)
        self._kick()

    async def flush(self) -> None:
        """Wait until everything appended or forgotten so far is committed; Unavailable when a
        commit fails."""
        for _ in range(3):
            if self._flushing is None and not (self._appends or self._forgets):
                return
            if self._flushing is None:
                self._kick()
            flushing = self._flushing
            assert flushing is not None
            await asyncio.shield(flushing)
        if self.failure is not None:
            raise Unavailable(f"embedded broker journal {self.path}: {self.failure}")

    def _kick(self) -> None:
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._commit_loop())

    async def _commit_loop(self) -> None:
        """Commit what gathered, again and again, until nothing is pending (one commit at a time)."""
        loop = asyncio.get_running_loop()
        try:
            while (self._appends or self._forgets) and self._thread is not None:
                appends, self._appends = self._appends, []
                forgets, self._forgets = self._forgets, []
                rows = [(i, q, b) for i, q, b, _ in appends]
                try:
                    await loop.run_in_executor(self._thread, self._commit, rows, forgets)
                except Exception as exc:  # noqa: BLE001 - every waiting publisher hears why
                    self.failure = str(exc)
                    log.error("embedded broker journal %s: commit failed: %s", self.path, exc)
                    self._forgets = forgets + self._forgets  # an ack is retried with the next commit
                    error = Unavailable(f"embedded broker journal {self.path}: {exc}")
                    for *_, done in appends:
                        if not done.done():
                            done.set_exception(error)
                    if not self._appends:
                        return  # nothing is waiting: the acks wait for the next publish or close
                    continue
                self.failure = None
                self.commits += 1
                for message_id, _, _, done in appends:
                    if not done.done():
                        done.set_result(message_id)
        finally:
            self._flushing = None

    def _commit(self, rows: list[tuple[int, str, bytes]], forgets: list[int]) -> None:
        con = self._con
        if con is None:
            raise sqlite3.OperationalError("the journal is closed")
        with write_transaction(con):
            if rows:
                con.executemany("INSERT INTO work (id, queue, body) VALUES (?, ?, ?)", rows)
            if forgets:
                con.executemany("DELETE FROM work WHERE id = ?", [(i,) for i in forgets])
