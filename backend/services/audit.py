"""The audit log: who changed what in the registry, readable by admins (`tasker audit`).

An entry is appended right after the change it records. Should the registry fail in between,
the change stands and the loss is logged: an audit entry never blocks or undoes a change.
"""

from __future__ import annotations

import logging
from typing import Any

from backend.ports import AuditRecord, Registry, Unavailable
from backend.services.auth import Principal
from backend.services.passwords import random_base32
from backend.services.timestamps import format_rfc3339, now_ms

log = logging.getLogger(__name__)

MAX_PAGE = 1_000


def audit_json(entry: AuditRecord) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_rfc3339(entry.ts_ms),
        "actor": entry.actor,
        "action": entry.action,
        "target": entry.target,
        "detail": entry.detail,
    }


class AuditLog:
    """Appends and reads audit entries."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._last_ms = 0

    async def record(self, actor: str, action: str, target: str, detail: str = "") -> None:
        """Append an entry now; a registry outage is logged, never raised."""
        # Strictly increasing here, so two changes in one millisecond keep their order.
        ts = self._last_ms = max(now_ms(), self._last_ms + 1)
        entry = AuditRecord(f"{ts:013d}-{random_base32(8)}", ts, actor, action, target, detail[:500])
        try:
            await self.registry.append_audit(entry)
        except Unavailable as exc:
            log.error("audit entry lost (%s %s %s by %s): %s", action, target, detail, actor, exc)

    async def page(self, principal: Principal, limit: int, before: str | None) -> list[AuditRecord]:
        """Newest first; admins only."""
        principal.require_admin()
        return await self.registry.list_audit(max(1, min(limit, MAX_PAGE)), before)
