"""The exact solver: a mixed-integer program solved by HiGHS (through `highspy`).

Why HiGHS rather than OR-Tools: it is open source (MIT), ships as one pip wheel with no other
service or licence, its MILP branch-and-cut is among the best open solvers, and the model is a
plain linear one (no constraint-programming features needed).

Model, per task t, eligible server s and slot k of its window:
- non-interruptible: binary x[t,s,k] = starts at slot k on s (only starts whose slots all have
  room after the fixed load); its price is the run's CO2 (the last slot for its fraction only);
- interruptible: binary y[t,s] = runs on s; binary z[t,s,k] = runs in slot k; sum_k z = need*y
  and z <= y (without it the relaxation runs a sliver of a task at full cores in the cleanest
  slot: on the fleets of the benchmark its bound was up to 19% below the best plan known, and
  HiGHS found worse plans in a minute); continuous p[t,s,k] <= z picks the one partial slot
  (sum_k p = y), refunding the part of that slot it does not use, so the cheapest choice puts
  the partial where a slot costs most;
- u[t] in [0, 1] = not placed, with sum x + sum y + u = 1, at one penalty for every task, above
  the CO2 of any whole plan: placing more tasks comes first, then less CO2 (a penalty per task
  that grew with its size would leave out a small task to place a large one);
- capacity: for each server and slot, the cores of runs covering it <= free cores.
Objective: total grams plus `choices.TIE_G` per slot index (ties go to the earlier finish).
The heuristic's plan is not handed to HiGHS as a starting solution: HiGHS 1.16's presolve
prices such a start without the objective of the columns it removed, takes it for better than
the optimum and stops there (a 3-task instance came back "optimal" at 5x the least grams).
Instead, when the budget ends before HiGHS proves optimality, the better of its incumbent and
the heuristic's plan is kept; and a solution whose grams disagree with HiGHS's own objective is
never called optimal.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections import defaultdict

import highspy
import numpy as np

from backend.allocation.choices import TIE_G, Board, Choice, priced
from backend.allocation.heuristic import improve
from backend.allocation.windows import TaskWindow

ABS_GAP_G = 1e-6
"""HiGHS stops when its plan is proven within this many grams of the optimum."""
MAX_VARIABLES = 20_000
"""Largest model "auto" solves exactly; above it the heuristic plans alone."""
MAX_ENTRIES = 100_000
"""Most matrix entries "auto" builds a model of. The model is built in Python, before HiGHS's
time limit starts, at about 1.5 microseconds an entry: two 2-day runs on 500 servers make
14,500 variables (under MAX_VARIABLES) but 7.5 million entries, 11 s of building."""


def variable_count(windows: list[TaskWindow]) -> int:
    """Upper bound of the model's variables for these tasks."""
    count = 0
    for w in windows:
        span = w.hi - w.lo
        count += len(w.rows) * (span - w.need + 1 if w.contiguous else 2 * span + 1) + 1
    return count


def entry_count(windows: list[TaskWindow]) -> int:
    """Upper bound of the model's matrix entries: a run's column has one per slot it covers
    (and one for its task), an interruptible task's slot column four (and one in its server
    column), its partial column two."""
    count = 0
    for w in windows:
        span = w.hi - w.lo
        count += len(w.rows) * ((span - w.need + 1) * (w.need + 1) if w.contiguous else 7 * span + 3) + 1
    return count


def small_enough(windows: list[TaskWindow]) -> bool:
    """Whether "auto" should solve these tasks exactly: few variables, and a model quick to build."""
    return variable_count(windows) <= MAX_VARIABLES and entry_count(windows) <= MAX_ENTRIES


ORACLE_HEURISTIC_SHARE = 0.25
"""The share of the budget the oracle (the exact solver asked for by name: tests, `tasker bench
allocate --exact`) gives its warm start, the plan of `repack.plan_small`: HiGHS gets the most."""


def plan_exact(
    windows: list[TaskWindow], board: Board, warm: dict[str, Choice], *, time_budget_s: float
) -> tuple[dict[str, Choice], bool]:
    """(choices, proven optimal) for the tasks on `board` (which is updated): HiGHS on the whole
    model within the budget, or `warm` (a plan made on a copy of `board`) when it is as good."""
    model = Model(windows, board)
    values, optimal = solve(model, time_limit_s=max(0.05, time_budget_s))
    choices = None if values is None else model.choices(values)
    # The warm plan when it is as good: within the gap HiGHS stops at when proven optimal.
    warm_cost = _objective(warm, windows, model.penalty)
    if choices is None or warm_cost <= _objective(choices, windows, model.penalty) + (ABS_GAP_G if optimal else 0.0):
        choices = dict(warm)
    for w in windows:
        if w.task.id in choices:
            board.take(choices[w.task.id], w.task.cores)
    # Equal grams go to the earlier finish: the tie-break (TIE_G a slot) is far below the gap
    # HiGHS stops within, so its plan may start a task later than need be. One re-insertion pass
    # moves each task only where it costs less, so it stays optimal.
    improve(windows, board, choices, deadline=time.perf_counter() + time_budget_s, passes=1)
    return choices, optimal


