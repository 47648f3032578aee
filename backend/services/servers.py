"""Registered servers: validation of the form fields, defaults, CRUD and change events.

The fields and their rules come from DESIGN.md section 3; the JSON shape from docs/api.md. Every
change is broadcast on the broker's registry channel so each api process can tell its
websocket clients.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import replace
from typing import Any

from backend.ports import Broker, NotFound, Registry, ServerRecord, TimeSeriesStore, Unavailable
from backend.services.audit import AuditLog
from backend.services.auth import Principal
from backend.services.errors import Forbidden
from backend.services.passwords import random_base32
from backend.services.timestamps import format_rfc3339, now_ms
from backend.services.wire import REGISTRY_CHANNEL
from tasker.domain import DEFAULT_PUE, ENERGY_SOURCES, REGIONS, SERVER_ID, default_carbon_intensity

log = logging.getLogger(__name__)

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TAG = re.compile(r"[A-Za-z0-9._:/=-]{1,64}")
MAX_TAGS = 32
MAX_SITE = 100
USER_SET = "set by user"

WRITABLE = frozenset(
    {
        "name",
        "location",
        "energy_source",
        "carbon_intensity_g_per_kwh",
        "pue",
        "idle_watts",
        "max_watts",
        "cores",
        "tags",
    }
)
REQUIRED = ("name", "location", "energy_source", "idle_watts", "max_watts", "cores")
# Fields a client may echo back from a GET; they are the server's to set, so they are ignored.
READ_ONLY = frozenset({"id", "carbon_intensity_source", "created_at", "created_by", "updated_at"})
OWNER_CHANGE = "is changed by an admin with PUT /api/v1/servers/{id}/owner (tasker servers transfer)"


class FormRejected(Exception):
    """A server form is invalid; `details` lists {"field", "reason"} for every bad field."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        fields = ", ".join(d["field"] for d in details)
        super().__init__(f"invalid server: {fields}")
        self.details = details


def new_server_id() -> str:
    """`srv_` and 10 random lowercase base32 characters (50 bits)."""
    return "srv_" + random_base32(10)


def check_server_id(server_id: str) -> str:
    """`server_id` if it has the form of one of ours; NotFound otherwise (it cannot exist)."""
    if not SERVER_ID.fullmatch(server_id):
        raise NotFound(f"no server with id {server_id[:80]!r}")
    return server_id


def _number(
    value: Any, field: str, low: float, high: float, errors: list[dict[str, str]], integer: bool = False
) -> float | int | None:
    if type(value) not in ((int,) if integer else (int, float)):
        errors.append({"field": field, "reason": "must be a whole number" if integer else "must be a number"})
        return None
    if type(value) is float and not math.isfinite(value):
        errors.append({"field": field, "reason": "must be finite"})
        return None
    if not low <= value <= high:  # exact for integers beyond any float too
        errors.append({"field": field, "reason": f"must be between {low:g} and {high:g}"})
        return None
    return value


def _parse_fields(payload: Any, errors: list[dict[str, str]]) -> dict[str, Any]:
    """The valid writable fields present in `payload`; problems appended to `errors`."""
    if not isinstance(payload, dict):
        errors.append({"field": "body", "reason": "must be a JSON object"})
        return {}
    out: dict[str, Any] = {}
    if "owner" in payload:
        out["owner"] = payload["owner"]  # echoed back unchanged, or refused (_check_owner)
    for key in payload:
        if key not in WRITABLE and key not in READ_ONLY and key != "owner":
            errors.append({"field": str(key)[:64], "reason": "is not a server field"})
    if "name" in payload:
        name = payload["name"]
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            errors.append({"field": "name", "reason": "must be 1-64 characters of A-Z a-z 0-9 . _ -"})
        else:
            out["name"] = name
    if "location" in payload:
        location = payload["location"]
        if not isinstance(location, dict):
            errors.append({"field": "location", "reason": 'must be an object {"region", "site"}'})
        else:
            if "region" in location:
                region = location["region"]
                if not isinstance(region, str) or region not in REGIONS:
                    errors.append({"field": "location.region", "reason": f"must be one of {', '.join(REGIONS)}"})
                else:
                    out["region"] = region
            if "site" in location:
                site = location["site"]
                if site is None:
                    out["site"] = ""
                elif not isinstance(site, str) or len(site) > MAX_SITE or not site.isprintable():
                    errors.append(
                        {"field": "location.site", "reason": f"must be text of at most {MAX_SITE} characters"}
                    )
                else:
                    out["site"] = site.strip()
            for extra in set(location) - {"region", "site"}:
                errors.append({"field": f"location.{str(extra)[:64]}", "reason": "is not a location field"})
    if "energy_source" in payload:
        source = payload["energy_source"]
        if not isinstance(source, str) or source not in ENERGY_SOURCES:
            errors.append({"field": "energy_source", "reason": f"must be one of {', '.join(ENERGY_SOURCES)}"})
        else:
            out["energy_source"] = source
    if "carbon_intensity_g_per_kwh" in payload:
        value = payload["carbon_intensity_g_per_kwh"]
        if value is None:
            out["carbon_intensity_g_per_kwh"] = None  # back to the default of source and region
        else:
            checked = _number(value, "carbon_intensity_g_per_kwh", 0, 5000, errors)
            if checked is not None:
                out["carbon_intensity_g_per_kwh"] = float(checked)
    for field, low, high, integer in (
        ("pue", 1.0, 5.0, False),
        ("idle_watts", 0, 1_000_000, False),
        ("max_watts", 0, 1_000_000, False),
        ("cores", 1, 1_000_000, True),
    ):
        if field in payload:
            checked = _number(payload[field], field, low, high, errors, integer)
            if checked is not None:
                out[field] = checked if integer else float(checked)
    if "tags" in payload:
        tags = payload["tags"]
        if not isinstance(tags, list) or len(tags) > MAX_TAGS:
            errors.append({"field": "tags", "reason": f"must be a list of at most {MAX_TAGS} tags"})
        else:
            bad = [t for t in tags if not isinstance(t, str) or not _TAG.fullmatch(t)]
            if bad:
                errors.append(
                    {"field": "tags", "reason": "each tag must be 1-64 characters of A-Z a-z 0-9 . _ : / = -"}
                )
            else:
                out["tags"] = list(dict.fromkeys(tags))
    return out


