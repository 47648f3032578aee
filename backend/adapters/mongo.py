"""The distributed Registry over MongoDB (`TASKER_REGISTRY_URL=mongodb://host:27017/dbname`).

Written for what every MongoDB-compatible server we run on guarantees, FerretDB v1 included:
no transactions, and - measured on FerretDB v1.24 - no atomic read-modify-write either
(`$inc`, `$max` and conditional `$set` lose concurrent updates: 40 concurrent `$inc` from two
clients left the counter at 10-16). What is atomic is an insert against a unique index. So
every rule that must hold under concurrency is decided by a unique index on insert:

- chat ids: a message is inserted with id = (last id of its conversation) + 1 and the unique
  index on (conversation, id) rejects a lost race, which then re-reads and retries. Ids are thus
  consecutive from 1 without gaps, and id N+1 can only be inserted once N is visible, so a
  reader paging with `chat_after(last_seen)` never skips a message that shows up later.
- chat idempotency: the document `_id` is (conversation, sender, client_key).
- read markers: each advance inserts a document; markers below it are then deleted, so the
  highest one always survives and a marker never moves backwards.

Values from callers are checked to be plain strings/numbers before they go into a filter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import Iterator
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError
from pymongo.uri_parser import parse_uri
from pymongo.write_concern import WriteConcern

from backend.adapters.mongo_tasks import MongoTasks
from backend.adapters.registry_values import (
    chat_values,
    extra_from_json,
    lookup_key,
    name_key,
    record_values,
    require_count,
    require_str,
)
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

# How long an unreachable server may keep a caller waiting before Unavailable.
_SERVER_SELECTION_MS = 2000
# Tries to allocate a chat id before giving up; each lost race means another message got in.
_APPEND_ATTEMPTS = 200


def _to_doc(record: Any, key_field: str) -> dict[str, Any]:
    """A port record as a document whose `_id` is its key field (which makes it unique)."""
    values = record_values(record)
    values["_id"] = values.pop(key_field)
    return values


def _from_doc(cls: type, doc: dict[str, Any], key_field: str) -> Any:
    doc = dict(doc)
    doc[key_field] = doc.pop("_id")
    return cls(**doc)


def _chat_from_doc(doc: dict[str, Any]) -> ChatMessage:
    return ChatMessage(
        conversation=doc["conversation"],
        id=doc["id"],
        sender=doc["sender"],
        sender_role=doc["sender_role"],
        text=doc["text"],
        ts_ms=doc["ts_ms"],
        client_key=doc["client_key"],
        extra=extra_from_json(doc["extra"]),
    )


def _is_unique_violation(exc: PyMongoError) -> bool:
    # FerretDB reports a unique index broken by an update as InternalError, not as code 11000.
    return isinstance(exc, DuplicateKeyError) or (
        isinstance(exc, OperationFailure) and "UNIQUE constraint failed" in str(exc)
    )


class MongoRegistry(MongoTasks):
    """Registry port over MongoDB through pymongo's asyncio client; tasks, leases and grid
    traces live in `MongoTasks`."""

    def __init__(self, url: str) -> None:
        try:
            parsed = parse_uri(url)
        except PyMongoError as exc:
            raise ValueError(f"registry URL {url!r}: {exc}") from None
        self._url = url
        self._where = ",".join(f"{host}:{port}" for host, port in parsed["nodelist"])
        self._db_name = parsed["database"] or "tasker"
        self._client: AsyncMongoClient | None = None

    # --- plumbing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _driver_errors(self) -> Iterator[None]:
        """Turn a driver failure into Unavailable naming MongoDB and where it was looked for."""
        try:
            yield
        except PyMongoError as exc:
            reason = str(exc)
            if isinstance(exc, ConnectionFailure):  # drop the topology dump pymongo appends
                reason = reason.split(" (configured timeouts")[0].split(", Timeout:")[0]
            raise Unavailable(f"MongoDB at {self._where} ({self._db_name}): {reason}") from exc

    @property
    def _db(self) -> Any:
        if self._client is None:
            raise Unavailable(f"MongoDB registry at {self._where}: not started (or already closed)")
        return self._client[self._db_name]

    async def start(self) -> None:
        """Connect (Unavailable within about 2 s if nobody answers) and create the indexes."""
        if self._client is None:
            self._client = AsyncMongoClient(
                self._url,
                serverSelectionTimeoutMS=_SERVER_SELECTION_MS,
                connectTimeoutMS=_SERVER_SELECTION_MS,
                socketTimeoutMS=10_000,
                # On a replica set a write is acknowledged once most members hold it, so a failover
                # never rolls back an account, session, server name or chat message already
                # confirmed; reads see only such writes. (One FerretDB node here accepts both.)
                w="majority",
                readConcernLevel="majority",
                retryWrites=True,
            )
        await self.ping()
        db = self._db
        with self._driver_errors():
            await db.servers.create_index("name_key", unique=True, name="server_name_unique")
            await db.chat_messages.create_index(
                [("conversation", ASCENDING), ("id", ASCENDING)], unique=True, name="chat_id_unique"
            )
            await db.chat_messages.create_index(
                [("conversation", ASCENDING), ("sender", ASCENDING), ("client_key", ASCENDING)],
                unique=True,
                name="chat_client_key_unique",
            )
            await db.chat_read_markers.create_index("username", name="read_marker_user")
            await db.sessions.create_index("expires_at_ms", name="session_expiry")
            await db.sessions.create_index("username", name="session_user")
            await self._create_task_indexes()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def ping(self) -> None:
        """Return if MongoDB answers; Unavailable naming MongoDB and host:port otherwise."""
        db = self._db
        with self._driver_errors():
            await db.command("ping")

    # --- servers ----------------------------------------------------------------------------

    def _server_doc(self, server: ServerRecord) -> dict[str, Any]:
        doc = _to_doc(server, "id")
        doc["name_key"] = name_key(doc["name"])
        return doc

    async def _name_holder(self, doc: dict[str, Any]) -> str | None:
        """Id of the server other than doc's that holds doc's name (any case), if any."""
        holder = await self._db.servers.find_one(
            {"name_key": doc["name_key"], "_id": {"$ne": doc["_id"]}}, projection={"_id": 1}
        )
        return None if holder is None else holder["_id"]

    async def add_server(self, server: ServerRecord) -> None:
        """Store a new server; Conflict when its id or (case-insensitively) its name is taken."""
        doc = self._server_doc(server)
        with self._driver_errors():
            try:
                await self._db.servers.insert_one(doc)
            except DuplicateKeyError:
                if await self._db.servers.find_one({"_id": doc["_id"]}, projection={"_id": 1}):
                    raise Conflict(f"server id {doc['_id']!r} already exists") from None
                holder = await self._name_holder(doc)
                raise Conflict(f"server name {doc['name']!r} is taken by server {holder!r}") from None

    async def get_server(self, server_id: str) -> ServerRecord:
        """The server with this id; NotFound otherwise."""
        doc = None
        if lookup_key(server_id) is not None:
            with self._driver_errors():
                doc = await self._db.servers.find_one({"_id": server_id}, projection={"name_key": 0})
        if doc is None:
            raise NotFound(f"no server with id {server_id!r}")
        return _from_doc(ServerRecord, doc, "id")

    async def list_servers(self) -> list[ServerRecord]:
        """Every server, ordered by name (case-insensitively)."""
        with self._driver_errors():
            docs = (
                await self._db.servers.find({}, projection={"name_key": 0})
                .sort([("name_key", ASCENDING), ("_id", ASCENDING)])
                .to_list()
            )
        return [_from_doc(ServerRecord, d, "id") for d in docs]

    async def replace_server(self, server: ServerRecord) -> None:
        """Overwrite the server with the record's id; NotFound, or Conflict when the name is
        taken by another server."""
        doc = self._server_doc(server)
        server_id = doc.pop("_id")
        with self._driver_errors():
            holder = await self._name_holder({**doc, "_id": server_id})
            if holder is None:
                try:
                    result = await self._db.servers.replace_one({"_id": server_id}, doc)
                except PyMongoError as exc:
                    if not _is_unique_violation(exc):
                        raise
                    holder = "another server"  # renamed concurrently to the same name
        if holder is not None:
            raise Conflict(f"server name {doc['name']!r} is taken by server {holder!r}")
        if result.matched_count == 0:
            raise NotFound(f"no server with id {server_id!r}")

    async def delete_server(self, server_id: str) -> None:
        """Remove a server; NotFound when there is none with this id."""
        deleted = 0
        if lookup_key(server_id) is not None:
            with self._driver_errors():
                deleted = (await self._db.servers.delete_one({"_id": server_id})).deleted_count
        if deleted == 0:
            raise NotFound(f"no server with id {server_id!r}")

    async def server_ids(self) -> set[str]:
        """Ids of every registered server."""
        with self._driver_errors():
            docs = await self._db.servers.find({}, projection={"_id": 1}).to_list()
        return {d["_id"] for d in docs}

    # --- users, sessions, ingest keys: one document each, keyed by `_id` --------------------

    async def _insert(self, collection: str, record: Any, key_field: str, conflict: str) -> None:
        doc = _to_doc(record, key_field)
        with self._driver_errors():
            try:
                await self._db[collection].insert_one(doc)
            except DuplicateKeyError:
                raise Conflict(conflict) from None

    async def _by_key(self, collection: str, key: object) -> dict[str, Any] | None:
        """The document with `_id` == key; None without asking when key is not a string."""
        if lookup_key(key) is None:
            return None
        with self._driver_errors():
            return await self._db[collection].find_one({"_id": key})

    async def _all(self, collection: str, order: list[tuple[str, int]]) -> list[dict[str, Any]]:
        with self._driver_errors():
            return await self._db[collection].find({}).sort(order).to_list()

    async def add_user(self, user: UserRecord) -> None:
        """Store a new user; Conflict when the username is taken."""
        await self._insert("users", user, "username", f"username {user.username!r} is taken")

    async def get_user(self, username: str) -> UserRecord | None:
        """The user, or None (also when `username` is not a string)."""
        doc = await self._by_key("users", username)
        return None if doc is None else _from_doc(UserRecord, doc, "username")

    async def list_users(self) -> list[UserRecord]:
        """Every user, ordered by username."""
        return [_from_doc(UserRecord, d, "username") for d in await self._all("users", [("_id", 1)])]

    async def _set_user(self, username: object, changes: dict[str, Any], only_if: dict[str, Any] | None = None) -> None:
        """`$set` plain values on one user; NotFound when there is none. With `only_if`, the
        fields are set only where that also matches (the user still counts as found)."""
        if lookup_key(username) is None:
            raise NotFound(f"no user {username!r}")
        with self._driver_errors():
            result = await self._db.users.update_one({"_id": username, **(only_if or {})}, {"$set": changes})
            if result.matched_count == 0 and only_if is not None:
                if await self._db.users.find_one({"_id": username}, projection={"_id": 1}):
                    return
        if result.matched_count == 0:
            raise NotFound(f"no user {username!r}")

    async def set_password_hash(
        self, username: str, password_hash: str, *, must_change_password: bool = False, changed_at_ms: int | None = None
    ) -> None:
        """Replace a user's password hash and must-change flag (and when it changed, if given);
        NotFound when there is no such user."""
        changes: dict[str, Any] = {"password_hash": require_str("password_hash", password_hash)}
        if not isinstance(must_change_password, bool):
            raise TypeError("must_change_password must be true or false")
        changes["must_change_password"] = must_change_password
        if changed_at_ms is not None:
            changes["password_changed_at_ms"] = require_count("changed_at_ms", changed_at_ms)
        await self._set_user(username, changes)

    async def set_must_change_password(self, username: str, must_change: bool) -> None:
        """Set or clear the must-change flag alone; NotFound when there is no such user."""
        if not isinstance(must_change, bool):
            raise TypeError("must_change must be true or false")
        await self._set_user(username, {"must_change_password": must_change})

    async def set_user_disabled(self, username: str, disabled_at_ms: int | None) -> None:
        """Disable from `disabled_at_ms` (a second disable keeps the first time) or enable with
        None; NotFound when there is no such user."""
        if disabled_at_ms is None:
            await self._set_user(username, {"disabled_at_ms": None})
            return
        at = require_count("disabled_at_ms", disabled_at_ms)
        # Old documents have no field at all: {"disabled_at_ms": None} matches both.
        await self._set_user(username, {"disabled_at_ms": at}, only_if={"disabled_at_ms": None})

    async def delete_user(self, username: str) -> None:
        """Forget a user; NotFound when there is no such user."""
        deleted = 0
        if lookup_key(username) is not None:
            with self._driver_errors():
                deleted = (await self._db.users.delete_one({"_id": username})).deleted_count
        if deleted == 0:
            raise NotFound(f"no user {username!r}")

    async def add_session(self, session: SessionRecord) -> None:
        """Store a session; Conflict if its token hash already exists."""
        await self._insert("sessions", session, "token_hash", "a session with this token already exists")

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        """The session, expired or not, or None (also when `token_hash` is not a string)."""
        doc = await self._by_key("sessions", token_hash)
        return None if doc is None else _from_doc(SessionRecord, doc, "token_hash")

    async def delete_session(self, token_hash: str) -> None:
        """Forget a session; deleting one that does not exist is not an error (logout twice)."""
        if lookup_key(token_hash) is not None:
            with self._driver_errors():
                await self._db.sessions.delete_one({"_id": token_hash})

    async def list_sessions(self, username: str) -> list[SessionRecord]:
        """The user's sessions, expired or not, oldest first ([] for an unknown user)."""
        if lookup_key(username) is None:
            return []
        with self._driver_errors():
            docs = (
                await self._db.sessions.find({"username": username})
                .sort([("created_at_ms", ASCENDING), ("_id", ASCENDING)])
                .to_list()
            )
        return [_from_doc(SessionRecord, d, "token_hash") for d in docs]

    async def delete_user_sessions(self, username: str, keep: str | None = None) -> int:
        """Delete every session of `username` but `keep` (a token hash); returns how many."""
        kept = "" if keep is None else require_str("keep", keep)
        if lookup_key(username) is None:
            return 0
        with self._driver_errors():
            result = await self._db.sessions.delete_many({"username": username, "_id": {"$ne": kept}})
        return result.deleted_count

    async def purge_expired_sessions(self, now_ms: int) -> int:
        """Delete the sessions that expired at or before `now_ms`; returns how many. (FerretDB
        v1 has no TTL index to do it.)"""
        with self._driver_errors():
            result = await self._db.sessions.delete_many({"expires_at_ms": {"$lte": int(now_ms)}})
        return result.deleted_count

    async def add_ingest_key(self, key: IngestKeyRecord) -> None:
        """Store an ingest key; Conflict when its key id exists."""
        await self._insert("ingest_keys", key, "key_id", f"ingest key {key.key_id!r} already exists")

    async def get_ingest_key(self, key_id: str) -> IngestKeyRecord | None:
        """The key, revoked or not, or None."""
        doc = await self._by_key("ingest_keys", key_id)
        return None if doc is None else _from_doc(IngestKeyRecord, doc, "key_id")

    # --- audit --------------------------------------------------------------------------------

    async def append_audit(self, entry: AuditRecord) -> None:
        """Keep one audit entry (majority-acknowledged); the same id twice keeps the first."""
        doc = _to_doc(entry, "id")
        with self._driver_errors():
            try:
                await self._db.get_collection("audit", write_concern=WriteConcern("majority")).insert_one(doc)
            except DuplicateKeyError:
                pass

    async def list_audit(self, limit: int, before_id: str | None = None) -> list[AuditRecord]:
        """The newest `limit` entries before `before_id`, newest first."""
        count = require_count("limit", limit)
        query: dict[str, Any] = {}
        if before_id is not None:
            query = {"_id": {"$lt": require_str("before_id", before_id)}}
        with self._driver_errors():
            docs = await self._db.audit.find(query).sort([("_id", -1)]).limit(count).to_list()
        return [_from_doc(AuditRecord, d, "id") for d in docs]

    async def list_ingest_keys(self) -> list[IngestKeyRecord]:
        """Every key, revoked ones included, oldest first."""
        docs = await self._all("ingest_keys", [("created_at_ms", 1), ("_id", 1)])
        return [_from_doc(IngestKeyRecord, d, "key_id") for d in docs]

    async def revoke_ingest_key(self, key_id: str, at_ms: int) -> None:
        """Mark a key revoked at `at_ms` (a second revoke keeps the first time); NotFound."""
        at = require_count("revoked at_ms", at_ms)
        if await self._by_key("ingest_keys", key_id) is None:
            raise NotFound(f"no ingest key {key_id!r}")
        with self._driver_errors():
            # Two revocations racing may leave the later time; the key is revoked either way.
            await self._db.ingest_keys.update_one(
                {"_id": key_id, "revoked_at_ms": None}, {"$set": {"revoked_at_ms": at}}
            )

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
        conv, who, role, body, ts, ckey, extra_json = chat_values(
            conversation, sender, sender_role, text, ts_ms, client_key, extra
        )
        doc = {
            "_id": json.dumps([conv, who, ckey]),
            "conversation": conv,
            "sender": who,
            "sender_role": role,
            "text": body,
            "ts_ms": ts,
            "client_key": ckey,
            "extra": extra_json,
        }
        chat = self._db.chat_messages
        with self._driver_errors():
            for attempt in range(_APPEND_ATTEMPTS):
                existing = await chat.find_one({"_id": doc["_id"]})
                if existing is not None:
                    return _chat_from_doc(existing), False
                last = await chat.find_one(
                    {"conversation": conv}, projection={"id": 1, "ts_ms": 1}, sort=[("id", DESCENDING)]
                )
                doc["id"] = 1 if last is None else last["id"] + 1
                # Time never goes backwards along the ids, whichever api process's clock stamped it.
                doc["ts_ms"] = ts if last is None else max(ts, int(last["ts_ms"]))
                try:
                    await chat.insert_one(doc)
                    return _chat_from_doc(doc), True
                except DuplicateKeyError:
                    # Another message took this id (or this very message got in): look again,
                    # after a short random pause so that racing appenders spread out.
                    await asyncio.sleep(random.uniform(0, 0.002 * min(attempt + 1, 10)))
        raise Unavailable(
            f"MongoDB at {self._where}: conversation {conv!r} too busy, no chat id after {_APPEND_ATTEMPTS} attempts"
        )

    async def _chat_page(
        self, conversation: str, id_range: dict[str, int], direction: int, limit: int
    ) -> list[ChatMessage]:
        """Up to `limit` messages of a conversation with ids in `id_range`, in `direction`."""
        if lookup_key(conversation) is None or limit == 0:  # pymongo reads limit 0 as "no limit"
            return []
        query: dict[str, Any] = {"conversation": conversation}
        if id_range:
            query["id"] = id_range
        with self._driver_errors():
            docs = await self._db.chat_messages.find(query).sort("id", direction).limit(limit).to_list()
        return [_chat_from_doc(d) for d in docs]

    async def chat_after(self, conversation: str, after_id: int, limit: int) -> list[ChatMessage]:
        """Up to `limit` messages with id > after_id, oldest first."""
        after = require_count("after_id", after_id)
        return await self._chat_page(conversation, {"$gt": after}, ASCENDING, require_count("limit", limit))

    async def chat_before(self, conversation: str, before_id: int | None, limit: int) -> list[ChatMessage]:
        """The `limit` messages just before before_id (or the newest ones), oldest first."""
        n = require_count("limit", limit)
        id_range = {} if before_id is None else {"$lt": require_count("before_id", before_id)}
        return list(reversed(await self._chat_page(conversation, id_range, DESCENDING, n)))

    async def list_conversations(self) -> list[tuple[str, int, int]]:
        """(conversation, last id, last ts_ms) of every conversation, newest activity first."""
        chat = self._db.chat_messages
        with self._driver_errors():
            # FerretDB v1 has no $max/$first accumulators: one small query per conversation
            # (there is one conversation per sysadmin).
            conversations = await chat.distinct("conversation")
            lasts = await asyncio.gather(
                *(
                    chat.find_one({"conversation": c}, projection={"id": 1, "ts_ms": 1}, sort=[("id", DESCENDING)])
                    for c in conversations
                )
            )
        found = [(c, d["id"], d["ts_ms"]) for c, d in zip(conversations, lasts) if d is not None]
        return sorted(found, key=lambda row: (-row[2], row[0]))

    async def set_read_marker(self, conversation: str, username: str, last_read_id: int) -> None:
        """Remember how far `username` has read `conversation`; never moves backwards."""
        conv = require_str("conversation", conversation)
        user = require_str("username", username)
        read = require_count("last_read_id", last_read_id)
        markers = self._db.chat_read_markers
        with self._driver_errors():
            try:
                await markers.insert_one(
                    {
                        "_id": json.dumps([conv, user, read]),
                        "conversation": conv,
                        "username": user,
                        "last_read_id": read,
                    }
                )
            except DuplicateKeyError:
                pass  # this very marker is already there
            # Only markers below one that now exists go, so the highest always stays.
            await markers.delete_many({"conversation": conv, "username": user, "last_read_id": {"$lt": read}})

    async def read_markers(self, username: str) -> dict[str, int]:
        """conversation -> last read id, for one user (empty for an unknown user)."""
        if lookup_key(username) is None:
            return {}
        with self._driver_errors():
            docs = await self._db.chat_read_markers.find({"username": username}).to_list()
        markers: dict[str, int] = {}
        for d in docs:  # a lower marker may linger until its deletion lands
            markers[d["conversation"]] = max(markers.get(d["conversation"], 0), d["last_read_id"])
        return markers
