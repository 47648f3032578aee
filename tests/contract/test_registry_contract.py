"""The Registry contract: the same assertions over the embedded SQLite adapter and over MongoDB
(the real FerretDB started by `compose/local/services up`; these cases fail when it is down).

Each mongo case uses its own database with a random suffix and drops it at the end.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from urllib.parse import urlsplit, urlunsplit

import pytest

from backend.ports import (
    Conflict,
    IngestKeyRecord,
    NotFound,
    Registry,
    ServerRecord,
    SessionRecord,
    Unavailable,
    UserRecord,
)

MakeRegistry = Callable[[], Awaitable[Registry]]

# Values a hostile JSON body could carry where a string is expected.
OPERATOR_VALUES = [{"$gt": ""}, {"$ne": None}, {"$regex": ".*"}, ["a"], 1]


def _mongo_db_url(base_url: str, db_name: str) -> str:
    parts = urlsplit(base_url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + db_name, parts.query, ""))


@pytest.fixture(params=["sqlite", "mongo"])
async def make_registry(request, tmp_path) -> AsyncIterator[MakeRegistry]:
    """A factory of started registries that all share one store (one SQLite file, or one
    MongoDB database); each call is a separate instance, as two backend processes would be."""
    opened: list[Registry] = []
    if request.param == "sqlite":
        from backend.adapters.sqlite_registry import SqliteRegistry

        def new() -> Registry:
            return SqliteRegistry(tmp_path / "registry.db")
    else:
        from backend.adapters.mongo import MongoRegistry

        db_name = f"tasker_registry_{uuid.uuid4().hex[:12]}"
        url = _mongo_db_url(request.getfixturevalue("mongodb_url"), db_name)

        def new() -> Registry:
            return MongoRegistry(url)

    async def make() -> Registry:
        registry = new()
        await registry.start()
        opened.append(registry)
        return registry

    try:
        yield make
    finally:
        for registry in opened:
            await registry.close()
        if request.param == "mongo":
            from pymongo import AsyncMongoClient

            client = AsyncMongoClient(url, serverSelectionTimeoutMS=3000)
            try:
                await client.drop_database(db_name)
            finally:
                await client.close()


@pytest.fixture
async def registry(make_registry: MakeRegistry) -> Registry:
    return await make_registry()


def server(id_: str = "srv-1", name: str = "web-1", **changes) -> ServerRecord:
    record = ServerRecord(
        id=id_,
        name=name,
        region="eu-west",
        site="dublin-1",
        energy_source="wind",
        carbon_intensity_g_per_kwh=11.0,
        carbon_intensity_source="life-cycle median for wind",
        pue=1.25,
        idle_watts=95.5,
        max_watts=410.0,
        cores=32,
        tags=["web", "prod"],
        created_at_ms=1_700_000_000_000,
        created_by="alice",
        updated_at_ms=1_700_000_000_000,
    )
    return replace(record, **changes)


# --- servers ------------------------------------------------------------------------------------


async def test_server_round_trips_every_field(registry: Registry) -> None:
    await registry.add_server(server())
    got = await registry.get_server("srv-1")
    assert got == server()
    assert isinstance(got.pue, float) and isinstance(got.cores, int)


async def test_float_fields_given_as_int_come_back_as_float(registry: Registry) -> None:
    await registry.add_server(server(pue=2, max_watts=500))
    got = await registry.get_server("srv-1")
    assert (got.pue, got.max_watts) == (2.0, 500.0)
    assert isinstance(got.pue, float) and isinstance(got.max_watts, float)


async def test_list_servers_by_name_and_server_ids(registry: Registry) -> None:
    await registry.add_server(server("s-b", "beta"))
    await registry.add_server(server("s-a", "Alpha"))
    await registry.add_server(server("s-c", "gamma"))
    assert [s.name for s in await registry.list_servers()] == ["Alpha", "beta", "gamma"]
    assert await registry.server_ids() == {"s-a", "s-b", "s-c"}


async def test_empty_registry_lists_nothing(registry: Registry) -> None:
    assert await registry.list_servers() == []
    assert await registry.server_ids() == set()
    assert await registry.list_users() == []
    assert await registry.list_ingest_keys() == []
    assert await registry.list_conversations() == []


@pytest.mark.parametrize("taken_name", ["web-1", "WEB-1", "Web-1"])
async def test_server_name_is_unique_ignoring_case(registry: Registry, taken_name: str) -> None:
    await registry.add_server(server("srv-1", "web-1"))
    with pytest.raises(Conflict, match="(?i)name"):
        await registry.add_server(server("srv-2", taken_name))
    assert await registry.server_ids() == {"srv-1"}
    assert (await registry.get_server("srv-1")).name == "web-1"


async def test_server_id_is_unique(registry: Registry) -> None:
    await registry.add_server(server("srv-1", "web-1"))
    with pytest.raises(Conflict, match="id"):
        await registry.add_server(server("srv-1", "other-name"))
    assert [s.name for s in await registry.list_servers()] == ["web-1"]


async def test_racing_adds_of_one_name_keep_one(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    names = ["web-9", "WEB-9", "Web-9", "wEb-9"] * 3
    results = await asyncio.gather(
        *((a if i % 2 else b).add_server(server(f"srv-{i}", name)) for i, name in enumerate(names)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 1
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    assert len(await a.list_servers()) == 1


async def test_racing_renames_to_one_name_keep_one(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    for i in range(6):
        await a.add_server(server(f"srv-{i}", f"old-{i}"))
    results = await asyncio.gather(
        *((a if i % 2 else b).replace_server(server(f"srv-{i}", f"NEW-{i % 2}")) for i in range(6)),
        return_exceptions=True,
    )
    assert sum(r is None for r in results) == 2  # one winner per new name
    assert all(isinstance(r, Conflict) for r in results if r is not None)
    names = sorted(s.name for s in await b.list_servers())
    assert names.count("NEW-0") == names.count("NEW-1") == 1


async def test_replace_server_overwrites_by_id(registry: Registry) -> None:
    await registry.add_server(server())
    edited = server(name="web-1-renamed", pue=1.1, tags=["web"], updated_at_ms=1_700_000_999_000)
    await registry.replace_server(edited)
    assert await registry.get_server("srv-1") == edited
    # The old name is free again.
    await registry.add_server(server("srv-2", "web-1"))


async def test_replace_server_may_change_case_of_its_own_name(registry: Registry) -> None:
    await registry.add_server(server())
    await registry.replace_server(server(name="WEB-1"))
    assert (await registry.get_server("srv-1")).name == "WEB-1"


async def test_replace_server_refuses_a_name_taken_by_another(registry: Registry) -> None:
    await registry.add_server(server("srv-1", "web-1"))
    await registry.add_server(server("srv-2", "db-1"))
    with pytest.raises(Conflict):
        await registry.replace_server(server("srv-2", "Web-1"))
    assert (await registry.get_server("srv-2")).name == "db-1"


async def test_replace_unknown_server_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound):
        await registry.replace_server(server("nope", "x"))
    assert await registry.list_servers() == []


async def test_delete_server_frees_id_and_name(registry: Registry) -> None:
    await registry.add_server(server())
    await registry.delete_server("srv-1")
    with pytest.raises(NotFound):
        await registry.get_server("srv-1")
    with pytest.raises(NotFound):
        await registry.delete_server("srv-1")
    await registry.add_server(server())
    assert await registry.server_ids() == {"srv-1"}


async def test_get_unknown_server_is_not_found(registry: Registry) -> None:
    with pytest.raises(NotFound, match="nope"):
        await registry.get_server("nope")


@pytest.mark.parametrize(
    "changes",
    [
        {"name": {"$gt": ""}},
        {"pue": math.nan},
        {"cores": True},
        {"tags": "web"},
        {"id": None},
        {"created_at_ms": 2**70},
    ],
)
async def test_server_with_non_plain_field_is_refused(registry: Registry, changes) -> None:
    with pytest.raises(TypeError, match=next(iter(changes))):
        await registry.add_server(server(**changes))
    assert await registry.list_servers() == []


async def test_writes_are_seen_by_another_instance(make_registry: MakeRegistry) -> None:
    first = await make_registry()
    await first.add_server(server())
    await first.append_chat("bob", "bob", "sysadmin", "hi", 1, "k1")
    second = await make_registry()  # also shows start() is idempotent on an existing store
    assert await second.get_server("srv-1") == server()
    assert [m.text for m in await second.chat_after("bob", 0, 10)] == ["hi"]


# --- users and sessions -------------------------------------------------------------------------


async def test_users(registry: Registry) -> None:
    bob = UserRecord("bob", "sysadmin", "hash-1", 1_700_000_000_000)
    await registry.add_user(bob)
    await registry.add_user(UserRecord("alice", "admin", "hash-2", 1_700_000_000_001))
    assert await registry.get_user("bob") == bob
    assert await registry.get_user("carol") is None
    assert [u.username for u in await registry.list_users()] == ["alice", "bob"]
    with pytest.raises(Conflict, match="bob"):
        await registry.add_user(UserRecord("bob", "engineer", "hash-3", 1))
    assert (await registry.get_user("bob")).role == "sysadmin"


async def test_set_password_hash(registry: Registry) -> None:
    await registry.add_user(UserRecord("bob", "sysadmin", "old", 1))
    await registry.set_password_hash("bob", "new")
    assert (await registry.get_user("bob")).password_hash == "new"
    with pytest.raises(NotFound):
        await registry.set_password_hash("carol", "x")


async def test_sessions(registry: Registry) -> None:
    expired = SessionRecord("tok-old", "bob", "sysadmin", expires_at_ms=5, created_at_ms=1)
    live = SessionRecord("tok-new", "bob", "sysadmin", 2_000_000_000_000, 1_700_000_000_000)
    await registry.add_session(expired)
    await registry.add_session(live)
    assert await registry.get_session("tok-old") == expired  # the caller judges expiry
    assert await registry.get_session("tok-new") == live
    assert await registry.get_session("tok-none") is None
    await registry.delete_session("tok-new")
    await registry.delete_session("tok-new")  # logging out twice is harmless
    assert await registry.get_session("tok-new") is None
    assert await registry.get_session("tok-old") == expired


async def test_purging_expired_sessions_removes_those_and_only_those(make_registry: MakeRegistry) -> None:
    first, second = await make_registry(), await make_registry()
    now = 1_800_000_000_000
    sessions = [
        SessionRecord("tok-long-gone", "bob", "sysadmin", expires_at_ms=5, created_at_ms=1),
        SessionRecord("tok-just-expired", "bob", "sysadmin", expires_at_ms=now, created_at_ms=now - 10),
        SessionRecord("tok-one-ms-left", "eve", "engineer", expires_at_ms=now + 1, created_at_ms=now - 10),
        SessionRecord("tok-fresh", "eve", "admin", expires_at_ms=now + 3_600_000, created_at_ms=now),
    ]
    for session in sessions:
        await first.add_session(session)
    assert await second.purge_expired_sessions(now) == 2  # any process may purge
    for token in ("tok-long-gone", "tok-just-expired"):
        assert await first.get_session(token) is None, f"{token} survived the purge"
    for session in sessions[2:]:
        assert await first.get_session(session.token_hash) == session, "a live session was purged"
    assert await first.purge_expired_sessions(now) == 0  # nothing left to purge: harmless
    assert await first.purge_expired_sessions(now + 3_600_000) == 2
    assert await first.get_session("tok-fresh") is None


# --- ingest keys --------------------------------------------------------------------------------


async def test_ingest_keys(registry: Registry) -> None:
    k1 = IngestKeyRecord("key-1", "h1", "rack A", "alice", 100)
    k2 = IngestKeyRecord("key-2", "h2", "rack B", "alice", 200)
    await registry.add_ingest_key(k2)
    await registry.add_ingest_key(k1)
    assert await registry.list_ingest_keys() == [k1, k2]
    assert await registry.get_ingest_key("key-1") == k1
    assert await registry.get_ingest_key("key-3") is None
    with pytest.raises(Conflict):
        await registry.add_ingest_key(IngestKeyRecord("key-1", "hx", "dup", "alice", 300))

    await registry.revoke_ingest_key("key-1", 500)
    await registry.revoke_ingest_key("key-1", 900)  # the first revocation time stands
    assert (await registry.get_ingest_key("key-1")).revoked_at_ms == 500
    assert (await registry.get_ingest_key("key-2")).revoked_at_ms is None
    assert [k.revoked_at_ms for k in await registry.list_ingest_keys()] == [500, None]
    with pytest.raises(NotFound):
        await registry.revoke_ingest_key("key-3", 500)


async def test_ingest_key_keeps_its_server_scope(registry: Registry) -> None:
    scoped = IngestKeyRecord("key-s", "hs", "rack C", "alice", 100, server_id="srv-7")
    await registry.add_ingest_key(scoped)
    await registry.add_ingest_key(IngestKeyRecord("key-u", "hu", "any", "alice", 200))
    assert (await registry.get_ingest_key("key-s")).server_id == "srv-7"
    assert (await registry.get_ingest_key("key-u")).server_id is None
    await registry.revoke_ingest_key("key-s", 300)
    assert [(k.key_id, k.server_id) for k in await registry.list_ingest_keys()] == [("key-s", "srv-7"), ("key-u", None)]


# --- chat ---------------------------------------------------------------------------------------


async def test_chat_ids_count_from_one_per_conversation(registry: Registry) -> None:
    ids = []
    for i, (conv, sender) in enumerate(
        [("bob", "bob"), ("bob", "eve"), ("dan", "dan"), ("bob", "bob"), ("dan", "eve")]
    ):
        msg, created = await registry.append_chat(conv, sender, "x", f"m{i}", 1000 + i, f"k{i}")
        assert created
        ids.append((conv, msg.id))
    assert ids == [("bob", 1), ("bob", 2), ("dan", 1), ("bob", 3), ("dan", 2)]


async def test_chat_time_never_goes_backwards_along_ids(registry: Registry) -> None:
    # Two api processes with slightly different clocks append to one conversation.
    first, _ = await registry.append_chat("bob", "bob", "sysadmin", "a", 5_000, "k1")
    second, _ = await registry.append_chat("bob", "eve", "engineer", "b", 4_990, "k2")
    third, _ = await registry.append_chat("bob", "bob", "sysadmin", "c", 6_000, "k3")
    assert [m.ts_ms for m in (first, second, third)] == [5_000, 5_000, 6_000]
    stored = await registry.chat_after("bob", 0, 10)
    assert [(m.id, m.ts_ms) for m in stored] == [(1, 5_000), (2, 5_000), (3, 6_000)]


async def test_chat_message_round_trips(registry: Registry) -> None:
    extra = {"server_id": "srv-1", "nested": {"$gt": "", "a.b": [1, 2.5, None]}}
    msg, created = await registry.append_chat(
        "bob", "eve", "engineer", "Rebooting web-1 now", 1_700_000_000_123, "ck-1", extra
    )
    assert created
    assert (msg.conversation, msg.id, msg.sender, msg.sender_role, msg.text, msg.ts_ms, msg.client_key, msg.extra) == (
        "bob",
        1,
        "eve",
        "engineer",
        "Rebooting web-1 now",
        1_700_000_000_123,
        "ck-1",
        extra,
    )
    assert await registry.chat_after("bob", 0, 10) == [msg]
    plain, _ = await registry.append_chat("bob", "bob", "sysadmin", "ok", 2, "ck-2")
    assert plain.extra == {}


async def test_chat_re_append_returns_the_original(registry: Registry) -> None:
    first, created = await registry.append_chat("bob", "bob", "sysadmin", "hello", 10, "ck")
    again, created_again = await registry.append_chat("bob", "bob", "sysadmin", "hello?", 20, "ck")
    assert created and not created_again
    assert again == first  # the stored message, not the retried text
    # The same client key from another sender, or in another conversation, is a new message.
    other, created_other = await registry.append_chat("bob", "eve", "engineer", "hi", 30, "ck")
    elsewhere, created_elsewhere = await registry.append_chat("dan", "bob", "sysadmin", "x", 40, "ck")
    assert created_other and created_elsewhere
    assert (other.id, elsewhere.id) == (2, 1)
    assert [m.text for m in await registry.chat_after("bob", 0, 10)] == ["hello", "hi"]


async def test_concurrent_appends_from_two_instances(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    n = 40

    async def send(reg: Registry, i: int) -> int:
        msg, created = await reg.append_chat("bob", "bob", "sysadmin", f"m{i}", i, f"k{i}")
        assert created
        return msg.id

    ids = await asyncio.gather(*(send(a if i % 2 else b, i) for i in range(n)))
    assert sorted(ids) == list(range(1, n + 1))
    stored = await a.chat_after("bob", 0, 100)
    assert [m.id for m in stored] == list(range(1, n + 1))
    assert {m.client_key for m in stored} == {f"k{i}" for i in range(n)}


async def test_concurrent_retries_store_one_message(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    before, _ = await a.append_chat("bob", "bob", "sysadmin", "before", 1, "k-before")
    results = await asyncio.gather(
        *(reg.append_chat("bob", "bob", "sysadmin", "same", 2, "k-same") for reg in [a, b] * 5)
    )
    assert sum(created for _, created in results) == 1
    assert len({msg.id for msg, _ in results}) == 1
    after, _ = await b.append_chat("bob", "bob", "sysadmin", "after", 3, "k-after")
    stored = await a.chat_after("bob", 0, 100)
    assert [m.text for m in stored] == ["before", "same", "after"]
    ids = [m.id for m in stored]
    assert ids == sorted(set(ids)) and ids[0] == before.id == 1 and ids[-1] == after.id


async def _fill(registry: Registry, conversation: str, count: int) -> None:
    for i in range(1, count + 1):
        await registry.append_chat(conversation, conversation, "sysadmin", f"m{i}", 1000 + i, f"k{i}")


async def test_chat_after_and_before_pages(registry: Registry) -> None:
    await _fill(registry, "bob", 10)
    await _fill(registry, "dan", 2)

    def ids(msgs):
        return [m.id for m in msgs]

    assert ids(await registry.chat_after("bob", 0, 100)) == list(range(1, 11))
    assert ids(await registry.chat_after("bob", 3, 4)) == [4, 5, 6, 7]
    assert ids(await registry.chat_after("bob", 10, 5)) == []
    assert ids(await registry.chat_after("bob", 0, 0)) == []
    assert ids(await registry.chat_before("bob", None, 3)) == [8, 9, 10]
    assert ids(await registry.chat_before("bob", 5, 3)) == [2, 3, 4]
    assert ids(await registry.chat_before("bob", 2, 10)) == [1]
    assert ids(await registry.chat_before("bob", 1, 10)) == []
    assert ids(await registry.chat_before("nobody", None, 10)) == []
    assert [m.text for m in await registry.chat_before("dan", None, 10)] == ["m1", "m2"]


@pytest.mark.parametrize("bad", [-1, True, "3", None])
async def test_chat_paging_refuses_bad_limits(registry: Registry, bad) -> None:
    with pytest.raises((TypeError, ValueError), match="limit"):
        await registry.chat_after("bob", 0, bad)
    with pytest.raises((TypeError, ValueError), match="limit"):
        await registry.chat_before("bob", None, bad)


async def test_list_conversations_newest_activity_first(registry: Registry) -> None:
    await registry.append_chat("bob", "bob", "sysadmin", "a", 100, "k1")
    await registry.append_chat("dan", "dan", "sysadmin", "b", 200, "k1")
    await registry.append_chat("bob", "eve", "engineer", "c", 300, "k2")
    await registry.append_chat("fay", "fay", "sysadmin", "d", 250, "k1")
    assert await registry.list_conversations() == [("bob", 2, 300), ("fay", 1, 250), ("dan", 1, 200)]


async def test_read_markers_never_move_backwards(registry: Registry) -> None:
    assert await registry.read_markers("eve") == {}
    await registry.set_read_marker("bob", "eve", 5)
    await registry.set_read_marker("bob", "eve", 3)
    await registry.set_read_marker("dan", "eve", 1)
    await registry.set_read_marker("bob", "zed", 2)
    assert await registry.read_markers("eve") == {"bob": 5, "dan": 1}
    await registry.set_read_marker("bob", "eve", 7)
    assert await registry.read_markers("eve") == {"bob": 7, "dan": 1}
    assert await registry.read_markers("zed") == {"bob": 2}


async def test_concurrent_read_markers_keep_the_highest(make_registry: MakeRegistry) -> None:
    a, b = await make_registry(), await make_registry()
    marks = list(range(1, 31))
    random.Random(7).shuffle(marks)
    await asyncio.gather(*((a if i % 2 else b).set_read_marker("bob", "eve", mark) for i, mark in enumerate(marks)))
    assert await a.read_markers("eve") == {"bob": 30}
    assert await b.read_markers("eve") == {"bob": 30}


# --- operator injection -------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", OPERATOR_VALUES, ids=repr)
async def test_operator_values_match_nothing(registry: Registry, hostile) -> None:
    await registry.add_server(server())
    await registry.add_user(UserRecord("bob", "sysadmin", "hash", 1))
    await registry.add_session(SessionRecord("tok", "bob", "sysadmin", 2**40, 1))
    await registry.add_ingest_key(IngestKeyRecord("key-1", "h", "l", "bob", 1))
    await registry.append_chat("bob", "bob", "sysadmin", "hi", 1, "k")
    await registry.set_read_marker("bob", "bob", 1)

    assert await registry.get_user(hostile) is None
    assert await registry.get_session(hostile) is None
    assert await registry.get_ingest_key(hostile) is None
    assert await registry.read_markers(hostile) == {}
    assert await registry.chat_after(hostile, 0, 10) == []
    assert await registry.chat_before(hostile, None, 10) == []
    with pytest.raises(NotFound):
        await registry.get_server(hostile)
    with pytest.raises(NotFound):
        await registry.delete_server(hostile)
    with pytest.raises(NotFound):
        await registry.set_password_hash(hostile, "pwned")
    with pytest.raises(NotFound):
        await registry.revoke_ingest_key(hostile, 5)
    await registry.delete_session(hostile)

    # Nothing was changed or removed by any of those.
    assert await registry.server_ids() == {"srv-1"}
    assert (await registry.get_user("bob")).password_hash == "hash"
    assert await registry.get_session("tok") is not None
    assert (await registry.get_ingest_key("key-1")).revoked_at_ms is None


@pytest.mark.parametrize("hostile", OPERATOR_VALUES[:3], ids=repr)
async def test_operator_values_are_refused_in_writes(registry: Registry, hostile) -> None:
    with pytest.raises(TypeError, match="username"):
        await registry.add_user(UserRecord(hostile, "admin", "h", 1))
    with pytest.raises(TypeError, match="token_hash"):
        await registry.add_session(SessionRecord(hostile, "bob", "admin", 1, 1))
    with pytest.raises(TypeError, match="client_key"):
        await registry.append_chat("bob", "bob", "sysadmin", "x", 1, hostile)
    with pytest.raises(TypeError, match="conversation"):
        await registry.append_chat(hostile, "bob", "sysadmin", "x", 1, "k")
    with pytest.raises(TypeError, match="username"):
        await registry.set_read_marker("bob", hostile, 1)
    with pytest.raises(TypeError, match="password_hash"):
        await registry.set_password_hash("bob", hostile)
    assert await registry.list_users() == []
    assert await registry.list_conversations() == []


async def test_operator_looking_strings_are_plain_names(registry: Registry) -> None:
    for name in ["$gt", '{"$gt": ""}', "a.b", "x'; DROP TABLE users; --"]:
        await registry.add_user(UserRecord(name, "engineer", "h", 1))
        assert (await registry.get_user(name)).username == name
        await registry.add_server(server(f"id-{name}", name))
        assert (await registry.get_server(f"id-{name}")).name == name
    assert len(await registry.list_users()) == 4
    assert await registry.get_user("") is None


# --- availability -------------------------------------------------------------------------------


async def test_ping_answers(registry: Registry) -> None:
    await registry.ping()


async def test_sqlite_registry_that_cannot_open_is_unavailable(tmp_path) -> None:
    from backend.adapters.sqlite_registry import SqliteRegistry

    (tmp_path / "a-file").write_text("not a folder")
    registry = SqliteRegistry(tmp_path / "a-file" / "registry.db")
    with pytest.raises(Unavailable, match="SQLite registry"):
        await registry.start()
    with pytest.raises(Unavailable, match="not started"):
        await registry.ping()


async def test_mongo_registry_without_server_is_unavailable_fast() -> None:
    from backend.adapters.mongo import MongoRegistry

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = MongoRegistry(f"mongodb://127.0.0.1:{port}/tasker_nowhere")
    try:
        for call in (registry.start, registry.ping):
            began = time.monotonic()
            with pytest.raises(Unavailable, match=f"MongoDB at 127.0.0.1:{port}") as raised:
                await call()
            assert time.monotonic() - began < 3.5
            assert "Topology" not in str(raised.value)  # one readable line, not a driver dump
    finally:
        await registry.close()


async def test_mongo_registry_url_must_be_mongodb() -> None:
    from backend.adapters.mongo import MongoRegistry

    with pytest.raises(ValueError, match="registry URL"):
        MongoRegistry("http://127.0.0.1:27017/tasker")
