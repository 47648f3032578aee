"""A task as typed into the submit form, checked field by field and turned into the API's JSON.

Pure: no Textual, no I/O. Durations and instants are read by `tasker.when` (the same rules the
command line and the backend use); only what can be judged without the backend is judged here,
every problem at once, and the backend's answer is shown beside the fields as well.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tasker.domain import REGIONS
from tasker.when import parse_duration, parse_local_time, to_rfc3339

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAG = re.compile(r"[A-Za-z0-9._:-]{1,64}")


@dataclass(frozen=True, slots=True)
class DraftField:
    key: str
    label: str
    placeholder: str = ""


FIELDS = (
    DraftField("name", "Name", "render-frames (letters, digits, . _ -)"),
    DraftField("cores", "Cores", "e.g. 4"),
    DraftField("duration", "Duration", "2h, 90m, 1h30m"),
    DraftField("earliest", "Earliest", "tomorrow 06:00, +2h (blank: now)"),
    DraftField("deadline", "Deadline", "18:00, tomorrow 06:00, +6h (blank: start + 24h)"),
    DraftField("interruptible", "Interruptible"),
    DraftField("regions", "Regions", "eu-north, fr-central (blank: any)"),
    DraftField("tags", "Tags", "batch, gpu (blank: any server)"),
    DraftField("command", "Command", "sleep 60  (split like a shell line)"),
)
FIELD_KEYS = tuple(f.key for f in FIELDS)


@dataclass(slots=True)
class Draft:
    """The form's verdict: the JSON to send, the errors by field, and the argv as understood."""

    payload: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    argv: list[str] | None = None


def split_list(raw: str) -> list[str]:
    """`a, b ,,c` -> ["a", "b", "c"], each once."""
    return list(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


def read_draft(
    values: Mapping[str, Any], now: datetime, known_tags: Collection[str] = (), largest_cores: int | None = None
) -> Draft:
    """Check the form's values (strings, and a bool for `interruptible`) against what can be
    known here: `known_tags` are the fleet's tags, `largest_cores` its biggest server."""
    draft = Draft()
    errors, payload = draft.errors, draft.payload
    text = {k: str(values.get(k) or "").strip() for k in FIELD_KEYS if k != "interruptible"}

    if not text["name"]:
        errors["name"] = "required"
    elif not NAME.fullmatch(text["name"]):
        errors["name"] = "1-64 of A-Z a-z 0-9 . _ -"
    else:
        payload["name"] = text["name"]

    if not text["cores"]:
        errors["cores"] = "required"
    elif not text["cores"].isdigit() or int(text["cores"]) < 1:
        errors["cores"] = "must be a whole number of at least 1"
    elif largest_cores is not None and int(text["cores"]) > largest_cores:
        errors["cores"] = f"the largest server has {largest_cores} cores"
    else:
        payload["cores"] = int(text["cores"])

    duration_s = None
    if not text["duration"]:
        errors["duration"] = "required"
    else:
        try:
            duration_s = parse_duration(text["duration"])
            payload["duration"] = duration_s
        except ValueError as exc:
            errors["duration"] = str(exc)

    earliest = _instant(text, "earliest", now, errors)
    start = now if earliest is None else max(earliest, now)  # a start in the past is now, as the backend reads it
    if earliest is not None:
        payload["earliest_start"] = to_rfc3339(earliest)
    deadline = _instant(text, "deadline", now, errors)
    if deadline is not None:
        if deadline <= now:
            errors["deadline"] = "is in the past"
        elif earliest is not None and deadline <= earliest:
            errors["deadline"] = "is not after the earliest start"
        elif duration_s is not None and (deadline - start).total_seconds() < duration_s:
            after = " after the earliest start" if earliest is not None else ""
            errors["deadline"] = f"leaves less time than the duration{after}"
        else:
            payload["deadline"] = to_rfc3339(deadline)

    payload["interruptible"] = bool(values.get("interruptible"))

    regions = split_list(text["regions"])
    unknown = [r for r in regions if r not in REGIONS]
    if unknown:
        errors["regions"] = f"unknown region {unknown[0]!r}; e.g. {', '.join(list(REGIONS)[:3])}"
    else:
        payload["regions"] = regions

    tags = split_list(text["tags"])
    bad = [t for t in tags if not TAG.fullmatch(t)]
    missing = [t for t in tags if known_tags and t not in known_tags]
    if bad:
        errors["tags"] = f"{bad[0][:20]!r} is not a tag (letters, digits, . _ : -)"
    elif missing:
        errors["tags"] = f"no server has the tag {missing[0]!r}"
    else:
        payload["tags"] = tags

    if text["command"]:
        try:
            draft.argv = shlex.split(text["command"])
        except ValueError as exc:
            errors["command"] = f"cannot split it: {exc}"
        else:
            payload["command"] = draft.argv
    return draft


def _instant(text: Mapping[str, str], key: str, now: datetime, errors: dict[str, str]) -> datetime | None:
    """The instant typed into field `key` (None when blank or unreadable, which `errors` says)."""
    if not text[key]:
        return None
    try:
        return parse_local_time(text[key], now)
    except ValueError as exc:
        errors[key] = str(exc)
        return None