def _check_owner(fields: dict[str, Any], owner: str, errors: list[dict[str, str]]) -> None:
    if "owner" in fields and fields["owner"] != owner:
        errors.append({"field": "owner", "reason": OWNER_CHANGE})


def _check_watts(record: ServerRecord, errors: list[dict[str, str]]) -> None:
    if record.max_watts < record.idle_watts:
        errors.append({"field": "max_watts", "reason": f"must be >= idle_watts ({record.idle_watts:g})"})


def _apply_intensity(record: ServerRecord, given: float | None, touched: bool) -> None:
    """User-given intensity sticks; otherwise it follows the source and region."""
    if given is not None:
        record.carbon_intensity_g_per_kwh = given
        record.carbon_intensity_source = USER_SET
    elif touched or record.carbon_intensity_source != USER_SET:
        value, source = default_carbon_intensity(record.energy_source, record.region)
        record.carbon_intensity_g_per_kwh = value
        record.carbon_intensity_source = source


def new_server(payload: Any, created_by: str, at_ms: int) -> ServerRecord:
    """A validated new server record from a POST body; FormRejected naming every bad field."""
    errors: list[dict[str, str]] = []
    fields = _parse_fields(payload, errors)
    if isinstance(payload, dict):
        for field in REQUIRED:
            if field not in payload:
                errors.append({"field": field, "reason": "is required"})
        if isinstance(payload.get("location"), dict) and "region" not in payload["location"]:
            errors.append({"field": "location.region", "reason": "is required"})
    if errors:
        raise FormRejected(errors)
    record = ServerRecord(
        id=new_server_id(),
        name=fields["name"],
        region=fields["region"],
        site=fields.get("site", ""),
        energy_source=fields["energy_source"],
        carbon_intensity_g_per_kwh=0.0,
        carbon_intensity_source="",
        pue=fields.get("pue", DEFAULT_PUE),
        idle_watts=fields["idle_watts"],
        max_watts=fields["max_watts"],
        cores=fields["cores"],
        tags=fields.get("tags", []),
        created_at_ms=at_ms,
        created_by=created_by,
        updated_at_ms=at_ms,
        owner=created_by,
    )
    _apply_intensity(record, fields.get("carbon_intensity_g_per_kwh"), touched=True)
    _check_owner(fields, created_by, errors)
    _check_watts(record, errors)
    if errors:
        raise FormRejected(errors)
    return record


def patched_server(current: ServerRecord, payload: Any, at_ms: int) -> ServerRecord:
    """`current` with the fields of a PATCH body applied; FormRejected naming every bad field."""
    errors: list[dict[str, str]] = []
    fields = _parse_fields(payload, errors)
    if errors:
        raise FormRejected(errors)
    # Plain ints: a driver may hand back int subclasses (bson's Int64) that a store's checks
    # handle badly; the record written back holds only plain values.
    record = replace(
        current,
        tags=list(current.tags),
        updated_at_ms=at_ms,
        created_at_ms=int(current.created_at_ms),
        cores=int(current.cores),
    )
    for key in ("name", "region", "site", "energy_source", "pue", "idle_watts", "max_watts", "cores", "tags"):
        if key in fields:
            setattr(record, key, fields[key])
    touched = "carbon_intensity_g_per_kwh" in fields
    if touched:
        _apply_intensity(record, fields["carbon_intensity_g_per_kwh"], touched=True)
    else:
        _apply_intensity(record, None, touched=False)
    _check_owner(fields, owner_of(current), errors)
    _check_watts(record, errors)
    if errors:
        raise FormRejected(errors)
    return record


