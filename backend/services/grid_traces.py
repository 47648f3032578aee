"""Carbon-intensity traces in the registry: imported from CSV (`tasker grid import`), read back
as the planner's intensity port."""

from __future__ import annotations

from backend.allocation import BuiltinIntensity, CarbonIntensity, TraceIntensity, TraceRow, parse_trace_csv
from backend.ports import Registry
from backend.services.auth import Principal
from backend.services.errors import Forbidden, InvalidField

MAX_TRACE_ROWS = 500_000
"""Rows per import: a year at 5-minute resolution for four regions."""


async def import_trace(registry: Registry, csv_text: str, principal: Principal) -> dict[str, int]:
    """Replace the trace of every region in the CSV (admins only); region -> rows stored.

    Regions absent from the file keep their trace. A bad row refuses the whole file, naming the
    line (InvalidField on "body")."""
    if principal.role != "admin":
        raise Forbidden("only an admin may import grid traces")
    try:
        rows = parse_trace_csv(csv_text)
    except ValueError as exc:
        raise InvalidField("body", str(exc)) from None
    if not rows:
        raise InvalidField("body", "has no rows after the header")
    if len(rows) > MAX_TRACE_ROWS:
        raise InvalidField("body", f"has {len(rows)} rows; at most {MAX_TRACE_ROWS} per import")
    by_region: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        by_region.setdefault(row.region, []).append((row.ts_ms, row.g_per_kwh))
    for region, points in sorted(by_region.items()):
        await registry.replace_grid_trace(region, points)
    return {region: len({ts for ts, _ in points}) for region, points in sorted(by_region.items())}


async def load_intensity(registry: Registry) -> CarbonIntensity:
    """The traces in the registry as the planner's intensity (the built-in model without any)."""
    traces = await registry.grid_trace()
    if not traces:
        return BuiltinIntensity()
    return TraceIntensity(TraceRow(region, ts, g) for region, points in traces.items() for ts, g in points)
