"""What the tasks of the last days say the next ones will bring: the demand the planner keeps
clean cores for.

Tasks known early would otherwise take the clean cores at once, and the tasks submitted later
(above all those without slack, which have one choice of time) would run on dirty servers.
Tasks tend to come back at the same time of day (a nightly build, a report at 09:00), so each
task that could start in the last `days` is expected again at the same time on the days ahead,
holding its cores for its run time from that start, weighed by the number of days of history:
a day-by-day average of the load as it arrives.

A fleet's first day has seen only some hours of the day. Over the hours it has not seen yet,
its tasks so far are expected to come again at the pace they came: the span they were
submitted over (at least `FIRST_SPAN_MS`) repeats back to back; the hours seen repeat daily
like any history. On the benchmark's default workload a first day went from 27.3% to 31.0% less
CO2 than run-now with this (seed 2: 28.4% to 31.5%; BENCHMARKS.md, allocation). No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from backend.allocation.model import Expected

DAY_MS = 86_400_000
HISTORY_DAYS = 7
"""How many days back the forecast looks."""
FIRST_SPAN_MS = 3_600_000
"""Least span of history a first day's forecast repeats: the pace of a few minutes of tasks
would be repeated hundreds of times over the horizon."""


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
    for its run time, its cores divided by the days of history there are; with less than a day
    of history, also over the hours of the day not seen yet (`_unseen_hours`). None with less
    history than `FIRST_SPAN_MS`. `known` are the tasks of the round: those that may start only
    after now were declared ahead, and are taken off (as negative demand: the horizon never
    counts less than none)."""
    since = now_ms - days * DAY_MS
    past = [t for t in history if since <= t.earliest_start_ms < now_ms and t.duration_s > 0]
    first = min((t.earliest_start_ms for t in past), default=now_ms)
    if now_ms - first < FIRST_SPAN_MS:
        return []
    covered = min(days, -(-(now_ms - first) // DAY_MS))
    out: list[Expected] = []
    for task in past:
        start = task.earliest_start_ms + ((now_ms - task.earliest_start_ms) // DAY_MS + 1) * DAY_MS
        while start < until_ms:
            out.append(Expected(start, start + task.duration_s * 1000, task.cores / covered))
            start += DAY_MS
    if now_ms - first < DAY_MS:
        out += _unseen_hours(past, first, now_ms, until_ms)
    for task in known:
        if task.earliest_start_ms > now_ms:
            start = task.earliest_start_ms
            out.append(Expected(start, start + task.duration_s * 1000, -float(task.cores)))
    return out


def _unseen_hours(past: list[_Task], first: int, now_ms: int, until_ms: int) -> list[Expected]:
    """The tasks since `first` (under a day ago) again and again, back to back, over the hours
    of each day ahead that the history has not seen: [now, first + 1 day), then the same hours
    a day later, and so on until `until`."""
    span = now_ms - first
    out: list[Expected] = []
    day = 0
    while now_ms + day * DAY_MS < until_ms:
        end = min(until_ms, first + (day + 1) * DAY_MS)
        for task in past:
            start = task.earliest_start_ms + span + day * DAY_MS
            while start < end:
                out.append(Expected(start, start + task.duration_s * 1000, float(task.cores)))
                start += span
        day += 1
    return out
