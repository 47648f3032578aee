"""The Registry contract for server owners and the audit log, over SQLite and the real
MongoDB-compatible server (FerretDB; these fail when it is down)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace

from backend.adapters.sqlite_registry import SqliteRegistry
from backend.ports import AuditRecord, Registry
from tests.contract.test_registry_contract import MakeRegistry, server


def entry(n: int, action: str = "server.updated") -> AuditRecord:
    return AuditRecord(
        f"{1_700_000_000_000 + n:013d}-abcdefgh", 1_700_000_000_000 + n, "alice", action, "srv-1", f"change {n}"
    )


async def test_a_servers_owner_is_kept_and_changed(registry: Registry) -> None:
    await registry.add_server(server(owner="alice"))
    assert (await registry.get_server("srv-1")).owner == "alice"
    await registry.replace_server(replace(await registry.get_server("srv-1"), owner="bob"))
    assert [s.owner for s in await registry.list_servers()] == ["bob"]


async def test_audit_entries_come_back_newest_first_in_pages(make_registry: MakeRegistry) -> None:
    first, second = await make_registry(), await make_registry()  # two api processes
    for n in range(5):
        await (first if n % 2 else second).append_audit(entry(n))
    await first.append_audit(entry(3))  # appended twice (a retry): kept once
    page = await first.list_audit(3)
    assert [e.detail for e in page] == ["change 4", "change 3", "change 2"]
    rest = await second.list_audit(3, before_id=page[-1].id)
    assert [e.detail for e in rest] == ["change 1", "change 0"]
    assert rest[0] == entry(1)


async def test_an_embedded_registry_from_before_owners_opens_with_its_servers(tmp_path) -> None:
    path = tmp_path / "registry.db"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE servers (id TEXT PRIMARY KEY, name TEXT NOT NULL, name_key TEXT NOT NULL UNIQUE,
            region TEXT NOT NULL, site TEXT NOT NULL, energy_source TEXT NOT NULL,
            carbon_intensity_g_per_kwh REAL NOT NULL, carbon_intensity_source TEXT NOT NULL,
            pue REAL NOT NULL, idle_watts REAL NOT NULL, max_watts REAL NOT NULL, cores INTEGER NOT NULL,
            tags TEXT NOT NULL, created_at_ms INTEGER NOT NULL, created_by TEXT NOT NULL,
            updated_at_ms INTEGER NOT NULL);
        INSERT INTO servers VALUES ('srv-1', 'web-1', 'web-1', 'eu-west', '', 'wind', 11, 'x', 1.5,
            80, 350, 32, '[]', 1, 'alice', 1);
    """)
    old.commit()
    old.close()
    registry = SqliteRegistry(path)
    await registry.start()
    try:
        record = await registry.get_server("srv-1")
        assert (record.owner, record.created_by) == ("", "alice")  # owner_of() -> alice
    finally:
        await registry.close()
