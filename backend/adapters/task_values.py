"""Tasks, leases and grid traces as both registry adapters check and store them.

A task is stored whole as one JSON document (plus the columns or fields that queries filter
on), so both stores hold exactly the checked values of `record_values` and nothing a caller
could turn into a query.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Any

from backend.adapters.registry_values import record_values, require_count, require_str
from backend.ports import TaskRecord

_TASK_FIELDS = tuple(f.name for f in fields(TaskRecord))


def task_json(task: TaskRecord) -> str:
    """The checked fields of a task as JSON text; TypeError naming a field of the wrong kind."""
    return json.dumps(record_values(task), allow_nan=False, separators=(",", ":"))


def task_from_json(text: str) -> TaskRecord:
    values = json.loads(text)
    return TaskRecord(**{k: values[k] for k in _TASK_FIELDS if k in values})


def check_update(task: TaskRecord, expected_version: int) -> None:
    """ValueError unless the task carries the version after `expected_version`."""
    require_count("expected_version", expected_version, minimum=1)
    if task.version != expected_version + 1:
        raise ValueError(
            f"task {task.id!r}: version must be {expected_version + 1} (expected_version + 1), got {task.version}"
        )


def check_states(states: object) -> list[str] | None:
    """A states filter as a list of strings, or None for every state."""
    if states is None:
        return None
    if isinstance(states, str) or not isinstance(states, Iterable):
        raise TypeError("states must be a collection of strings")
    listed = list(states)
    if not all(isinstance(s, str) for s in listed):
        raise TypeError("states must be a collection of strings")
    return listed


def check_since(since_ms: object) -> int | None:
    """An `updated_since_ms` filter: None, or a whole number of milliseconds."""
    if since_ms is None:
        return None
    if isinstance(since_ms, bool) or not isinstance(since_ms, int):
        raise TypeError("updated_since_ms must be an integer (milliseconds) or None")
    return since_ms


def lease_args(name: object, holder: object, now_ms: object, ttl_ms: object) -> tuple[str, str, int, int]:
    return (
        require_str("lease name", name),
        require_str("lease holder", holder),
        require_count("now_ms", now_ms),
        require_count("ttl_ms", ttl_ms, minimum=1),
    )


def trace_rows(region: object, rows: Sequence[Any]) -> tuple[str, list[tuple[int, float]]]:
    """A region and its rows (ts_ms, g_per_kwh) checked, sorted, one per ts (the last given)."""
    region = require_str("region", region)
    out: dict[int, float] = {}
    for row in rows:
        ts, value = row
        ts = require_count("trace ts_ms", ts)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise ValueError(f"trace value at {ts} must be a finite number >= 0")
        out[ts] = float(value)
    return region, sorted(out.items())
