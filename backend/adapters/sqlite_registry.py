"""The embedded Registry: servers, users, sessions, ingest keys, chat (and, through
`sqlite_tasks`, tasks, leases and grid traces) in one SQLite file.

sqlite3 blocks, so every statement runs on one dedicated thread that owns the connection; the
event loop only awaits it. The file is in WAL mode with a busy timeout, so the `tasker` CLI
can read and write it while a backend process has it open. All SQL is parameterised.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from backend.adapters.registry_values import (
    chat_values,
    extra_from_json,
    lookup_key,
    name_key,
    record_values,
    require_count,
    require_str,
)
from backend.adapters.sqlite_tasks import TASK_SCHEMA, SqliteTasks, add_task_columns
from backend.adapters.sqlite_tx import use_wal, write_transaction
from backend.ports import (
    AuditRecord,
    ChatMessage,
    Conflict,
    IngestKeyRecord,
    NotFound,
    ServerRecord,
    SessionRecord,
    Unavailable,
    UserRecord,
)
from tasker.private_files import private_file

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS servers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    region TEXT NOT NULL,
    site TEXT NOT NULL,
    energy_source TEXT NOT NULL,
    carbon_intensity_g_per_kwh REAL NOT NULL,
    carbon_intensity_source TEXT NOT NULL,
    pue REAL NOT NULL,
    idle_watts REAL NOT NULL,
    max_watts REAL NOT NULL,
    cores INTEGER NOT NULL,
    tags TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    id TEXT PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    disabled_at_ms INTEGER,
    password_changed_at_ms INTEGER
);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    client TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_expiry ON sessions (expires_at_ms);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (username);
CREATE TABLE IF NOT EXISTS ingest_keys (
    key_id TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL,
    label TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    revoked_at_ms INTEGER,
    server_id TEXT
);
CREATE TABLE IF NOT EXISTS chat_messages (
    conversation TEXT NOT NULL,
    id INTEGER NOT NULL,
    sender TEXT NOT NULL,
    sender_role TEXT NOT NULL,
    text TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    client_key TEXT NOT NULL,
    extra TEXT NOT NULL,
    PRIMARY KEY (conversation, id),
    UNIQUE (conversation, sender, client_key)
);
CREATE TABLE IF NOT EXISTS read_markers (
    conversation TEXT NOT NULL,
    username TEXT NOT NULL,
    last_read_id INTEGER NOT NULL,
    PRIMARY KEY (conversation, username)
);
"""


