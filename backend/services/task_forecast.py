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
submitted over (at least `FIRST_SPAN_MS`) repeats back to back, weighed by how steadily they
came (a burst submitted at once is not a pace); the hours seen repeat daily like any history.
On the benchmark's default workload a first day went from 27.3% to 30.5-30.9% less CO2 than
run-now with this (seed 2: 28.4% to 31.5%; BENCHMARKS.md, allocation).

A week of a busy fleet's history is tens of thousands of repeats per round; they are made with
numpy and summed per slot before they reach the planner, which only counts them per slot. No
I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import numpy as np

from backend.allocation.model import Expected

DAY_MS = 86_400_000
HISTORY_DAYS = 7
"""How many days back the forecast looks."""
FIRST_SPAN_MS = 3_600_000
"""Least span of history a first day's forecast repeats: the pace of a few minutes of tasks
would be repeated hundreds of times over the horizon."""
PACE_BIN_MS = 300_000
"""A first day's pace counts for the bins of its span in which tasks could start, over the bins
as many tasks coming at a steady random pace would fill (bins x (1 - e^(-tasks / bins))): a
steady stream counts fully however sparse, one burst for one bin."""


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
    slot_ms: int = 1,
) -> list[Expected]:
    """Demand expected from tasks not yet submitted that may start from now until `until`: each
    task of `history` that could start in the last `days`, repeated at the same time of day
    after now, for its run time, its cores divided by the days of history there are; with less
    than a day of history, also over the hours of the day not seen yet (`_unseen_hours`). None
    with less history than `FIRST_SPAN_MS`. `known` are the tasks of the round: those that may
    start only after now were declared ahead, and are taken off (as negative demand: the
    horizon never counts less than none). Repeats are widened to whole slots of `slot_ms` (from
    the epoch, as the planner's are) and those over the same slots summed."""
    since = now_ms - days * DAY_MS
    past = [t for t in history if since <= t.earliest_start_ms < now_ms and t.duration_s > 0]
    if not past or now_ms - min(t.earliest_start_ms for t in past) < FIRST_SPAN_MS:
        return []
    start, run, cores = _arrays(past)
    first = int(start.min())
    covered = min(days, -(-(now_ms - first) // DAY_MS))
    # the same time of the days ahead: the first repeat after now, then one a day
    starts, which = _repeats(start + ((now_ms - start) // DAY_MS + 1) * DAY_MS, DAY_MS, until_ms)
    parts = [(starts, starts + run[which], cores[which] / covered)]
    if now_ms - first < DAY_MS:
        parts += _unseen_hours(start, run, cores, first, now_ms, until_ms)
    ahead = [t for t in known if t.earliest_start_ms > now_ms]
    if ahead:
        begin, length, held = _arrays(ahead)
        parts.append((begin, begin + length, -held))
    return _summed(parts, slot_ms)


def _arrays(tasks: list[_Task]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Earliest starts (ms), run times (ms) and cores of `tasks`."""
    n = len(tasks)
    start = np.fromiter((t.earliest_start_ms for t in tasks), np.int64, n)
    run = np.fromiter((t.duration_s for t in tasks), np.int64, n) * 1000
    return start, run, np.fromiter((t.cores for t in tasks), np.float64, n)


def _repeats(first: np.ndarray, every: int, until_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Starts first[i], first[i] + every, ... before `until_ms`, for every i; with each its i."""
    count = np.maximum(0, -(-(until_ms - first) // every))
    which = np.repeat(np.arange(len(first)), count)
    nth = np.arange(len(which)) - np.repeat(np.cumsum(count) - count, count)
    return first[which] + nth * every, which


def _unseen_hours(
    start: np.ndarray, run: np.ndarray, cores: np.ndarray, first: int, now_ms: int, until_ms: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The tasks since `first` (under a day ago) again and again, back to back, over the hours
    of each day ahead that the history has not seen: [now, first + 1 day), then the same hours
    a day later, and so on until `until`; their cores weighed by how steadily they came (the
    `PACE_BIN_MS` bins of the span in which some could start, over those a steady stream of as
    many tasks would fill)."""
    span = now_ms - first
    # a burst (a script submitting a hundred tasks at once) is not a pace to expect all day; a
    # task an hour fills few bins but is as steady as a task a minute
    bins = -(-span // PACE_BIN_MS)
    steady = min(1.0, len(np.unique(start // PACE_BIN_MS)) / (bins * -np.expm1(-len(start) / bins)))
    parts = []
    day = 0
    while now_ms + day * DAY_MS < until_ms:
        starts, which = _repeats(start + span + day * DAY_MS, span, min(until_ms, first + (day + 1) * DAY_MS))
        parts.append((starts, starts + run[which], cores[which] * steady))
        day += 1
    return parts


def _summed(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], slot_ms: int) -> list[Expected]:
    """The (starts, ends, cores) of `parts` widened to whole slots, summed over equal slots."""
    begin = np.concatenate([p[0] for p in parts]) // slot_ms
    end = -(-np.concatenate([p[1] for p in parts]) // slot_ms)
    cores = np.concatenate([p[2] for p in parts])
    if not len(begin):
        return []
    order = np.lexsort((end, begin))
    begin, end, cores = begin[order], end[order], cores[order]
    new = np.flatnonzero(np.r_[True, (begin[1:] != begin[:-1]) | (end[1:] != end[:-1])])
    total = np.add.reduceat(cores, new)
    return [
        Expected(a * slot_ms, b * slot_ms, c)
        for a, b, c in zip(begin[new].tolist(), end[new].tolist(), total.tolist(), strict=True)
        if c
    ]