def solve(
    model: Model,
    *,
    time_limit_s: float,
    rel_gap: float = 1e-9,
    cutoff_g: float | None = None,
    cut_pool: int | None = None,
) -> tuple[list[float] | None, bool]:
    """HiGHS on `model`: the values of its best solution (None if it found none), and whether it
    finished, proving that solution within the gaps (or, with `cutoff_g`, that none costs less
    than the cutoff). A solution whose grams disagree with HiGHS's objective is never proven.
    `cut_pool` caps HiGHS's pool of cuts (its soft limit, rows)."""
    h = _new_highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    if cut_pool is not None:
        h.setOptionValue("mip_pool_soft_limit", cut_pool)
    # The penalties make the objective large: the gap of a whole plan must be absolute.
    h.setOptionValue("mip_rel_gap", rel_gap)
    h.setOptionValue("mip_abs_gap", ABS_GAP_G)
    h.setOptionValue("time_limit", max(0.01, time_limit_s))
    if cutoff_g is not None:
        h.setOptionValue("objective_bound", cutoff_g)
    h.passModel(model.lp())
    h.run()
    status = h.getModelStatus()
    finished = status in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kInfeasible)
    if h.getInfo().primal_solution_status != 2:
        return None, finished and cutoff_g is not None
    values = list(h.getSolution().col_value)
    claimed = h.getInfo().objective_function_value
    agrees = abs(model.objective(values) - claimed) <= 1e-6 * max(1.0, abs(claimed))
    return values, finished and agrees


_banner_lock = threading.Lock()
_banner_shown = False


def _new_highs() -> highspy.Highs:
    """A solver, without the banner HiGHS prints on stdout when a process makes its first one
    (it would land in `tasker bench allocate --json` and in the TUI's terminal)."""
    global _banner_shown
    with _banner_lock:
        if _banner_shown:
            return highspy.Highs()
        sys.stdout.flush()
        saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            solver = highspy.Highs()
            ctypes.CDLL(None).fflush(None)  # what the C library buffered goes to /dev/null too
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
            _banner_shown = True
        return solver


def _objective(choices: dict[str, Choice], windows: list[TaskWindow], penalty: dict[str, float]) -> float:
    return sum(choices[w.task.id].cost_g if w.task.id in choices else penalty[w.task.id] for w in windows)


