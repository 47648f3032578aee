"""What the tasks of the last days say the next ones will bring: the demand the planner keeps
clean cores for.

Tasks known early would otherwise take the clean cores at once, and the tasks submitted later
(above all those without slack, which have one choice of time) would run on dirty servers.
Tasks tend to come back at the same time of day (a nightly build, a report at 09:00), so each
task that could start in the last `days` is expected again at the same time on the days ahead,
holding its cores for its run time from that start, weighed by the number of days of history:
a day-by-day average of the load as it arrives. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from backend.allocation.model import Expected

DAY_MS = 86_400_000
HISTORY_DAYS = 7
"""How many days back the forecast looks."""


class _Task(Protocol):
    @property
    def cores(self) -> int: ...
    @property
    def duration_s(self) -> int: ...
    @property
    def earliest_start_ms(self) -> int: ...


def expected_demand(
    history: Iterable[_Task],
    known: Iterable[_Task],
    now_ms: int,
    until_ms: int,
    days: int = HISTORY_DAYS,
) -> list[Expected]:
    """Demand expected from tasks not yet submitted that may start in (now, until): each task of
    `history` that could start in the last `days`, repeated at the same time of day after now,
    for its run time, its cores divided by the days of history there are. `known` are the tasks
    of the round: those that may start only after now were declared ahead, and are taken off
    (as negative demand: the horizon never counts less than none)."""
    since = now_ms - days * DAY_MS
    past = [t for t in history if since <= t.earliest_start_ms < now_ms and t.duration_s > 0]
    if not past:
        return []
    covered = min(days, max(1, -(-(now_ms - min(t.earliest_start_ms for t in past)) // DAY_MS)))
    out: list[Expected] = []
    for task in past:
        for k in range(1, days + (until_ms - now_ms) // DAY_MS + 2):
            start = task.earliest_start_ms + k * DAY_MS
            if start >= until_ms:
                break
            if start > now_ms:
                out.append(Expected(start, start + task.duration_s * 1000, task.cores / covered))
    for task in known:
        if task.earliest_start_ms > now_ms:
            start = task.earliest_start_ms
            out.append(Expected(start, start + task.duration_s * 1000, -float(task.cores)))
    return out
