"""Which servers and slots each task may use, and why a task cannot be placed at all.

A task may run in slots [lo, hi) on its eligible servers and needs `need` of them (`need - 1`
whole slots and one slot it uses for `last_fraction` of its length). A slot is usable from
max(earliest start, now) rounded up to the slot; a non-interruptible run must end by the
deadline, as must every slot of an interruptible one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from backend.allocation.horizon import Horizon
from backend.allocation.model import TaskSpec


@dataclass(frozen=True, slots=True)
class TaskWindow:
    """A task with the servers (horizon rows) and slot range it may use."""

    task: TaskSpec
    rows: np.ndarray
    lo: int
    hi: int
    need: int
    last_fraction: float
    contiguous: bool
    """One run; an interruptible task whose window has no slot to spare runs as one too."""

    @property
    def slack(self) -> float:
        """Spare slots in the window per slot needed: small means few choices."""
        return (self.hi - self.lo - self.need) / self.need


class Waiting(str):
    """Why a task has no window yet, though a later round's horizon will reach it."""


def task_windows(tasks: list[TaskSpec], horizon: Horizon) -> tuple[list[TaskWindow], dict[str, str]]:
    """Windows of the tasks that may fit somewhere, and a reason for each that cannot (a
    `Waiting` one for those whose run only fits past the horizon)."""
    windows: list[TaskWindow] = []
    reasons: dict[str, str] = {}
    eligible: dict[tuple, tuple[np.ndarray, str]] = {}  # most tasks ask alike: compute once
    for task in tasks:
        key = (task.server_id, task.regions, task.tags, task.cores)
        if key not in eligible:
            eligible[key] = _eligible_rows(task, horizon)
        outcome = task_window(task, horizon, eligible[key])
        if isinstance(outcome, str):
            reasons[task.id] = outcome
        else:
            windows.append(outcome)
    return windows, reasons


def task_window(task: TaskSpec, horizon: Horizon, eligible: tuple[np.ndarray, str] | None = None) -> TaskWindow | str:
    """The task's window, or the binding constraint that rules out every server and slot."""
    rows, reason = eligible if eligible is not None else _eligible_rows(task, horizon)
    if reason:
        return reason
    slot_ms = horizon.slot_ms
    duration_ms = task.duration_s * 1000
    begin_ms = max(task.earliest_start_ms, horizon.now_ms, horizon.start_ms)
    if task.deadline_ms - begin_ms < duration_ms:
        window = fmt_duration((task.deadline_ms - begin_ms) // 1000)
        return f"window {window} is shorter than duration {fmt_duration(task.duration_s)}"
    need = max(1, -(-duration_ms // slot_ms))
    last_fraction = (duration_ms - (need - 1) * slot_ms) / slot_ms if duration_ms else 1.0
    lo = -(-(begin_ms - horizon.start_ms) // slot_ms)
    # a run's partial last slot may end inside the deadline's slot; a piece of an interruptible
    # task may be any of its slots, so all of them must end by the deadline
    hi = min((task.deadline_ms - horizon.start_ms - duration_ms) // slot_ms + need, horizon.n_slots)
    split_hi = min((task.deadline_ms - horizon.start_ms) // slot_ms, horizon.n_slots)
    contiguous = not task.interruptible or split_hi - lo <= need
    if not contiguous:
        hi = split_hi
    if hi - lo < need:
        span = fmt_duration(horizon.n_slots * horizon.slot_s)
        if need > horizon.n_slots:
            return f"runs longer than the {span} planning horizon"
        if lo + need > horizon.n_slots:
            return Waiting(f"waits until the {span} planning horizon covers its run")
        return (
            f"window {fmt_duration((task.deadline_ms - begin_ms) // 1000)} holds no run of "
            f"{fmt_duration(task.duration_s)} on {fmt_duration(horizon.slot_s)} slots"
        )
    return TaskWindow(task, rows, lo, hi, need, last_fraction, contiguous)


def _eligible_rows(task: TaskSpec, horizon: Horizon) -> tuple[np.ndarray, str]:
    """Servers that satisfy pin, regions, tags and size; else the first constraint that binds."""
    servers = horizon.servers
    if task.server_id is not None:
        if task.server_id not in horizon.index:
            return np.empty(0, np.int64), f"pinned server {task.server_id} is not available"
        candidates = [horizon.index[task.server_id]]
    else:
        candidates = list(range(len(servers)))
    where = f" in regions {', '.join(sorted(task.regions))}" if task.regions else ""
    if task.regions:
        candidates = [i for i in candidates if servers[i].region in task.regions]
        if not candidates:
            return np.empty(0, np.int64), f"no server{where}"
    if task.tags:
        candidates = [i for i in candidates if task.tags <= servers[i].tags]
        if not candidates:
            missing = ", ".join(sorted(task.tags))
            return np.empty(0, np.int64), f"no server{where} has tag{'s' if len(task.tags) > 1 else ''} {missing}"
    if not candidates:
        # The scheduler leaves out servers with no reading for 2 minutes: say so, it is the usual cause.
        return np.empty(0, np.int64), (
            "no server can take tasks: none is registered, or none has reported a reading in the last 2 minutes"
        )
    largest = max(servers[i].cores for i in candidates)
    if task.cores > largest:
        return np.empty(0, np.int64), f"needs {task.cores} cores; the largest allowed server has {largest}"
    rows = np.array([i for i in candidates if servers[i].cores >= task.cores], dtype=np.int64)
    return rows, ""


def no_capacity_reason(window: TaskWindow) -> str:
    """Reason for a task that fits some server but found no free cores in its window."""
    count = len(window.rows)
    servers = "the server that matches" if count == 1 else f"the {count} servers that match"
    return f"no capacity before the deadline {fmt_instant(window.task.deadline_ms)} on {servers}"


def fmt_duration(seconds: int) -> str:
    """'2h', '30m', '1h30m', '45s'."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


def fmt_instant(ts_ms: int) -> str:
    """UTC time of day, 'HH:MM'."""
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%H:%M")
