"""Task allocation: place each task on the server and time where it emits the least CO2.

The scheduler role calls `plan_tasks` with a `Problem` and a `CarbonIntensity` adapter
(`BuiltinIntensity`, or `TraceIntensity` over rows from `parse_trace_csv`).
"""

from backend.allocation.intensity import (
    BuiltinIntensity,
    CarbonIntensity,
    TraceIntensity,
    TraceRow,
    parse_trace_csv,
)
from backend.allocation.planner import SOLVERS, plan_tasks

__all__ = [
    "SOLVERS",
    "BuiltinIntensity",
    "CarbonIntensity",
    "TraceIntensity",
    "TraceRow",
    "parse_trace_csv",
    "plan_tasks",
]