def server_json(record: ServerRecord) -> dict[str, Any]:
    """The server as docs/api.md shows it."""
    return {
        "id": record.id,
        "name": record.name,
        "location": {"region": record.region, "site": record.site},
        "energy_source": record.energy_source,
        "carbon_intensity_g_per_kwh": record.carbon_intensity_g_per_kwh,
        "carbon_intensity_source": record.carbon_intensity_source,
        "pue": record.pue,
        "idle_watts": record.idle_watts,
        "max_watts": record.max_watts,
        "cores": record.cores,
        "tags": list(record.tags),
        "created_at": format_rfc3339(record.created_at_ms),
        "created_by": record.created_by,
        "owner": owner_of(record),
        "updated_at": format_rfc3339(record.updated_at_ms),
    }


def owner_of(record: ServerRecord) -> str:
    """Who owns a server: its owner, or whoever registered it (records from before owners)."""
    return record.owner or record.created_by


def require_owner(record: ServerRecord, principal: Principal, doing: str) -> None:
    """Forbidden unless `principal` is an admin or the server's owner (sysadmins change only
    their own servers; DESIGN.md section 3)."""
    principal.require_writer()
    if principal.role != "admin" and owner_of(record) != principal.name:
        raise Forbidden(
            f"server {record.name!r} belongs to {owner_of(record)!r}; only its owner or an admin may {doing} it"
        )


class ServerService:
    """Registry CRUD for servers, announcing every change on the broker's registry channel."""

    def __init__(self, registry: Registry, broker: Broker | None, timeseries: TimeSeriesStore | None) -> None:
        self.registry = registry
        self.broker = broker
        self.timeseries = timeseries
        self.audit = AuditLog(registry)

    async def _announce(self, event: str, server: dict[str, Any]) -> None:
        if self.broker is None:
            return
        body = json.dumps({"event": event, "server": server}, separators=(",", ":")).encode()
        try:
            await self.broker.publish_event(REGISTRY_CHANNEL, body)
        except Unavailable as exc:
            # The change is stored; only live notification is lost. Clients re-list on reconnect.
            log.warning("registry %s event for %s not broadcast: %s", event, server.get("id"), exc)

    async def list(self) -> list[ServerRecord]:
        return sorted(await self.registry.list_servers(), key=lambda s: s.name.casefold())

    async def get(self, server_id: str) -> ServerRecord:
        return await self.registry.get_server(check_server_id(server_id))

    async def create(self, payload: Any, principal: Principal) -> ServerRecord:
        principal.require_writer()
        record = new_server(payload, principal.name, now_ms())
        await self.registry.add_server(record)
        log.info("server %s (%s) added by %s", record.id, record.name, principal.name)
        await self.audit.record(principal.name, "server.added", record.id, f"name {record.name}")
        await self._announce("added", server_json(record))
        return record

    async def update(self, server_id: str, payload: Any, principal: Principal) -> ServerRecord:
        principal.require_writer()
        current = await self.get(server_id)
        require_owner(current, principal, "change")
        record = patched_server(current, payload, now_ms())
        await self.registry.replace_server(record)
        log.info("server %s (%s) updated by %s", record.id, record.name, principal.name)
        changed = [
            k
            for k in (
                "name",
                "region",
                "site",
                "energy_source",
                "carbon_intensity_g_per_kwh",
                "pue",
                "idle_watts",
                "max_watts",
                "cores",
                "tags",
            )
            if getattr(current, k) != getattr(record, k)
        ]
        await self.audit.record(
            principal.name, "server.updated", record.id, "changed " + (", ".join(changed) or "nothing")
        )
        await self._announce("updated", server_json(record))
        return record

    async def transfer(self, server_id: str, new_owner: Any, principal: Principal) -> ServerRecord:
        """Hand a server to another sysadmin or admin (admins only)."""
        principal.require_admin()
        current = await self.get(server_id)
        user = await self.registry.get_user(new_owner) if isinstance(new_owner, str) else None
        if user is None or user.role not in ("sysadmin", "admin"):
            raise FormRejected([{"field": "owner", "reason": "must be the username of a sysadmin or admin"}])
        record = replace(current, owner=user.username, updated_at_ms=now_ms(), tags=list(current.tags))
        await self.registry.replace_server(record)
        await self.audit.record(
            principal.name, "server.transferred", record.id, f"from {owner_of(current)} to {user.username}"
        )
        await self._announce("updated", server_json(record))
        return record

    async def delete(self, server_id: str, principal: Principal, purge: bool) -> None:
        principal.require_writer()
        record = await self.get(server_id)
        require_owner(record, principal, "delete")
        await self.registry.delete_server(record.id)
        await self.audit.record(principal.name, "server.removed", record.id, f"name {record.name}")
        if purge:
            if self.timeseries is None:
                raise RuntimeError("purge needs the time-series store")
            await self.timeseries.purge(record.id)
            await self.audit.record(
                principal.name, "server.purged", record.id, f"every reading and rollup of {record.name}"
            )
        log.info(
            "server %s (%s) removed by %s%s",
            record.id,
            record.name,
            principal.name,
            " with its history" if purge else "",
        )
        await self._announce("removed", server_json(record))
