"""A submitted task, validated against the form rules and the fleet, into a TaskRecord.

Every bad field is named at once, in the shape servers use (`{"field", "reason"}`), so a form
or a script can show all problems together. The fleet-wide rules (cores above every server's,
a tag no server has) are checked here; whether a fitting server is free in the window is the
scheduler's question (the task then becomes unschedulable, with the reason).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from typing import Any

from backend.ports import ServerRecord, TaskRecord
from backend.services.servers import FormRejected
from backend.services.timestamps import format_rfc3339, parse_rfc3339_ms
from tasker.domain import EARLIEST_TS_MS, REGIONS
from tasker.when import format_duration, parse_duration

DEFAULT_WINDOW_MS = 24 * 3_600_000
"""Deadline when none is given: earliest start + 24 h."""
MAX_COMMAND_ARGS = 256
MAX_ARG_CHARS = 4096
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
MAX_CWD_CHARS = 4096
MAX_ENV_VARS = 64
MAX_ENV_CHARS = 32 * 1024
"""Bound on the names and values of `env` together."""
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
FIELDS = frozenset(
    {
        "name",
        "cores",
        "duration",
        "earliest_start",
        "deadline",
        "interruptible",
        "regions",
        "tags",
        "command",
        "cwd",
        "env",
    }
)
# What a GET returns that a client may echo back; the server sets these, so they are ignored.
READ_ONLY = frozenset(
    {
        "id",
        "owner",
        "state",
        "reason",
        "plan",
        "created_at",
        "updated_at",
        "duration_s",
        "version",
        "started_at",
        "finished_at",
        "run",
    }
)


class TaskRejected(FormRejected):
    """A task form is invalid; `details` lists {"field", "reason"} for every bad field."""

    def __init__(self, details: list[dict[str, str]]) -> None:
        super().__init__(details)
        self.args = (f"invalid task: {', '.join(d['field'] for d in details)}",)


LATEST_MS = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: the last instant an answer can show in RFC 3339."""


def _instant(value: Any) -> int:
    """Epoch ms (an integer) or an RFC 3339 string, from 2000 to 9999; ValueError saying why not."""
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds or an RFC 3339 timestamp")
    if isinstance(value, int):
        ms = value
    elif isinstance(value, str):
        ms = parse_rfc3339_ms(value)
    else:
        raise ValueError("must be epoch milliseconds or an RFC 3339 timestamp")
    if not EARLIEST_TS_MS <= ms <= LATEST_MS:
        raise ValueError("must be from 2000-01-01T00:00:00Z to 9999-12-31T23:59:59Z")
    return ms


def _duration(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("must be seconds or a duration like 2h, 90m, 1h30m")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise ValueError("must be a whole number of seconds")
        return parse_duration(str(int(value)))
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError("must be seconds or a duration like 2h, 90m, 1h30m")


def _strings(value: Any, what: str, allowed: Collection[str] | None = None) -> list[str]:
    if not isinstance(value, list) or len(value) > 32 or not all(isinstance(v, str) for v in value):
        raise ValueError(f"must be a list of at most 32 {what}")
    if allowed is not None:
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ValueError(f"unknown region {unknown[0]!r}; regions are {', '.join(allowed)}")
    return list(dict.fromkeys(value))


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or len(value) > MAX_COMMAND_ARGS
        or not all(isinstance(a, str) for a in value)
    ):
        raise ValueError(f"must be a list of 1-{MAX_COMMAND_ARGS} strings (argv) or null")
    if any(len(a) > MAX_ARG_CHARS or "\x00" in a for a in value):
        raise ValueError(f"each argument must be at most {MAX_ARG_CHARS} characters, without NUL")
    if not value[0]:
        raise ValueError("the program (first argument) must not be empty")
    return list(value)


