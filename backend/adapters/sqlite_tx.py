"""One write transaction on a SQLite connection opened with isolation_level=None (the SQLite
adapters begin their transactions themselves)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


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
