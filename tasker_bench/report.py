"""Printing figures: aligned text tables for people, one JSON object for programs."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], title: str = "") -> str:
    """Rows under a header, columns padded; numbers right-aligned, None shown as '-'."""
    cells = [[_cell(v) for v in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in rows if row[i] is not None) for i in range(len(header))]
    lines = [title] if title else []
    for n, row in enumerate(cells):
        parts = [c.rjust(w) if numeric[i] and n else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(parts).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def verdict(value: float | None, target: float, higher_is_better: bool) -> str:
    """'met' / 'MISSED' against a target, '-' when there is no figure."""
    if value is None:
        return "-"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


CPU_HEADER = ("process", "CPU s", "% of a core", "peak RSS MB")


def cpu_rows(cpu: dict[str, Any]) -> list[list[Any]]:
    """Rows (process, CPU s, % of one core, peak RSS) of a CpuMeter result."""
    return [
        [name, p["cpu_s"], p["percent_of_core"], p.get("peak_rss_mb")] for name, p in cpu.get("processes", {}).items()
    ]


def emit(result: dict[str, Any], text: str, as_json: bool) -> None:
    """Print the result: JSON when asked, otherwise the human-readable text."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(text.rstrip() + "\n")
