"""Checks both registry adapters apply to the values crossing the Registry port.

Only plain values may reach a store: a dict where a string is expected could act as a MongoDB
operator, and a NaN would silently become NULL in SQLite. Records are checked field by field
against their dataclass annotations; lookup keys that are not strings cannot name anything
stored, so lookups treat them as "not found" instead of passing them to a driver.
"""

from __future__ import annotations

import json
import math
import typing
from dataclasses import fields
from typing import Any

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1  # what both SQLite and BSON can hold


def _is_int(v: object) -> bool:
    # A comparison, not `in range(...)`: for int subclasses such as bson.Int64 membership
    # walks the whole range.
    return isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX


# A field's annotation (as written on the port's dataclasses) -> (check, normalise, expected).
_KINDS: dict[Any, tuple[typing.Callable[[Any], bool], typing.Callable[[Any], Any], str]] = {
    str: (lambda v: isinstance(v, str), str, "a string"),
    int: (_is_int, int, "a 64-bit integer"),
    float: (
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        float,
        "a finite number",
    ),
    int | None: (
        lambda v: v is None or _is_int(v),
        lambda v: v,
        "an integer or None",
    ),
    list[str]: (
        lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
        list,
        "a list of strings",
    ),
    # Task fields (TaskRecord).
    bool: (lambda v: isinstance(v, bool), bool, "true or false"),
    str | None: (lambda v: v is None or isinstance(v, str), lambda v: v, "a string or None"),
    float | None: (
        lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)),
        lambda v: None if v is None else float(v),
        "a finite number or None",
    ),
    list[str] | None: (
        lambda v: v is None or (isinstance(v, list) and all(isinstance(t, str) for t in v)),
        lambda v: None if v is None else list(v),
        "a list of strings or None",
    ),
    dict[str, str]: (
        lambda v: isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()),
        dict,
        "a map of strings to strings",
    ),
    list[list[int]]: (
        lambda v: (
            isinstance(v, list)
            and all(isinstance(p, (list, tuple)) and len(p) == 2 and all(_is_int(x) for x in p) for p in v)
        ),
        lambda v: [[int(a), int(b)] for a, b in v],
        "a list of [start_ms, end_ms] integer pairs",
    ),
}


def record_values(record: Any) -> dict[str, Any]:
    """The fields of a port record as plain values, checked against their annotations.

    Raises TypeError naming the record and field when a value is not of the declared kind
    (a dict, a bool for a number, a NaN...); numbers declared float come back as float.
    """
    hints = typing.get_type_hints(type(record))
    values: dict[str, Any] = {}
    for f in fields(record):
        ok, normalise, expected = _KINDS[hints[f.name]]
        value = getattr(record, f.name)
        if not ok(value):
            raise TypeError(f"{type(record).__name__}.{f.name} must be {expected}, got {type(value).__name__}")
        values[f.name] = normalise(value)
    return values


def lookup_key(value: object) -> str | None:
    """A lookup key as it can be stored, or None when it cannot name anything (not a string)."""
    return value if isinstance(value, str) else None


def name_key(name: str) -> str:
    """The form of a server name that uniqueness is judged on: "web-1" and "WEB-1" collide."""
    return name.casefold()


def require_str(what: str, value: object) -> str:
    """`value` itself when it is a string; TypeError naming `what` otherwise."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, got {type(value).__name__}")
    return value


def require_count(what: str, value: object, minimum: int = 0) -> int:
    """`value` when it is an integer >= minimum (bools refused); TypeError/ValueError otherwise."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}")
    if value < minimum or value > _INT64_MAX:
        raise ValueError(f"{what} must be a 64-bit integer of at least {minimum}, got {value}")
    return value


def chat_values(
    conversation: object,
    sender: object,
    sender_role: object,
    text: object,
    ts_ms: object,
    client_key: object,
    extra: object,
) -> tuple[str, str, str, str, int, str, str]:
    """The arguments of `append_chat` checked, with `extra` encoded as JSON text.

    `extra` is stored as text rather than as a nested document so that none of its keys can
    ever be read by a store as an operator or a field path.
    """
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise TypeError(f"chat extra must be a dict, got {type(extra).__name__}")
    try:
        extra_json = json.dumps(extra, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"chat extra must be plain JSON values: {exc}") from None
    return (
        require_str("conversation", conversation),
        require_str("sender", sender),
        require_str("sender_role", sender_role),
        require_str("chat text", text),
        require_count("chat ts_ms", ts_ms),
        require_str("client_key", client_key),
        extra_json,
    )


def extra_from_json(text: str) -> dict[str, Any]:
    """The `extra` dict of a stored chat message."""
    return json.loads(text) if text else {}
