"""The one JSON writer of every HTTP body and websocket frame: never NaN or Infinity.

JSON has neither; Python's `json.dumps` writes them anyway (`NaN`, `Infinity`), which strict
parsers, browsers and the TUI's own client refuse, so one bad rollup would break every reader of
a history. Here a non-finite float becomes `null`, meaning "no value", as a gap in a history.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _finite(value: Any) -> Any:
    """`value` with every non-finite float, at any depth, replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def dumps(value: Any) -> str:
    """Compact JSON text of `value`; non-finite floats are written as null."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:  # rare: only then is the whole value walked
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)
