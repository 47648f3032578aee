"""The HTTP API as an OpenAPI 3.1 document: the one source of truth for the contract.

Served at GET /api/v1/openapi.json; `docs/openapi.json` is this document written out
(`python -m backend.http.openapi > docs/openapi.json`) and docs/api.md describes it for readers.
Tests keep it true: every aiohttp route is an operation here and the other way round
(tests/integration/test_openapi.py), and schemathesis calls every operation of a real backend
and checks the answers against it (tests/integration/test_schemathesis.py).

Limits are the code's own constants, imported, so a changed limit changes the document.
Each group of routes has its own function below, in the order of the route files; a new route
goes into its group (or a new group added to `PATH_GROUPS`).
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Any

from aiohttp import web

from backend.json_text import dumps
from backend.ports import TASK_STATES
from backend.services.agents import MAX_REPORTED
from backend.services.audit import MAX_PAGE
from backend.services.auth import MAX_PASSWORD, ROLES
from backend.services.history import (
    DEFAULT_LIMIT,
    DEFAULT_POINTS,
    MAX_CURSOR,
    MAX_LIMIT,
    MAX_POINTS,
)
from backend.services.readings import MAX_BATCH_READINGS
from backend.services.servers import MAX_SITE, MAX_TAGS
from backend.services.task_form import (
    MAX_ARG_CHARS,
    MAX_COMMAND_ARGS,
    MAX_CWD_CHARS,
    MAX_ENV_VARS,
)
from backend.services.task_runs import MAX_OUTPUT_TAIL, RUN_EVENTS
from tasker.domain import ENERGY_SOURCES, METRICS, REGIONS
from tasker.when import MAX_DURATION_S

OPENAPI_PATH = "/api/v1/openapi.json"
VERSION = "1"

Schema = dict[str, Any]

NAME_PATTERN = "^[A-Za-z0-9._-]{1,64}$"
SERVER_ID_PATTERN = "^srv_[a-z2-7]{10}$"
TASK_ID_PATTERN = "^tsk_[a-z2-7]{10}$"
TAG_PATTERN = "^[A-Za-z0-9._:/=-]{1,64}$"


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(schema: Schema) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def ok(
    description: str, schema: Schema, headers: dict[str, Any] | None = None, links: dict[str, Any] | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description, "content": json_content(schema)}
    if headers:
        out["headers"] = headers
    if links:
        out["links"] = links
    return out


NO_CONTENT = {"description": "done; no body"}

ERRORS = {
    400: "the request is invalid: `details` names each bad field (`field`, `reason`; `index` for a reading)",
    401: "missing, malformed, unknown or expired credentials",
    403: "authenticated, but this role or key may not do this (or the user must change their password first)",
    404: "no such resource (or one the caller may not see)",
    408: "the request body did not arrive in time (TASKER_BODY_TIMEOUT); the connection is closed",
    409: "conflicts with the current state (a name taken, a task already finished, a stale agent lease)",
    413: "the body is over 4 MiB, or a batch over the readings limit",
    429: "too many failed logins; wait the Retry-After seconds",
    503: "a broker or store this needs is unavailable; retry after Retry-After seconds",
}


def errors(*statuses: int) -> dict[str, Any]:
    """Error answers, each the Error JSON; 503 whenever a store is involved."""
    out = {}
    if 401 in statuses and 403 not in statuses:
        statuses = (*statuses, 403)  # whoever authenticates may meet a rule of their role or key
    for status in sorted(statuses):
        entry: dict[str, Any] = {"description": ERRORS[status], "content": json_content(ref("Error"))}
        if status == 400:
            # A request line or header over 8 KiB is refused by the HTTP parser, before any route.
            entry["content"]["text/plain"] = {"schema": {"type": "string"}}
        if status == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
        if status == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
        out[str(status)] = entry
    return out


SESSION: list[dict[str, list[str]]] = [{"session": []}]
SESSION_OR_KEY: list[dict[str, list[str]]] = [{"session": []}, {"ingestKey": []}]
# Every route that reads a body may answer 408 (slow body) and 413 (too large).
BODY_ERRORS = (400, 408, 413)

INSTANT = {
    "oneOf": [
        {
            "type": "integer",
            "description": "UTC epoch milliseconds",
            "minimum": 946_684_800_000,
            "maximum": 253_402_300_799_999,
        },
        {
            "type": "string",
            "format": "date-time",
            "maxLength": 40,
            "description": "RFC 3339 with a zone, e.g. 2026-01-02T03:04:05Z",
        },
    ]
}
TIME = {"type": "string", "format": "date-time", "description": "RFC 3339, UTC"}
NULLABLE_TIME = {"type": ["string", "null"], "format": "date-time"}
QUERY_INSTANT = {
    "type": "string",
    "maxLength": 40,
    "anyOf": [{"pattern": "^(now|-[0-9]{1,6}[smhdw]|[0-9]{1,15})$"}, {"format": "date-time"}],
    "description": "epoch milliseconds, RFC 3339, `now`, or relative to now like `-1h`, `-30d`",
}


def _metric_limits() -> str:
    return "; ".join(
        f"{m.name}: {m.unit}, {m.minimum:g} to {m.maximum:g}"
        + (f" and at most {m.per_max_watts:g} x the server's max_watts" if m.per_max_watts else "")
        for m in METRICS.values()
    )


def _schemas() -> dict[str, Schema]:
    region = ref("Region")
    tags = {"type": "array", "maxItems": MAX_TAGS, "items": {"type": "string", "pattern": TAG_PATTERN}}
    location = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "region": region,
            "site": {
                "type": ["string", "null"],
                "maxLength": MAX_SITE,
                "description": "a site or city, free text (printable)",
            },
        },
    }
    server_fields: dict[str, Schema] = {
        "name": {"type": "string", "pattern": NAME_PATTERN, "description": "unique in the fleet"},
        "location": location,
        "energy_source": {"type": "string", "enum": list(ENERGY_SOURCES)},
        "carbon_intensity_g_per_kwh": {
            "type": ["number", "null"],
            "minimum": 0,
            "maximum": 5000,
            "description": "g CO2e per kWh; null or absent: the default of the energy source and region",
        },
        "pue": {"type": "number", "minimum": 1, "maximum": 5, "default": 1.5},
        "idle_watts": {"type": "number", "minimum": 0, "maximum": 1_000_000},
        "max_watts": {"type": "number", "minimum": 0, "maximum": 1_000_000, "description": "at least idle_watts"},
        "cores": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "tags": tags,
    }
    reading = {
        "type": "object",
        "required": ["server_id", "metric", "ts", "value"],
        "properties": {
            "server_id": {"type": "string", "description": "a registered server"},
            "metric": {"type": "string", "enum": list(METRICS)},
            "ts": {**INSTANT, "description": "not before 2000-01-01, at most 5 minutes ahead of the backend"},
            "value": {"type": "number", "minimum": 0, "description": _metric_limits()},
        },
    }
    task_fields: dict[str, Schema] = {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "cores": {
            "type": "integer",
            "minimum": 1,
            "maximum": 1_000_000,
            "description": "at most the cores of the largest server",
        },
        "duration": {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_S},
                {
                    "type": "string",
                    "maxLength": 32,
                    "pattern": "^([0-9]{1,9}|([0-9]+[dhms])+)$",
                    "description": "like 2h, 90m, 1h30m, 45s, 1d",
                },
            ],
            "description": f"seconds, at most {MAX_DURATION_S // 86_400} days",
        },
        "earliest_start": {**INSTANT, "description": "default now"},
        "deadline": {**INSTANT, "description": "default earliest start + 24 h; leaves room for the duration"},
        "interruptible": {"type": "boolean", "default": False},
        "regions": {"type": "array", "maxItems": 32, "items": region},
        "tags": {
            "type": "array",
            "maxItems": 32,
            "items": {"type": "string"},
            "description": "every tag must be on some registered server",
        },
        "command": {
            "type": ["array", "null"],
            "minItems": 1,
            "maxItems": MAX_COMMAND_ARGS,
            "items": {"type": "string", "maxLength": MAX_ARG_CHARS},
            "prefixItems": [{"type": "string", "minLength": 1}],
            "description": "argv; the first item (the program) not empty; no NUL",
        },
        "cwd": {"type": ["string", "null"], "pattern": "^/", "maxLength": MAX_CWD_CHARS},
        "env": {
            "type": ["object", "null"],
            "maxProperties": MAX_ENV_VARS,
            "additionalProperties": {"type": "string"},
            "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"},
        },
    }
    pieces = {"type": "array", "items": {"type": "array", "items": TIME, "minItems": 2, "maxItems": 2}}
    nullable_number = {"type": ["number", "null"]}
    sums = {
        "type": "object",
        "required": ["tasks", "compared", "planned_co2_g", "run_now_co2_g", "saving_g", "saving_pct"],
        "properties": {
            "tasks": {"type": "integer"},
            "compared": {"type": "integer"},
            "planned_co2_g": {"type": "number"},
            "run_now_co2_g": {"type": "number"},
            "saving_g": {"type": "number"},
            "saving_pct": nullable_number,
        },
    }
    return {
        "Region": {"type": "string", "enum": list(REGIONS)},
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "reason"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "field": {"type": "string"},
                            "reason": {"type": "string"},
                        },
                    },
                },
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "LoginRequest": {
            "type": "object",
            "required": ["username", "password"],
            "properties": {
                "username": {"type": "string", "maxLength": 64},
                "password": {"type": "string", "maxLength": MAX_PASSWORD},
            },
        },
        "Session": {
            "type": "object",
            "required": ["token", "expires_at", "role", "username"],
            "properties": {
                "token": {"type": "string"},
                "expires_at": TIME,
                "role": {"type": "string", "enum": list(ROLES)},
                "username": {"type": "string"},
                "must_change_password": {"type": "boolean"},
                "password_change_reason": {"type": "string"},
            },
        },
        "Me": {
            "type": "object",
            "required": ["username", "role", "expires_at"],
            "properties": {
                "username": {"type": "string"},
                "role": {"type": "string", "enum": list(ROLES)},
                "expires_at": NULLABLE_TIME,
                "must_change_password": {"type": "boolean"},
            },
        },
        "PasswordChange": {
            "type": "object",
            "required": ["current_password", "new_password"],
            "properties": {
                "current_password": {"type": "string"},
                "new_password": {"type": "string", "maxLength": MAX_PASSWORD},
            },
        },
        "PasswordSet": {
            "type": "object",
            "required": ["password"],
            "properties": {
                "password": {"type": "string", "maxLength": MAX_PASSWORD},
                "must_change_password": {"type": "boolean", "default": False},
            },
        },
        "SessionList": {
            "type": "object",
            "required": ["sessions"],
            "properties": {
                "sessions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "created_at", "expires_at", "client", "current"],
                        "properties": {
                            "id": {"type": "string"},
                            "created_at": TIME,
                            "expires_at": TIME,
                            "client": {"type": ["string", "null"]},
                            "current": {"type": "boolean"},
                        },
                    },
                }
            },
        },
        "UserList": {
            "type": "object",
            "required": ["users"],
            "properties": {
                "users": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": [
                            "username",
                            "role",
                            "disabled",
                            "disabled_at",
                            "must_change_password",
                            "created_at",
                            "password_changed_at",
                            "sessions",
                        ],
                        "properties": {
                            "username": {"type": "string"},
                            "role": {"type": "string", "enum": list(ROLES)},
                            "disabled": {"type": "boolean"},
                            "disabled_at": NULLABLE_TIME,
                            "must_change_password": {"type": "boolean"},
                            "created_at": TIME,
                            "password_changed_at": NULLABLE_TIME,
                            "sessions": {"type": "integer"},
                        },
                    },
                }
            },
        },
        "ReadingBatch": {
            "type": "object",
            "required": ["readings"],
            "properties": {"readings": {"type": "array", "maxItems": MAX_BATCH_READINGS, "items": reading}},
            "description": "accepted whole or not at all; a batch may not repeat (server_id, metric, ts)",
        },
        "Accepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "minimum": 0}},
        },
        "ServerForm": {
            "type": "object",
            "properties": server_fields,
            "required": ["name", "location", "energy_source", "idle_watts", "max_watts", "cores"],
            "description": "location needs its region; fields a GET returns may be echoed back and "
            "are ignored, except owner, which must stay the same",
        },
        "ServerPatch": {
            "type": "object",
            "properties": server_fields,
            "description": "any of the server fields; the others keep their values",
        },
        "Server": {
            "type": "object",
            "required": [
                "id",
                "name",
                "location",
                "energy_source",
                "carbon_intensity_g_per_kwh",
                "carbon_intensity_source",
                "pue",
                "idle_watts",
                "max_watts",
                "cores",
                "tags",
                "created_at",
                "created_by",
                "owner",
                "updated_at",
            ],
            "properties": {
                **server_fields,
                "id": {"type": "string", "pattern": SERVER_ID_PATTERN},
                "location": {
                    "type": "object",
                    "required": ["region", "site"],
                    "properties": {"region": region, "site": {"type": "string"}},
                },
                "carbon_intensity_g_per_kwh": {"type": "number", "minimum": 0},
                "carbon_intensity_source": {
                    "type": "string",
                    "description": "`set by user` or where the default comes from",
                },
                "created_at": TIME,
                "updated_at": TIME,
                "created_by": {"type": "string"},
                "owner": {"type": "string"},
            },
        },
        "ServerList": {
            "type": "object",
            "required": ["servers", "latest"],
            "properties": {
                "servers": {"type": "array", "items": ref("Server")},
                "latest": {
                    "type": "object",
                    "description": "server id -> metric -> its latest reading",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": {
                            "type": "object",
                            "required": ["ts", "value"],
                            "properties": {"ts": {"type": "integer"}, "value": {"type": "number"}},
                        },
                    },
                },
                "latest_unavailable": {
                    "type": "string",
                    "description": "present when the time-series store did not answer",
                },
            },
        },
        "OwnerChange": {
            "type": "object",
            "required": ["owner"],
            "properties": {"owner": {"type": "string", "description": "a sysadmin or admin"}},
        },
        "AuditPage": {
            "type": "object",
            "required": ["entries", "next_before"],
            "properties": {
                "entries": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "at", "actor", "action", "target", "detail"],
                        "properties": {
                            "id": {"type": "string"},
                            "at": TIME,
                            "actor": {"type": "string"},
                            "action": {"type": "string"},
                            "target": {"type": "string"},
                            "detail": {"type": "string"},
                        },
                    },
                },
                "next_before": {"type": ["string", "null"], "description": "pass as ?before= for the next page"},
            },
        },
        "History": {
            "type": "object",
            "required": ["metric", "unit", "resolution_s", "points"],
            "properties": {
                "metric": {"type": "string", "enum": list(METRICS)},
                "unit": {"type": "string"},
                "resolution_s": {"type": "integer", "minimum": 1},
                "points": {
                    "type": "array",
                    "maxItems": MAX_POINTS,
                    "items": {
                        "type": "array",
                        "minItems": 4,
                        "maxItems": 4,
                        "items": {"type": "number"},
                        "description": "[bucket start ts_ms, min, avg, max]",
                    },
                },
            },
        },
        "RawPage": {
            "type": "object",
            "required": ["metric", "unit", "readings", "next_cursor"],
            "properties": {
                "metric": {"type": "string", "enum": list(METRICS)},
                "unit": {"type": "string"},
                "readings": {
                    "type": "array",
                    "maxItems": MAX_LIMIT,
                    "items": {
                        "type": "object",
                        "required": ["ts", "value"],
                        "properties": {"ts": {"type": "integer"}, "value": {"type": "number"}},
                    },
                },
                "next_cursor": {"type": ["string", "null"], "maxLength": MAX_CURSOR},
            },
        },
        "TaskForm": {
            "type": "object",
            "properties": task_fields,
            "required": ["name", "cores", "duration"],
            "description": "fields a GET returns may be echoed back and are ignored",
        },
        "Task": {
            "type": "object",
            "required": [
                "id",
                "name",
                "owner",
                "cores",
                "duration_s",
                "earliest_start",
                "deadline",
                "interruptible",
                "regions",
                "tags",
                "command",
                "state",
                "reason",
                "plan",
                "created_at",
                "updated_at",
                "started_at",
                "finished_at",
                "version",
                "cwd",
                "env",
                "run",
            ],
            "properties": {
                "id": {"type": "string", "pattern": TASK_ID_PATTERN},
                "name": {"type": "string"},
                "owner": {"type": "string"},
                "cores": {"type": "integer", "minimum": 1},
                "duration_s": {"type": "integer", "minimum": 1, "maximum": MAX_DURATION_S},
                "earliest_start": TIME,
                "deadline": TIME,
                "interruptible": {"type": "boolean"},
                "regions": {"type": "array", "items": region},
                "tags": {"type": "array", "items": {"type": "string"}},
                "command": {"type": ["array", "null"], "items": {"type": "string"}},
                "state": {"type": "string", "enum": list(TASK_STATES)},
                "reason": {"type": "string"},
                "plan": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["server_id", "pieces", "start", "end", "co2_g"],
                            "properties": {
                                "server_id": {"type": "string"},
                                "pieces": pieces,
                                "start": TIME,
                                "end": TIME,
                                "co2_g": nullable_number,
                                "energy_kwh": nullable_number,
                                "run_now_co2_g": nullable_number,
                                "run_now_server_id": {"type": ["string", "null"]},
                                "saving_g": nullable_number,
                                "explanation": {"type": "string"},
                                "epoch": {"type": "integer"},
                                "measured_co2_g": nullable_number,
                                "measured_energy_kwh": nullable_number,
                                "measured_saving_g": nullable_number,
                            },
                        },
                    ]
                },
                "created_at": TIME,
                "updated_at": TIME,
                "started_at": NULLABLE_TIME,
                "finished_at": NULLABLE_TIME,
                "version": {"type": "integer", "minimum": 1},
                "cwd": {"type": ["string", "null"]},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "run": {
                    "type": "object",
                    "required": ["activity", "runs", "since", "exit_code", "output_tail", "agent_epoch"],
                    "properties": {
                        "activity": {"enum": ["running", "paused", None]},
                        "runs": pieces,
                        "since": NULLABLE_TIME,
                        "exit_code": {"type": ["integer", "null"]},
                        "output_tail": {"type": "string"},
                        "agent_epoch": {"type": ["integer", "null"]},
                        "measured_at": NULLABLE_TIME,
                    },
                },
            },
        },
        "TaskList": {
            "type": "object",
            "required": ["tasks"],
            "properties": {"tasks": {"type": "array", "items": ref("Task")}},
        },
        "Plan": {
            "type": "object",
            "required": ["start", "end", "slot_s", "servers", "curves"],
            "properties": {
                "start": TIME,
                "end": TIME,
                "slot_s": {"type": "integer", "minimum": 1},
                "servers": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "region", "energy_source", "cores", "pue", "curve", "placements"],
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "region": region,
                            "energy_source": {"type": "string"},
                            "cores": {"type": "integer"},
                            "pue": {"type": "number"},
                            "curve": {"type": "string", "description": "a key of curves"},
                            "placements": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["cores", "state", "co2_g", "pieces", "task_id"],
                                    "properties": {
                                        "cores": {"type": "integer"},
                                        "state": {"type": "string"},
                                        "co2_g": nullable_number,
                                        "pieces": pieces,
                                        "task_id": {
                                            "type": ["string", "null"],
                                            "description": "null (and no name, owner) for another sysadmin's task",
                                        },
                                        "name": {"type": ["string", "null"]},
                                        "owner": {"type": ["string", "null"]},
                                    },
                                },
                            },
                        },
                    },
                },
                "curves": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "number"}},
                    "description": "g CO2e/kWh per slot from start",
                },
            },
        },
        "Savings": {
            "type": "object",
            "required": ["totals", "by_state"],
            "properties": {
                "totals": sums,
                "by_state": {"type": "object", "additionalProperties": sums},
                "today": {
                    "type": "object",
                    "required": ["since", "done", "measured", "run_now_co2_g", "measured_co2_g", "saved_g"],
                    "properties": {
                        "since": TIME,
                        "done": {"type": "integer"},
                        "measured": {"type": "integer"},
                        "run_now_co2_g": {"type": "number"},
                        "measured_co2_g": {"type": "number"},
                        "saved_g": {"type": "number"},
                    },
                },
            },
        },
        "GridImport": {
            "type": "object",
            "required": ["regions", "rows"],
            "properties": {
                "regions": {"type": "object", "additionalProperties": {"type": "integer"}},
                "rows": {"type": "integer", "minimum": 0},
            },
        },
        "Heartbeat": {
            "type": "object",
            "required": ["agent"],
            "properties": {
                "agent": {
                    "type": "string",
                    "pattern": "^[A-Za-z0-9._:@-]{1,128}$",
                    "description": "this agent instance's id",
                },
                "running": {
                    "type": "array",
                    "maxItems": MAX_REPORTED,
                    "items": {
                        "oneOf": [
                            {"type": "string", "maxLength": 64},
                            {
                                "type": "object",
                                "required": ["task_id"],
                                "properties": {"task_id": {"type": "string", "maxLength": 64}},
                            },
                        ]
                    },
                },
            },
        },
        "Assignment": {
            "type": "object",
            "required": ["server_id", "now_ms", "lease", "poll_s", "tasks", "cancel"],
            "properties": {
                "server_id": {"type": "string"},
                "now_ms": {"type": "integer"},
                "lease": {
                    "type": "object",
                    "required": ["name", "holder", "epoch", "expires_at", "ttl_s"],
                    "properties": {
                        "name": {"type": "string"},
                        "holder": {"type": "string"},
                        "epoch": {"type": "integer"},
                        "expires_at": TIME,
                        "expires_at_ms": {"type": "integer"},
                        "ttl_s": {"type": "number"},
                    },
                },
                "poll_s": {"type": "number"},
                "tasks": {"type": "array", "items": {"type": "object", "required": ["id", "state", "pieces"]}},
                "cancel": {"type": "array", "items": {"type": "object", "required": ["task_id", "reason"]}},
            },
            "description": "see docs/agents.md",
        },
        "RunEvent": {
            "type": "object",
            "required": ["state", "agent_epoch"],
            "properties": {
                "state": {"type": "string", "enum": list(RUN_EVENTS)},
                "at": {**INSTANT, "description": "default now; at most a minute ahead"},
                "agent_epoch": {"type": "integer", "minimum": 1, "maximum": 2**53},
                "exit_code": {"type": ["integer", "null"], "minimum": -255, "maximum": 255},
                "output_tail": {"type": ["string", "null"], "maxLength": 4 * MAX_OUTPUT_TAIL},
                "server_id": {"type": ["string", "null"], "minLength": 1, "maxLength": 64},
                "agent": {"type": "string"},
            },
        },
        "Alive": {"type": "object", "required": ["status"], "properties": {"status": {"const": "alive"}}},
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"const": "ready"},
                "checks": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    }


def _path_param(name: str, pattern: str, what: str) -> Schema:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": what,
        "schema": {"type": "string", "pattern": pattern},
    }


SERVER_ID = _path_param("server_id", SERVER_ID_PATTERN, "a server id")
TASK_ID = _path_param("task_id", TASK_ID_PATTERN, "a task id")


def _query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _ops_paths() -> dict[str, Any]:
    """ops.py and this module: probes, metrics and the document itself (no auth)."""
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "the process is alive",
                "security": [],
                "responses": {"200": ok("alive", ref("Alive"))},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "security": [],
                "summary": "200 when the broker and stores of this process answer; 503 names each one down",
                "responses": {
                    "200": ok("ready", ref("Ready")),
                    "503": {
                        "description": "not ready; `checks` says which is down",
                        "content": json_content(ref("Error")),
                    },
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "security": [],
                "summary": "Prometheus text exposition of this process's counters",
                "responses": {
                    "200": {
                        "description": "Prometheus text format 0.0.4",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "security": [],
                "summary": "this document",
                "responses": {"200": ok("OpenAPI 3.1", {"type": "object"})},
            }
        },
    }


def _accounts_paths() -> dict[str, Any]:
    """auth_routes.py: sessions, the caller's own account, and the admins' account routes."""
    user = {
        "name": "username",
        "in": "path",
        "required": True,
        "description": "a username",
        "schema": {"type": "string", "pattern": NAME_PATTERN},
    }
    ended = {"type": "object", "required": ["ended"], "properties": {"ended": {"type": "integer", "minimum": 0}}}
    sessions = ok("the sessions not yet expired", ref("SessionList"))
    return {
        "/api/v1/auth/login": {
            "post": {
                "operationId": "login",
                "tags": ["accounts"],
                "security": [],
                "summary": "check a password and open a session; the same 401 for an unknown user and a wrong password",
                "description": "403 for a disabled account (said only after the right password).",
                "requestBody": {"required": True, "content": json_content(ref("LoginRequest"))},
                "responses": {"200": ok("a session token", ref("Session")), **errors(*BODY_ERRORS, 401, 429, 503)},
            }
        },
        "/api/v1/auth/logout": {
            "post": {
                "operationId": "logout",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "end this session",
                "responses": {"204": NO_CONTENT, **errors(401, 403, 503)},
            }
        },
        "/api/v1/auth/me": {
            "get": {
                "operationId": "me",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "who the session belongs to",
                "responses": {"200": ok("the caller", ref("Me")), **errors(401, 503)},
            }
        },
        "/api/v1/me/password": {
            "post": {
                "operationId": "changeMyPassword",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "change the caller's password; the caller's other sessions end",
                "requestBody": {"required": True, "content": json_content(ref("PasswordChange"))},
                "responses": {
                    "200": ok(
                        "changed",
                        {"type": "object", "required": ["username", "must_change_password", "other_sessions_ended"]},
                    ),
                    **errors(*BODY_ERRORS, 401, 429, 503),
                },
            }
        },
        "/api/v1/me/sessions": {
            "get": {
                "operationId": "mySessions",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "the caller's sessions",
                "responses": {"200": sessions, **errors(401, 503)},
            },
            "delete": {
                "operationId": "endMyOtherSessions",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "log out everywhere else: every session of the caller but this one ends",
                "responses": {"200": ok("how many ended", ended), **errors(401, 503)},
            },
        },
        "/api/v1/users": {
            "get": {
                "operationId": "listUsers",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "every account (admins only)",
                "responses": {"200": ok("the users", ref("UserList")), **errors(401, 503)},
            }
        },
        "/api/v1/users/{username}": {
            "delete": {
                "operationId": "deleteUser",
                "tags": ["accounts"],
                "security": SESSION,
                "parameters": [
                    user,
                    _query("confirm", {"type": "string", "enum": ["true", "1", "yes"]}, "must be true", required=True),
                    _query(
                        "transfer_to",
                        {"type": "string"},
                        "who gets the user's servers and unfinished tasks (409 without, when there are any)",
                    ),
                ],
                "summary": "delete an account (admins only; never one's own, nor the last admin)",
                "responses": {
                    "200": ok(
                        "what was handed over",
                        {"type": "object", "required": ["servers_transferred", "tasks_transferred", "sessions_ended"]},
                    ),
                    **errors(400, 401, 404, 409, 503),
                },
            }
        },
        "/api/v1/users/{username}/password": {
            "put": {
                "operationId": "setUserPassword",
                "tags": ["accounts"],
                "security": SESSION,
                "parameters": [user],
                "summary": "set a user's password (admins only); every session of the user ends",
                "requestBody": {"required": True, "content": json_content(ref("PasswordSet"))},
                "responses": {
                    "200": ok(
                        "set", {"type": "object", "required": ["username", "must_change_password", "sessions_ended"]}
                    ),
                    **errors(*BODY_ERRORS, 401, 404, 503),
                },
            }
        },
        "/api/v1/users/{username}/disable": {
            "post": {
                "operationId": "disableUser",
                "tags": ["accounts"],
                "security": SESSION,
                "parameters": [user],
                "summary": "stop a user logging in and end its sessions (admins only)",
                "responses": {
                    "200": ok("disabled", {"type": "object", "required": ["username", "disabled", "sessions_ended"]}),
                    **errors(400, 401, 404, 409, 503),
                },
            }
        },
        "/api/v1/users/{username}/enable": {
            "post": {
                "operationId": "enableUser",
                "tags": ["accounts"],
                "security": SESSION,
                "parameters": [user],
                "summary": "let a disabled user log in again (admins only)",
                "responses": {
                    "200": ok("enabled", {"type": "object", "required": ["username", "disabled", "changed"]}),
                    **errors(401, 404, 503),
                },
            }
        },
        "/api/v1/users/{username}/sessions": {
            "parameters": [user],
            "get": {
                "operationId": "userSessions",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "a user's sessions (admins, or the user)",
                "responses": {"200": sessions, **errors(401, 404, 503)},
            },
            "delete": {
                "operationId": "endUserSessions",
                "tags": ["accounts"],
                "security": SESSION,
                "summary": "end a user's sessions, or one (`?session=ID`); never the caller's own",
                "parameters": [_query("session", {"type": "string"}, "the id (or its first 6+ characters)")],
                "responses": {"200": ok("how many ended", ended), **errors(400, 401, 404, 503)},
            },
        },
    }


def _ingest_paths() -> dict[str, Any]:
    """ingest_routes.py."""
    return {
        "/api/v1/readings": {
            "post": {
                "operationId": "postReadings",
                "tags": ["readings"],
                "security": SESSION_OR_KEY,
                "summary": "post a batch of readings (an ingest key, or a sysadmin or admin session)",
                "description": (
                    "Atomic: 202 only once the broker confirmed every reading; 400 names each bad item "
                    f"and accepts none. At most {MAX_BATCH_READINGS:,} readings per batch (else 413). "
                    "A key scoped to a server posts only that server's readings (403)."
                ),
                "requestBody": {"required": True, "content": json_content(ref("ReadingBatch"))},
                "responses": {
                    "202": ok("every reading accepted", ref("Accepted")),
                    **errors(*BODY_ERRORS, 401, 403, 503),
                },
            }
        }
    }


def _history_paths() -> dict[str, Any]:
    """history_routes.py."""
    common = [
        SERVER_ID,
        _query("metric", {"type": "string", "enum": list(METRICS), "default": "power"}, "the metric"),
        _query("from", QUERY_INSTANT, "start of the range (inclusive), not before 2000-01-01; default `to` - 1 h"),
        _query("to", QUERY_INSTANT, "end of the range (exclusive), at most a day from now; default now"),
    ]
    return {
        "/api/v1/servers/{server_id}/history": {
            "get": {
                "operationId": "getHistory",
                "tags": ["readings"],
                "security": SESSION,
                "summary": "the series downsampled to at most `points` buckets of [ts_ms, min, avg, max]",
                "parameters": common
                + [
                    _query(
                        "points",
                        {"type": "integer", "minimum": 1, "maximum": MAX_POINTS, "default": DEFAULT_POINTS},
                        "most buckets to return",
                    )
                ],
                "responses": {"200": ok("the series", ref("History")), **errors(400, 401, 404, 503)},
            }
        },
        "/api/v1/servers/{server_id}/readings": {
            "get": {
                "operationId": "getRawReadings",
                "tags": ["readings"],
                "security": SESSION,
                "summary": "raw readings, newest first, paged by an opaque cursor",
                "parameters": common
                + [
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                        "readings per page",
                    ),
                    _query("cursor", {"type": "string", "maxLength": MAX_CURSOR}, "next_cursor of the previous page"),
                ],
                "responses": {"200": ok("one page", ref("RawPage")), **errors(400, 401, 404, 503)},
            }
        },
    }


def _server_paths() -> dict[str, Any]:
    """server_routes.py."""
    by_id = {"get": {"operationId": "getServer", "parameters": {"server_id": "$response.body#/id"}}}
    links = {
        "GetServer": by_id["get"],
        "PatchServer": {"operationId": "patchServer", "parameters": {"server_id": "$response.body#/id"}},
        "DeleteServer": {
            "operationId": "deleteServer",
            "parameters": {"server_id": "$response.body#/id", "query.confirm": "true"},
        },
    }
    location = {"Location": {"schema": {"type": "string"}, "description": "/api/v1/servers/{id}"}}
    flag = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no"]}
    return {
        "/api/v1/servers": {
            "get": {
                "operationId": "listServers",
                "tags": ["servers"],
                "security": SESSION_OR_KEY,
                "summary": "the fleet, by name, with each server's latest reading per metric",
                "responses": {"200": ok("the fleet", ref("ServerList")), **errors(401, 503)},
            },
            "post": {
                "operationId": "createServer",
                "tags": ["servers"],
                "security": SESSION,
                "summary": "register a server (sysadmin or admin; the caller owns it)",
                "requestBody": {"required": True, "content": json_content(ref("ServerForm"))},
                "responses": {
                    "201": ok("registered", ref("Server"), location, links),
                    **errors(*BODY_ERRORS, 401, 403, 409, 503),
                },
            },
        },
        "/api/v1/servers/{server_id}": {
            "parameters": [SERVER_ID],
            "get": {
                "operationId": "getServer",
                "tags": ["servers"],
                "security": SESSION_OR_KEY,
                "summary": "one server",
                "responses": {"200": ok("the server", ref("Server")), **errors(401, 404, 503)},
            },
            "patch": {
                "operationId": "patchServer",
                "tags": ["servers"],
                "security": SESSION,
                "summary": "change some fields (its owner or an admin)",
                "requestBody": {"required": True, "content": json_content(ref("ServerPatch"))},
                "responses": {
                    "200": ok("the server as changed", ref("Server")),
                    **errors(*BODY_ERRORS, 401, 403, 404, 409, 503),
                },
            },
            "delete": {
                "operationId": "deleteServer",
                "tags": ["servers"],
                "security": SESSION,
                "summary": "remove a server (its owner or an admin); its history stays unless purge",
                "parameters": [
                    _query("confirm", {"type": "string", "enum": ["true", "1", "yes"]}, "must be true", required=True),
                    _query("purge", flag, "also delete every reading and rollup"),
                ],
                "responses": {"204": NO_CONTENT, **errors(400, 401, 403, 404, 503)},
            },
        },
        "/api/v1/servers/{server_id}/owner": {
            "put": {
                "operationId": "transferServer",
                "tags": ["servers"],
                "security": SESSION,
                "summary": "hand a server to another sysadmin or admin (admins only)",
                "parameters": [SERVER_ID],
                "requestBody": {"required": True, "content": json_content(ref("OwnerChange"))},
                "responses": {
                    "200": ok("the server with its new owner", ref("Server")),
                    **errors(*BODY_ERRORS, 401, 403, 404, 503),
                },
            }
        },
        "/api/v1/audit": {
            "get": {
                "operationId": "listAudit",
                "tags": ["servers"],
                "security": SESSION,
                "summary": "who changed what in the registry, newest first (admins only)",
                "parameters": [
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 100},
                        "entries per page",
                    ),
                    _query("before", {"type": "string"}, "next_before of the previous page"),
                ],
                "responses": {"200": ok("one page", ref("AuditPage")), **errors(400, 401, 403, 503)},
            }
        },
    }


def _task_paths() -> dict[str, Any]:
    """task_routes.py."""
    links = {
        "GetTask": {"operationId": "getTask", "parameters": {"task_id": "$response.body#/id"}},
        "CancelTask": {"operationId": "cancelTask", "parameters": {"task_id": "$response.body#/id"}},
    }
    location = {"Location": {"schema": {"type": "string"}, "description": "/api/v1/tasks/{id}"}}
    states = {"type": "array", "items": {"type": "string", "enum": list(TASK_STATES)}}
    finished_since = _query(
        "finished_since",
        QUERY_INSTANT,
        "leave out the tasks that finished (done, failed, cancelled) and were last written before it; "
        "unfinished tasks are always in. The clients ask for `-24h`: without it every task ever submitted is read",
    )
    return {
        "/api/v1/tasks": {
            "get": {
                "operationId": "listTasks",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "the tasks the caller may see (a sysadmin: their own), oldest first",
                "parameters": [
                    {
                        **_query("state", states, "only these states (repeated or comma-separated)"),
                        "style": "form",
                        "explode": True,
                    },
                    finished_since,
                    _query(
                        "server",
                        {"type": "string", "minLength": 1, "maxLength": 64},
                        "only the tasks placed on this server id: planned, running or run there "
                        "(tasks keep the id of a server since removed)",
                    ),
                ],
                "responses": {"200": ok("the tasks", ref("TaskList")), **errors(400, 401, 503)},
            },
            "post": {
                "operationId": "submitTask",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "submit a task (sysadmin or admin); it is queued for the scheduler",
                "requestBody": {"required": True, "content": json_content(ref("TaskForm"))},
                "responses": {"201": ok("queued", ref("Task"), location, links), **errors(*BODY_ERRORS, 401, 403, 503)},
            },
        },
        "/api/v1/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": {
                "operationId": "getTask",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "one task",
                "responses": {"200": ok("the task", ref("Task")), **errors(401, 404, 503)},
            },
            "delete": {
                "operationId": "cancelTask",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "cancel a task not finished yet (its owner or an admin)",
                "responses": {"200": ok("the task, cancelled", ref("Task")), **errors(401, 403, 404, 409, 503)},
            },
        },
        "/api/v1/plan": {
            "get": {
                "operationId": "getPlan",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "each server's placements and intensity curve over the planning horizon",
                "responses": {"200": ok("the plan", ref("Plan")), **errors(401, 503)},
            }
        },
        "/api/v1/plan/savings": {
            "get": {
                "operationId": "getSavings",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "CO2 planned against running every task now, in total, per state and today",
                "parameters": [finished_since],
                "responses": {"200": ok("the savings", ref("Savings")), **errors(400, 401, 503)},
            }
        },
        "/api/v1/grid/traces": {
            "put": {
                "operationId": "importGridTraces",
                "tags": ["tasks"],
                "security": SESSION,
                "summary": "replace the carbon-intensity trace of each region in a CSV (admins only)",
                "description": "CSV with a header `region,ts,g_per_kwh` (ts: epoch ms or RFC 3339); a bad row "
                "refuses the whole file, naming the line.",
                "requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}},
                "responses": {
                    "200": ok("rows stored per region", ref("GridImport")),
                    **errors(*BODY_ERRORS, 401, 403, 503),
                },
            }
        },
    }


def _agent_paths() -> dict[str, Any]:
    """agent_routes.py: the agent protocol of docs/agents.md."""
    return {
        "/api/v1/agents/{server_id}/heartbeat": {
            "post": {
                "operationId": "agentHeartbeat",
                "tags": ["agents"],
                "security": SESSION_OR_KEY,
                "summary": "take or renew the server's agent lease; answers the tasks to run and to stop",
                "parameters": [SERVER_ID],
                "requestBody": {"required": True, "content": json_content(ref("Heartbeat"))},
                "responses": {
                    "200": ok("the lease and the work", ref("Assignment")),
                    **errors(*BODY_ERRORS, 401, 403, 404, 409, 503),
                },
            }
        },
        "/api/v1/tasks/{task_id}/events": {
            "post": {
                "operationId": "reportRunEvent",
                "tags": ["agents"],
                "security": SESSION_OR_KEY,
                "summary": "report that a task started, paused, resumed or ended (409 when stale)",
                "parameters": [TASK_ID],
                "requestBody": {"required": True, "content": json_content(ref("RunEvent"))},
                "responses": {
                    "200": ok("the task as it stands", ref("Task")),
                    **errors(*BODY_ERRORS, 401, 403, 404, 409, 503),
                },
            }
        },
    }


def _websocket_paths() -> dict[str, Any]:
    """ws.py: the upgrade only; the protocol is docs/websocket.md."""
    return {
        "/api/v1/ws": {
            "get": {
                "operationId": "websocket",
                "tags": ["live"],
                "security": [],
                "summary": "websocket upgrade: live readings, registry and plan changes, chat (docs/websocket.md)",
                "description": "Credentials in the Authorization header, or a first frame "
                '{"type": "auth", "token": "..."} within 5 s.',
                "responses": {"101": {"description": "switching to the websocket protocol"}, **errors(400, 401, 503)},
            }
        }
    }


PATH_GROUPS = (
    _ops_paths,
    _accounts_paths,
    _ingest_paths,
    _history_paths,
    _server_paths,
    _task_paths,
    _agent_paths,
    _websocket_paths,
)


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route any role serves."""
    paths: dict[str, Any] = {}
    for group in PATH_GROUPS:
        for path, item in group().items():
            assert path not in paths, f"{path} is in two groups"
            paths[path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Tasker HTTP API",
            "version": VERSION,
            "description": "Servers, their power and CO2 readings, tasks and the carbon-aware plan. "
            'Errors are JSON `{"error": "...", "details": [...]}`. See docs/api.md.',
        },
        "servers": [{"url": "/"}],
        "security": SESSION,
        "tags": [{"name": n} for n in ("operations", "accounts", "readings", "servers", "tasks", "agents", "live")],
        "paths": paths,
        "components": {
            "securitySchemes": {
                "session": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "a session token from POST /api/v1/auth/login",
                },
                "ingestKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an ingest key `tik_...` (tasker keys create); posts readings, "
                    "reads the fleet, acts as the agent of the server it is scoped to",
                },
            },
            "schemas": _schemas(),
        },
    }


@functools.cache
def document_bytes() -> bytes:
    return dumps(document()).encode()


async def serve(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json, no auth."""
    return web.Response(body=document_bytes(), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get(OPENAPI_PATH, serve)


if __name__ == "__main__":
    json.dump(document(), sys.stdout, indent=2)
    sys.stdout.write("\n")
