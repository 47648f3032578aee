"""One write transaction on a SQLite connection opened with isolation_level=None (the SQLite
adapters begin their transactions themselves)."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator

from tasker.backoff import RetryBackoff


@contextlib.contextmanager
def write_transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE (the write lock at once, so two writers take turns instead of failing
    at their first write), COMMIT when the block ends, ROLLBACK when it raises. A rollback that
    itself fails does not hide the error that caused it."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def use_wal(con: sqlite3.Connection, timeout_s: float = 10.0) -> None:
    """Switch the file to WAL, waiting out other processes doing the same. Two connections
    switching a new file at once make SQLite answer "database is locked" at once, without its
    busy timeout (waiting could deadlock), so the switch is retried here until `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    backoff = RetryBackoff(0.005, 0.2)
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or time.monotonic() >= deadline:
                raise
        time.sleep(backoff.failed())
