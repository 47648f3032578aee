"""Carbon-intensity traces as CSV (`tasker grid import FILE`): one row per region and instant.

    region,ts,g_per_kwh
    eu-west,2026-06-01T00:00:00Z,212.5
    eu-west,1780275600000,198

`ts` is RFC 3339 with a zone, or epoch milliseconds. Exports of Electricity Maps, WattTime or
the UK Carbon Intensity API map onto these three columns. Every bad row is refused with its line
and field, so a file is imported whole or not at all.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

from backend.services.timestamps import parse_rfc3339_ms
from tasker.domain import EARLIEST_TS_MS, REGIONS

MAX_G_PER_KWH = 5000.0
"""Above any real grid (coal is about 820-1,000 g/kWh): a larger figure is a unit mistake."""

HEADER = ("region", "ts", "g_per_kwh")


@dataclass(frozen=True, slots=True)
class TraceRow:
    """One trace point: the intensity of `region`'s grid from `ts_ms` until the next point."""

    region: str
    ts_ms: int
    g_per_kwh: float


def parse_trace_csv(text: str) -> list[TraceRow]:
    """Rows of a trace CSV with the header `region,ts,g_per_kwh` (blank lines skipped).

    Raises ValueError naming the line and the field of the first bad row.
    """
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(cell.strip().lower() for cell in header) != HEADER:
        raise ValueError(f"line 1: header must be {','.join(HEADER)}")
    rows = []
    for cells in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(HEADER):
            raise ValueError(f"line {line}: expected 3 fields (region,ts,g_per_kwh), got {len(cells)}")
        rows.append(TraceRow(_region(cells[0], line), _ts(cells[1], line), _value(cells[2], line)))
    return rows


def _region(cell: str, line: int) -> str:
    region = cell.strip()
    if region not in REGIONS:
        raise ValueError(f"line {line}: region {region!r} is not a known region")
    return region


def _ts(cell: str, line: int) -> int:
    text = cell.strip()
    if text.isdigit() and len(text) <= 15:
        ts_ms = int(text)
    else:
        try:
            ts_ms = parse_rfc3339_ms(text)
        except ValueError as exc:
            raise ValueError(f"line {line}: ts {text!r} {exc}; or give epoch milliseconds") from None
    if ts_ms < EARLIEST_TS_MS:
        raise ValueError(f"line {line}: ts {text!r} is before 2000-01-01 (epoch seconds instead of ms?)")
    return ts_ms


def _value(cell: str, line: int) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise ValueError(f"line {line}: g_per_kwh {cell.strip()!r} is not a number") from None
    if not math.isfinite(value) or value < 0 or value > MAX_G_PER_KWH:
        raise ValueError(f"line {line}: g_per_kwh {cell.strip()!r} must be between 0 and {MAX_G_PER_KWH:g}")
    return value