class Model:
    """The MILP's columns (with what each means) and rows, built column by column. Each task
    has a column for taking none of its choices, priced at `unplaced_g`, or at `keep_g[task]`
    for a task that then keeps a placement made outside the model (`repack`).

    With `partial_slots` False, an interruptible task has no partial columns: each of its slots
    is priced at the share of a slot it runs on average (need - 1 + last fraction over need),
    so its grams are near, not exact. HiGHS solves such a model several times quicker (its
    cuts on the partial columns were most of a step's time); a caller that wants grams exact
    prices the plan again (`choices.priced`)."""

    def __init__(
        self,
        windows: list[TaskWindow],
        board: Board,
        keep_g: dict[str, float] | None = None,
        *,
        partial_slots: bool = True,
    ) -> None:
        self.windows, self.board = windows, board
        self.partial_slots = partial_slots
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.entries: list[list[tuple[int, float]]] = []
        self.row_lower: list[float] = []
        self.row_upper: list[float] = []
        self.capacity_rows: dict[tuple[int, int], int] = {}
        self.meaning: list[tuple] = []
        self.penalty: dict[str, float] = {}
        # One penalty for all: more than every task at its dearest, so one more task placed
        # always outweighs any saving of grams.
        dearest = sum(float(board.horizon.price_g[w.rows, w.lo : w.hi].max()) * w.task.cores * w.need for w in windows)
        self.unplaced_g = 2.0 * dearest + 1.0
        self.keep_g = keep_g or {}
        for w in windows:
            self._add_task(w)

    def _row(self, lower: float, upper: float) -> int:
        self.row_lower.append(lower)
        self.row_upper.append(upper)
        return len(self.row_lower) - 1

    def _col(self, cost: float, upper: float, integer: bool, entries: list[tuple[int, float]], meaning: tuple) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integer.append(integer)
        self.entries.append(entries)
        self.meaning.append(meaning)
        return len(self.cost) - 1

    def _capacity(self, row: int, k: int) -> int:
        key = (row, k)
        if key not in self.capacity_rows:
            self.capacity_rows[key] = self._row(-np.inf, float(self.board.free[row, k]))
        return self.capacity_rows[key]

    def _add_task(self, w: TaskWindow) -> None:
        horizon, cores, free = self.board.horizon, w.task.cores, self.board.free
        one = self._row(1.0, 1.0)
        self.penalty[w.task.id] = self.keep_g.get(w.task.id, self.unplaced_g)
        self._col(self.penalty[w.task.id], 1.0, False, [(one, 1.0)], ("unplaced", w))
        for row in (int(r) for r in w.rows):
            if w.contiguous:
                fits = np.flatnonzero(np.convolve(free[row, w.lo : w.hi] < cores, np.ones(w.need), "valid") == 0)
                for s in fits:
                    choice = priced(w, horizon, row, list(range(w.lo + int(s), w.lo + int(s) + w.need)))
                    entries = [(one, 1.0)] + [(self._capacity(row, k), cores) for k in choice.slots]
                    self._col(choice.cost_g, 1.0, True, entries, ("run", w, choice))
                continue
            slots = [k for k in range(w.lo, w.hi) if free[row, k] >= cores]
            if len(slots) < w.need:
                continue
            count = self._row(0.0, 0.0)
            on = self._col(0.0, 1.0, True, [(one, 1.0), (count, -w.need)], ("on", w, row))
            # without partial columns (`partial_slots`), each slot at the share a slot runs on average
            partial = self._row(0.0, 0.0) if self.partial_slots else None
            if partial is not None:
                self.entries[on].append((partial, -1.0))
            share = 1.0 if self.partial_slots else self.slot_share(w)
            for k in slots:
                price = float(horizon.price_g[row, k]) * cores
                link = None if partial is None else self._row(-np.inf, 0.0)
                within = self._row(-np.inf, 0.0)
                self.entries[on].append((within, -1.0))
                entries = [(count, 1.0), (self._capacity(row, k), cores)]
                entries += [(within, 1.0)] if link is None else [(link, -1.0), (within, 1.0)]
                self._col(share * price + TIE_G * k, 1.0, True, entries, ("slot", w, row, k))
                if partial is not None and link is not None:
                    self._col(-(1.0 - w.last_fraction) * price, 1.0, False, [(partial, 1.0), (link, 1.0)], ("partial",))

    @staticmethod
    def slot_share(w: TaskWindow) -> float:
        return (w.need - 1 + w.last_fraction) / w.need

    def price_of(self, w: TaskWindow, choice: Choice) -> float:
        """What the model's columns make of `choice`: its grams, or near them (`partial_slots`)."""
        if w.contiguous or self.partial_slots:
            return choice.cost_g
        price = self.board.horizon.price_g[choice.row, list(choice.slots)] * w.task.cores
        return self.slot_share(w) * float(price.sum()) + TIE_G * float(sum(choice.slots))

    def lp(self) -> highspy.HighsLp:
        lp = highspy.HighsLp()
        n = len(self.cost)
        lp.num_col_, lp.num_row_ = n, len(self.row_lower)
        lp.col_cost_ = np.array(self.cost)
        lp.col_lower_ = np.zeros(n)
        lp.col_upper_ = np.array(self.upper)
        lp.row_lower_ = np.array(self.row_lower)
        lp.row_upper_ = np.array(self.row_upper)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = np.cumsum([0] + [len(e) for e in self.entries]).astype(np.int32)
        lp.a_matrix_.index_ = np.array([r for e in self.entries for r, _ in e], dtype=np.int32)
        lp.a_matrix_.value_ = np.array([v for e in self.entries for _, v in e], dtype=float)
        lp.integrality_ = [
            highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous for i in self.integer
        ]
        return lp

    def objective(self, values: list[float]) -> float:
        """The objective of a solution, worked out from its columns."""
        return float(np.dot(self.cost, values))

    def choices(self, values: list[float]) -> dict[str, Choice]:
        """The plan the solution describes."""
        horizon = self.board.horizon
        out: dict[str, Choice] = {}
        slots: dict[tuple[str, int], list[int]] = defaultdict(list)
        for value, meaning in zip(values, self.meaning):
            if value < 0.5:
                continue
            if meaning[0] == "run":
                out[meaning[1].task.id] = meaning[2]
            elif meaning[0] == "slot":
                slots[(meaning[1].task.id, meaning[2])].append(meaning[3])
        by_id = {w.task.id: w for w in self.windows}
        for (task_id, row), chosen in slots.items():
            out[task_id] = priced(by_id[task_id], horizon, row, sorted(chosen))
        return out