def _add_key_scope(conn: sqlite3.Connection) -> None:
    """Files made before keys had a server scope get the column (NULL: unscoped)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(ingest_keys)")}
    if "server_id" not in columns:
        conn.execute("ALTER TABLE ingest_keys ADD COLUMN server_id TEXT")


_ACCOUNT_COLUMNS = (
    ("users", "must_change_password", "INTEGER NOT NULL DEFAULT 0"),
    ("users", "disabled_at_ms", "INTEGER"),
    ("users", "password_changed_at_ms", "INTEGER"),
    ("sessions", "client", "TEXT NOT NULL DEFAULT ''"),
)


def _add_account_columns(conn: sqlite3.Connection) -> None:
    """Files made before accounts could be disabled or forced to change their password get the
    columns (users as they were: enabled, no change required; sessions from an unknown address)."""
    for table, column, kind in _ACCOUNT_COLUMNS:
        if column not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")


_USER_SELECT = (
    "SELECT username, role, password_hash, created_at_ms, must_change_password, "
    "disabled_at_ms, password_changed_at_ms FROM users"
)
_SESSION_SELECT = "SELECT token_hash, username, role, expires_at_ms, created_at_ms, client FROM sessions"


def _user_from_row(row: tuple[Any, ...]) -> UserRecord:
    username, role, password_hash, created, must_change, disabled, changed = row
    return UserRecord(username, role, password_hash, created, bool(must_change), disabled, changed)


_SERVER_COLUMNS = (
    "id",
    "name",
    "region",
    "site",
    "energy_source",
    "carbon_intensity_g_per_kwh",
    "carbon_intensity_source",
    "pue",
    "idle_watts",
    "max_watts",
    "cores",
    "tags",
    "created_at_ms",
    "created_by",
    "updated_at_ms",
    "owner",
)
_SERVER_SELECT = f"SELECT {', '.join(_SERVER_COLUMNS)} FROM servers"
_CHAT_SELECT = "SELECT conversation, id, sender, sender_role, text, ts_ms, client_key, extra FROM chat_messages"


def _server_from_row(row: tuple[Any, ...]) -> ServerRecord:
    values = dict(zip(_SERVER_COLUMNS, row, strict=True))
    values["tags"] = json.loads(values["tags"])
    return ServerRecord(**values)


def _chat_from_row(row: tuple[Any, ...]) -> ChatMessage:
    conversation, id_, sender, role, text, ts_ms, client_key, extra = row
    return ChatMessage(conversation, id_, sender, role, text, ts_ms, client_key, extra_from_json(extra))


class SqliteRegistry(SqliteTasks):
    """Registry port over a SQLite file (`TASKER_REGISTRY_URL=sqlite:///path.db`); tasks, leases
    and grid traces live in `SqliteTasks`."""

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._thread: ThreadPoolExecutor | None = None

    # --- plumbing ---------------------------------------------------------------------------

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work(connection)` on the registry's own thread; SQLite errors become Unavailable
        except constraint failures, which the callers turn into Conflict themselves."""
        if self._thread is None or self._conn is None:
            raise Unavailable(f"SQLite registry {self._path}: not started (or already closed)")
        conn = self._conn
        try:
            return await asyncio.get_running_loop().run_in_executor(self._thread, work, conn)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.Error as exc:
            raise Unavailable(f"SQLite registry {self._path}: {exc}") from exc

    async def _change(self, sql: str, key: object, *args: Any) -> int:
        """Rows changed by `sql` run with (*args, key); 0 without running it when `key` is not a
        string, since no stored row can match it."""
        if lookup_key(key) is None:
            return 0
        return await self._run(lambda c: c.execute(sql, (*args, key)).rowcount)

    async def _one(self, sql: str, key: object) -> tuple[Any, ...] | None:
        """The first row of `sql` run with `key`, or None; None without asking when `key` is not
        a string."""
        if lookup_key(key) is None:
            return None
        return await self._run(lambda c: c.execute(sql, (key,)).fetchone())

    async def _insert(self, table: str, record: Any, conflict: str) -> None:
        """Insert a port record into the table of the same columns; Conflict(conflict) when a
        unique key is taken. Column names come from the record's dataclass, never from input."""
        values = record_values(record)
        sql = f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)})"
        try:
            await self._run(lambda c: c.execute(sql, values))
        except sqlite3.IntegrityError:
            raise Conflict(conflict) from None

    async def start(self) -> None:
        """Open the file (creating its folder), switch to WAL and create the tables."""
        if self._thread is not None:
            return
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tasker-registry")

        def open_db() -> sqlite3.Connection:
            private_file(self._path)
            # Autocommit mode: multi-statement writes take BEGIN IMMEDIATE themselves.
            conn = sqlite3.connect(self._path, isolation_level=None, timeout=10.0)
            try:
                use_wal(conn)
                conn.execute("PRAGMA foreign_keys=ON")
                columns = {row[1] for row in conn.execute("PRAGMA table_info(servers)")}
                if columns and "owner" not in columns:  # a file from before servers had owners
                    conn.execute("ALTER TABLE servers ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
                if {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}:
                    _add_account_columns(conn)  # before the schema indexes the new columns
                add_task_columns(conn)
                conn.executescript(_SCHEMA + TASK_SCHEMA)
                _add_key_scope(conn)
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._thread, open_db)
        except (sqlite3.Error, OSError) as exc:
            self._thread.shutdown(wait=False)
            self._thread = None
            raise Unavailable(f"SQLite registry {self._path}: cannot open: {exc}") from exc

    async def close(self) -> None:
        """Close the connection on its own thread, then stop the thread."""
        thread, conn = self._thread, self._conn
        self._thread = self._conn = None
        if thread is None:
            return
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(thread, conn.close)
        thread.shutdown(wait=True)

    async def ping(self) -> None:
        """Return if the file answers a query; raise Unavailable otherwise."""
        await self._run(lambda c: c.execute("SELECT 1").fetchone())

    # --- servers ----------------------------------------------------------------------------

    @staticmethod
    def _server_params(server: ServerRecord) -> dict[str, Any]:
        values = record_values(server)
        values["tags"] = json.dumps(values["tags"])
        values["name_key"] = name_key(values["name"])
        return values

    async def add_server(self, server: ServerRecord) -> None:
        """Store a new server; Conflict when its id or (case-insensitively) its name is taken."""
        params = self._server_params(server)
        columns = (*_SERVER_COLUMNS, "name_key")

        def add(c: sqlite3.Connection) -> None:
            with write_transaction(c):
                taken = c.execute(
                    "SELECT id, name FROM servers WHERE id = ? OR name_key = ?",
                    (params["id"], params["name_key"]),
                ).fetchone()
                if taken is not None:
                    if taken[0] == params["id"]:
                        raise Conflict(f"server id {params['id']!r} already exists")
                    raise Conflict(f"server name {params['name']!r} is taken by server {taken[0]!r}")
                c.execute(
                    f"INSERT INTO servers ({', '.join(columns)}) VALUES ({', '.join(':' + k for k in columns)})",
                    params,
                )

        await self._run(add)

    async def get_server(self, server_id: str) -> ServerRecord:
        """The server with this id; NotFound otherwise."""
        row = await self._one(f"{_SERVER_SELECT} WHERE id = ?", server_id)
        if row is None:
            raise NotFound(f"no server with id {server_id!r}")
        return _server_from_row(row)

    async def list_servers(self) -> list[ServerRecord]:
        """Every server, ordered by name (case-insensitively)."""
        rows = await self._run(lambda c: c.execute(f"{_SERVER_SELECT} ORDER BY name_key, id").fetchall())
        return [_server_from_row(r) for r in rows]

    async def replace_server(self, server: ServerRecord) -> None:
        """Overwrite the server with the record's id; NotFound, or Conflict when the name is
        taken by another server."""
        params = self._server_params(server)
        assignments = ", ".join(f"{k} = :{k}" for k in (*_SERVER_COLUMNS[1:], "name_key"))

        def replace(c: sqlite3.Connection) -> int:
            try:
                return c.execute(f"UPDATE servers SET {assignments} WHERE id = :id", params).rowcount
            except sqlite3.IntegrityError:
                raise Conflict(f"server name {params['name']!r} is taken by another server") from None

        if await self._run(replace) == 0:
            raise NotFound(f"no server with id {params['id']!r}")

    async def delete_server(self, server_id: str) -> None:
        """Remove a server; NotFound when there is none with this id."""
        if await self._change("DELETE FROM servers WHERE id = ?", server_id) == 0:
            raise NotFound(f"no server with id {server_id!r}")

    async def server_ids(self) -> set[str]:
        """Ids of every registered server."""
        rows = await self._run(lambda c: c.execute("SELECT id FROM servers").fetchall())
        return {r[0] for r in rows}

    # --- users and sessions -----------------------------------------------------------------

    async def add_user(self, user: UserRecord) -> None:
        """Store a new user; Conflict when the username is taken."""
        await self._insert("users", user, f"username {user.username!r} is taken")

    async def get_user(self, username: str) -> UserRecord | None:
        """The user, or None (also when `username` is not a string)."""
        row = await self._one(f"{_USER_SELECT} WHERE username = ?", username)
        return None if row is None else _user_from_row(row)

    async def list_users(self) -> list[UserRecord]:
        """Every user, ordered by username."""
        rows = await self._run(lambda c: c.execute(f"{_USER_SELECT} ORDER BY username").fetchall())
        return [_user_from_row(r) for r in rows]

    async def set_password_hash(
        self, username: str, password_hash: str, *, must_change_password: bool = False, changed_at_ms: int | None = None
    ) -> None:
        """Replace a user's password hash and must-change flag (and when it changed, if given);
        NotFound when there is no such user."""
        new_hash = require_str("password_hash", password_hash)
        if not isinstance(must_change_password, bool):
            raise TypeError("must_change_password must be true or false")
        changed = None if changed_at_ms is None else require_count("changed_at_ms", changed_at_ms)
        sql = (
            "UPDATE users SET password_hash = ?, must_change_password = ?, "
            "password_changed_at_ms = COALESCE(?, password_changed_at_ms) WHERE username = ?"
        )
        if await self._change(sql, username, new_hash, int(must_change_password), changed) == 0:
            raise NotFound(f"no user {username!r}")

    async def set_must_change_password(self, username: str, must_change: bool) -> None:
        """Set or clear the must-change flag alone; NotFound when there is no such user."""
        if not isinstance(must_change, bool):
            raise TypeError("must_change must be true or false")
        sql = "UPDATE users SET must_change_password = ? WHERE username = ?"
        if await self._change(sql, username, int(must_change)) == 0:
            raise NotFound(f"no user {username!r}")

    async def set_user_disabled(self, username: str, disabled_at_ms: int | None) -> None:
        """Disable from `disabled_at_ms` (a second disable keeps the first time) or enable with
        None; NotFound when there is no such user."""
        args: tuple[int, ...] = ()
        if disabled_at_ms is None:
            sql = "UPDATE users SET disabled_at_ms = NULL WHERE username = ?"
        else:
            at = require_count("disabled_at_ms", disabled_at_ms)
            sql = "UPDATE users SET disabled_at_ms = COALESCE(disabled_at_ms, ?) WHERE username = ?"
            args = (at,)
        if await self._change(sql, username, *args) == 0:
            raise NotFound(f"no user {username!r}")

    async def delete_user(self, username: str) -> None:
        """Forget a user; NotFound when there is no such user."""
        if await self._change("DELETE FROM users WHERE username = ?", username) == 0:
            raise NotFound(f"no user {username!r}")

    async def add_session(self, session: SessionRecord) -> None:
        """Store a session; Conflict if its token hash already exists."""
        await self._insert("sessions", session, "a session with this token already exists")

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        """The session, expired or not, or None (also when `token_hash` is not a string)."""
        row = await self._one(f"{_SESSION_SELECT} WHERE token_hash = ?", token_hash)
        return None if row is None else SessionRecord(*row)

    async def delete_session(self, token_hash: str) -> None:
        """Forget a session; deleting one that does not exist is not an error (logout twice)."""
        await self._change("DELETE FROM sessions WHERE token_hash = ?", token_hash)

    async def list_sessions(self, username: str) -> list[SessionRecord]:
        """The user's sessions, expired or not, oldest first ([] for an unknown user)."""
        key = lookup_key(username)
        if key is None:
            return []
        rows = await self._run(
            lambda c: c.execute(
                f"{_SESSION_SELECT} WHERE username = ? ORDER BY created_at_ms, token_hash", (key,)
            ).fetchall()
        )
        return [SessionRecord(*r) for r in rows]

    async def delete_user_sessions(self, username: str, keep: str | None = None) -> int:
        """Delete every session of `username` but `keep` (a token hash); returns how many."""
        kept = "" if keep is None else require_str("keep", keep)
        return await self._change("DELETE FROM sessions WHERE token_hash != ? AND username = ?", username, kept)

    async def purge_expired_sessions(self, now_ms: int) -> int:
        """Delete the sessions that expired at or before `now_ms`; returns how many."""
        cutoff = int(now_ms)
        return await self._run(lambda c: c.execute("DELETE FROM sessions WHERE expires_at_ms <= ?", (cutoff,)).rowcount)

    # --- ingest keys ------------------------------------------------------------------------

    _KEY_SELECT = "SELECT key_id, key_hash, label, created_by, created_at_ms, revoked_at_ms, server_id FROM ingest_keys"

    async def add_ingest_key(self, key: IngestKeyRecord) -> None:
        """Store an ingest key; Conflict when its key id exists."""
        await self._insert("ingest_keys", key, f"ingest key {key.key_id!r} already exists")

    async def get_ingest_key(self, key_id: str) -> IngestKeyRecord | None:
        """The key, revoked or not, or None."""
        row = await self._one(f"{self._KEY_SELECT} WHERE key_id = ?", key_id)
        return None if row is None else IngestKeyRecord(*row)

    # --- audit --------------------------------------------------------------------------------

    async def append_audit(self, entry: AuditRecord) -> None:
        """Keep one audit entry; the same id twice keeps the first."""
        values = record_values(entry)
        await self._run(
            lambda c: c.execute(
                "INSERT OR IGNORE INTO audit (id, ts_ms, actor, action, target, detail) "
                "VALUES (:id, :ts_ms, :actor, :action, :target, :detail)",
                values,
            )
        )

    async def list_audit(self, limit: int, before_id: str | None = None) -> list[AuditRecord]:
        """The newest `limit` entries before `before_id`, newest first."""
        count = require_count("limit", limit)
        before = "\uffff" if before_id is None else require_str("before_id", before_id)
        rows = await self._run(
            lambda c: c.execute(
                "SELECT id, ts_ms, actor, action, target, detail FROM audit WHERE id < ? ORDER BY id DESC LIMIT ?",
                (before, count),
            ).fetchall()
        )
        return [AuditRecord(*row) for row in rows]

    async def list_ingest_keys(self) -> list[IngestKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        rows = await self._run(lambda c: c.execute(f"{self._KEY_SELECT} ORDER BY created_at_ms, key_id").fetchall())
        return [IngestKeyRecord(*r) for r in rows]

    async def revoke_ingest_key(self, key_id: str, at_ms: int) -> None:
        """Mark a key revoked at `at_ms` (a second revoke keeps the first time); NotFound."""
        at = require_count("revoked at_ms", at_ms)
        sql = "UPDATE ingest_keys SET revoked_at_ms = COALESCE(revoked_at_ms, ?) WHERE key_id = ?"
        if await self._change(sql, key_id, at) == 0:
            raise NotFound(f"no ingest key {key_id!r}")

    # --- chat -------------------------------------------------------------------------------

    async def append_chat(
        self,
        conversation: str,
        sender: str,
        sender_role: str,
        text: str,
        ts_ms: int,
        client_key: str,
        extra: dict[str, Any] | None = None,
    ) -> tuple[ChatMessage, bool]:
        """Store a message with the next id of its conversation (1, 2, 3... without gaps), or
        return the one already stored under (conversation, sender, client_key) with False."""
        row = chat_values(conversation, sender, sender_role, text, ts_ms, client_key, extra)
        conv, who, _role, _text, _ts, ckey, _extra = row

        def append(c: sqlite3.Connection) -> tuple[tuple[Any, ...], bool]:
            # One write transaction: the id is allocated and used before anyone else can allocate.
            with write_transaction(c):
                existing = c.execute(
                    f"{_CHAT_SELECT} WHERE conversation = ? AND sender = ? AND client_key = ?",
                    (conv, who, ckey),
                ).fetchone()
                if existing is not None:
                    return existing, False
                next_id, last_ts = c.execute(
                    "SELECT COALESCE(MAX(id), 0) + 1, COALESCE(MAX(ts_ms), 0) FROM chat_messages "
                    "WHERE conversation = ?",
                    (conv,),
                ).fetchone()
                stored = (conv, next_id, *row[1:])
                # Time never goes backwards along the ids, whichever api process's clock stamped it.
                stored = (*stored[:5], max(stored[5], last_ts), *stored[6:])
                c.execute(
                    "INSERT INTO chat_messages (conversation, id, sender, sender_role, text, ts_ms, "
                    "client_key, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    stored,
                )
                return stored, True

        stored, created = await self._run(append)
        return _chat_from_row(stored), created

    async def chat_after(self, conversation: str, after_id: int, limit: int) -> list[ChatMessage]:
        """Up to `limit` messages with id > after_id, oldest first."""
        after = require_count("after_id", after_id)
        n = require_count("limit", limit)
        key = lookup_key(conversation)
        if key is None or n == 0:
            return []
        rows = await self._run(
            lambda c: c.execute(
                f"{_CHAT_SELECT} WHERE conversation = ? AND id > ? ORDER BY id LIMIT ?", (key, after, n)
            ).fetchall()
        )
        return [_chat_from_row(r) for r in rows]

    async def chat_before(self, conversation: str, before_id: int | None, limit: int) -> list[ChatMessage]:
        """The `limit` messages just before before_id (or the newest ones), oldest first."""
        n = require_count("limit", limit)
        before = None if before_id is None else require_count("before_id", before_id)
        key = lookup_key(conversation)
        if key is None or n == 0:
            return []
        args: tuple[str | int, ...]
        if before is None:
            sql, args = f"{_CHAT_SELECT} WHERE conversation = ? ORDER BY id DESC LIMIT ?", (key, n)
        else:
            sql = f"{_CHAT_SELECT} WHERE conversation = ? AND id < ? ORDER BY id DESC LIMIT ?"
            args = (key, before, n)
        rows = await self._run(lambda c: c.execute(sql, args).fetchall())
        return [_chat_from_row(r) for r in reversed(rows)]

    async def list_conversations(self) -> list[tuple[str, int, int]]:
        """(conversation, last id, last ts_ms) of every conversation, newest activity first."""
        rows = await self._run(
            lambda c: c.execute(
                "SELECT m.conversation, m.id, m.ts_ms FROM chat_messages m "
                "JOIN (SELECT conversation, MAX(id) AS id FROM chat_messages GROUP BY conversation) l "
                "ON m.conversation = l.conversation AND m.id = l.id "
                "ORDER BY m.ts_ms DESC, m.conversation"
            ).fetchall()
        )
        return [(conv, id_, ts) for conv, id_, ts in rows]

    async def set_read_marker(self, conversation: str, username: str, last_read_id: int) -> None:
        """Remember how far `username` has read `conversation`; never moves backwards."""
        values = (
            require_str("conversation", conversation),
            require_str("username", username),
            require_count("last_read_id", last_read_id),
        )
        await self._run(
            lambda c: c.execute(
                "INSERT INTO read_markers (conversation, username, last_read_id) VALUES (?, ?, ?) "
                "ON CONFLICT (conversation, username) "
                "DO UPDATE SET last_read_id = MAX(last_read_id, excluded.last_read_id)",
                values,
            )
        )

    async def read_markers(self, username: str) -> dict[str, int]:
        """conversation -> last read id, for one user (empty for an unknown user)."""
        key = lookup_key(username)
        if key is None:
            return {}
        rows = await self._run(
            lambda c: c.execute(
                "SELECT conversation, last_read_id FROM read_markers WHERE username = ?", (key,)
            ).fetchall()
        )
        return dict(rows)