def _cwd(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("/") or len(value) > MAX_CWD_CHARS or "\x00" in value:
        raise ValueError(f"must be an absolute path (starting with /) of at most {MAX_CWD_CHARS} characters")
    return value


def _env(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > MAX_ENV_VARS:
        raise ValueError(f"must be a map of at most {MAX_ENV_VARS} variable names to string values")
    for name, text in value.items():
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise ValueError(f"{str(name)[:64]!r} is not a variable name (A-Z a-z 0-9 _, not starting with a digit)")
        if not isinstance(text, str) or "\x00" in text:
            raise ValueError(f"the value of {name} must be a string without NUL")
    if sum(len(k) + len(v) for k, v in value.items()) > MAX_ENV_CHARS:
        raise ValueError(f"names and values must total at most {MAX_ENV_CHARS} characters")
    return dict(value)


def _fleet_checks(
    cores: int | None, tags: list[str], fleet: Sequence[ServerRecord], errors: list[dict[str, str]]
) -> None:
    largest = max((s.cores for s in fleet), default=0)
    if cores is not None and cores > largest:
        errors.append(
            {
                "field": "cores",
                "reason": (
                    f"no registered server has {cores} cores (the largest has {largest})"
                    if fleet
                    else "no server is registered yet"
                ),
            }
        )
    known_tags = {t for s in fleet for t in s.tags}
    missing = [t for t in tags if t not in known_tags]
    if missing:
        errors.append({"field": "tags", "reason": f"no registered server has the tag {missing[0]!r}"})


def new_task(payload: Any, task_id: str, owner: str, now_ms: int, fleet: Sequence[ServerRecord]) -> TaskRecord:
    """A validated, queued TaskRecord from a POST body; TaskRejected naming every bad field."""
    if not isinstance(payload, dict):
        raise TaskRejected([{"field": "body", "reason": "must be a JSON object"}])
    errors: list[dict[str, str]] = []
    for key in payload:
        if key not in FIELDS and key not in READ_ONLY:
            errors.append({"field": str(key)[:64], "reason": "is not a task field"})
    values: dict[str, Any] = {}

    def check(field: str, parse: Any, default: Any = None, required: bool = False) -> None:
        if field not in payload or payload[field] is None and field != "command":
            if required:
                errors.append({"field": field, "reason": "is required"})
            values[field] = default
            return
        try:
            values[field] = parse(payload[field])
        except ValueError as exc:
            errors.append({"field": field, "reason": str(exc)})
            values[field] = None

    def name(v: Any) -> str:
        if not isinstance(v, str) or not _NAME.fullmatch(v):
            raise ValueError("must be 1-64 characters of A-Z a-z 0-9 . _ -")
        return v

    def cores(v: Any) -> int:
        if type(v) is not int or not 1 <= v <= 1_000_000:
            raise ValueError("must be a whole number of at least 1")
        return v

    def flag(v: Any) -> bool:
        if not isinstance(v, bool):
            raise ValueError("must be true or false")
        return v

    check("name", name, required=True)
    check("cores", cores, required=True)
    check("duration", _duration, required=True)
    check("earliest_start", _instant, default=now_ms)
    check("deadline", _instant)
    check("interruptible", flag, default=False)
    check("regions", lambda v: _strings(v, "regions", REGIONS), default=[])
    check("tags", lambda v: _strings(v, "tags"), default=[])
    check("command", _command)
    check("cwd", _cwd)
    check("env", _env, default={})
    _fleet_checks(values["cores"], values["tags"] or [], fleet, errors)

    start = values["earliest_start"]
    duration = values["duration"]
    deadline = values["deadline"]
    if start is not None and deadline is None and not any(e["field"] == "deadline" for e in errors):
        deadline = values["deadline"] = max(start, now_ms) + DEFAULT_WINDOW_MS
    if start is not None and deadline is not None:
        if deadline <= start:
            errors.append({"field": "deadline", "reason": f"must be after earliest_start ({format_rfc3339(start)})"})
        elif deadline <= now_ms:
            errors.append({"field": "deadline", "reason": "is in the past"})
        elif duration is not None and deadline - max(start, now_ms) < duration * 1000:
            window_s = (deadline - max(start, now_ms)) // 1000
            errors.append(
                {
                    "field": "deadline",
                    "reason": (
                        f"leaves {format_duration(window_s)} from the earliest start, shorter than the "
                        f"duration ({format_duration(duration)})"
                    ),
                }
            )
    if errors:
        raise TaskRejected(errors)
    return TaskRecord.submitted(
        id=task_id,
        name=values["name"],
        owner=owner,
        cores=values["cores"],
        duration_s=duration,
        earliest_start_ms=start,
        deadline_ms=deadline,
        interruptible=values["interruptible"],
        now_ms=now_ms,
        regions=values["regions"],
        tags=values["tags"],
        command=values["command"],
        reason="waiting for the scheduler",
        cwd=values["cwd"],
        env=values["env"],
    )
