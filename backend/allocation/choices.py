"""Free cores per server and slot, and the two questions solvers ask of them for one task:
the cheapest (server, slots) in its window, and the earliest.

A choice reserves whole slots (capacity is per slot); it is priced with the same slot figures as
`carbon.footprint`, the `partial` slot counted for the task's last fraction only. Equal costs go
to the earlier finish: each slot index adds a negligible `TIE_G` to the price.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from backend.allocation.horizon import Horizon
from backend.allocation.model import Placement
from backend.allocation.windows import TaskWindow

TIE_G = 1e-9
"""Grams per slot index added to a choice's price: ties go to the earlier finish."""
_CHUNK = 64
"""Servers evaluated at once; the chunks go cleanest first and stop when none can do better."""
RUN_TABLE_CELLS = 8192
"""A one-run task whose runs (servers x starts) cover at most this many cells has them listed
once, cheapest first (`_RunTable`); a search then asks only which is the first that fits. Most
tasks of a small fleet qualify, and ruin-and-recreate asks the same task thousands of times."""


@dataclass(frozen=True, slots=True)
class Choice:
    """Slots on one server (horizon row) for one task; `partial` is the slot it only partly uses."""

    row: int
    slots: tuple[int, ...]
    partial: int
    cost_g: float

    @property
    def end_slot(self) -> int:
        return self.slots[-1]


class _RunTable:
    """Every run a one-run task may take, cheapest first: its server, start, price, and the
    cells of `Board.free` (flattened) it covers."""

    __slots__ = ("rows", "starts", "cost", "cells")

    def __init__(self, window: TaskWindow, horizon: Horizon) -> None:
        rows, lo, need = window.rows, window.lo, window.need
        starts = window.hi - lo - need + 1
        cost = _run_costs(window, horizon, rows).ravel()
        order = np.argsort(cost, kind="stable")  # equal prices: the order _cheapest_run picks in
        row_of, start_of = np.divmod(order, starts)
        self.rows, self.starts, self.cost = rows[row_of], lo + start_of, cost[order]
        self.cells = (self.rows * horizon.n_slots + self.starts)[:, None] + np.arange(need)

    def cheapest(self, window: TaskWindow, board: Board) -> Choice | None:
        fits = (board.free.reshape(-1)[self.cells] >= window.task.cores).all(axis=1)
        i = int(np.argmax(fits))
        if not fits[i]:
            return None
        k = int(self.starts[i])
        return Choice(int(self.rows[i]), tuple(range(k, k + window.need)), k + window.need - 1, float(self.cost[i]))


class Board:
    """Free cores per server (row) and slot."""

    def __init__(self, horizon: Horizon, fixed: Iterable[Placement] = ()) -> None:
        self.horizon = horizon
        self.free = np.repeat(horizon.cores[:, None], horizon.n_slots, axis=1)
        self._tables: dict[str, _RunTable | None] = {}  # per task id; shared by copies
        for placement in fixed:
            row = horizon.index.get(placement.server_id)
            if row is not None:
                held = placement.cores or int(horizon.cores[row])
                self.free[row, occupied_slots(horizon, placement.pieces)] -= held

    def copy(self) -> Board:
        clone = Board.__new__(Board)
        clone.horizon, clone.free, clone._tables = self.horizon, self.free.copy(), self._tables
        return clone

    def run_table(self, window: TaskWindow) -> _RunTable | None:
        """The task's runs listed cheapest first, when it is one run with few of them."""
        task_id = window.task.id
        if task_id not in self._tables:
            cells = len(window.rows) * (window.hi - window.lo - window.need + 1) * window.need
            small = window.contiguous and cells <= RUN_TABLE_CELLS
            self._tables[task_id] = _RunTable(window, self.horizon) if small else None
        return self._tables[task_id]

    def take(self, choice: Choice, cores: int) -> None:
        self.free[choice.row, _columns(choice.slots)] -= cores

    def give_back(self, choice: Choice, cores: int) -> None:
        self.free[choice.row, _columns(choice.slots)] += cores

    def fits(self, choice: Choice, cores: int) -> bool:
        return bool((self.free[choice.row, _columns(choice.slots)] >= cores).all())


def _columns(slots: tuple[int, ...]) -> slice | list[int]:
    """A run of slots as a slice (numpy updates it in place, without an index array)."""
    first, last = slots[0], slots[-1]
    return slice(first, last + 1) if last - first + 1 == len(slots) else list(slots)


def occupied_slots(horizon: Horizon, pieces: Sequence[tuple[int, int]]) -> list[int]:
    """Slots of the horizon that the pieces touch (each reserves its whole slot)."""
    slots: list[int] = []
    for start, end in pieces:
        first, last = horizon.slot_of(start), horizon.slot_of(end - 1)
        slots.extend(range(max(first, 0), min(last, horizon.n_slots - 1) + 1))
    return slots if len(pieces) < 2 else sorted(set(slots))


def least_cost_g(window: TaskWindow, horizon: Horizon, rows: np.ndarray) -> np.ndarray:
    """Per server of `rows`, a lower bound of what the task could cost there: its cleanest slot
    in the window, for the whole run."""
    return (
        horizon.cheapest_price(rows, window.lo, window.hi)
        * (window.need - 1 + window.last_fraction)
        * window.task.cores
    )


def cheapest(window: TaskWindow, board: Board, rows: np.ndarray | None = None) -> Choice | None:
    """The least-CO2 choice for the task on `rows` (default: all its eligible servers)."""
    if rows is None:
        table = board.run_table(window)
        if table is not None:
            return table.cheapest(window, board)
    rows = window.rows if rows is None else rows
    bound = least_cost_g(window, board.horizon, rows)
    order = np.argsort(bound, kind="stable")
    best: Choice | None = None
    for at in range(0, len(order), _CHUNK):
        if best is not None and bound[order[at]] > best.cost_g:
            break
        chunk = rows[np.sort(order[at : at + _CHUNK])]
        found = (_cheapest_run if window.contiguous else _cheapest_slots)(window, board, chunk)
        if found is not None and (best is None or found.cost_g < best.cost_g):
            best = found
    return best


def _cheapest_run(window: TaskWindow, board: Board, rows: np.ndarray) -> Choice | None:
    horizon, cores = board.horizon, window.task.cores
    lo, hi, need = window.lo, window.hi, window.need
    starts = hi - lo - need + 1
    ok = _run_fits(board.free[rows, lo:hi] >= cores, need, starts)
    cost = _run_costs(window, horizon, rows)
    cost[~ok] = np.inf
    flat = int(np.argmin(cost))
    i, s = divmod(flat, starts)
    if not np.isfinite(cost[i, s]):
        return None
    k = lo + s
    return Choice(int(rows[i]), tuple(range(k, k + need)), k + need - 1, float(cost[i, s]))


def _run_costs(window: TaskWindow, horizon: Horizon, rows: np.ndarray) -> np.ndarray:
    """(rows x starts) price of the task's run from each start in its window."""
    lo, hi, need = window.lo, window.hi, window.need
    starts = hi - lo - need + 1
    prefix = horizon.price_prefix[rows, lo : hi + 1]
    last = lo + need - 1
    cost = (
        prefix[:, need - 1 : need - 1 + starts]
        - prefix[:, :starts]
        + window.last_fraction * horizon.price_g[rows, last : last + starts]
    ) * window.task.cores
    cost += TIE_G * (np.arange(starts) + last)
    return cost


def _run_fits(free_ok: np.ndarray, need: int, starts: int) -> np.ndarray:
    """(rows x starts) True where `need` slots in a row from each start all have room."""
    blocked = np.zeros((free_ok.shape[0], free_ok.shape[1] + 1), dtype=np.int32)
    np.cumsum(~free_ok, axis=1, out=blocked[:, 1:])
    return (blocked[:, need : need + starts] - blocked[:, :starts]) == 0


def _cheapest_slots(window: TaskWindow, board: Board, rows: np.ndarray) -> Choice | None:
    horizon, cores = board.horizon, window.task.cores
    lo, hi, need = window.lo, window.hi, window.need
    price = horizon.price_g[rows, lo:hi] * cores + TIE_G * np.arange(lo, hi)
    price[board.free[rows, lo:hi] < cores] = np.inf
    picked = np.partition(price, need - 1, axis=1)[:, :need]
    # the partial slot goes where a slot costs most: the run there is shortest
    dearest = picked.max(axis=1)
    full = np.isfinite(dearest)
    cost = np.full(len(rows), np.inf)
    cost[full] = picked[full].sum(axis=1) - (1.0 - window.last_fraction) * dearest[full]
    i = int(np.argmin(cost))
    if not np.isfinite(cost[i]):
        return None
    row_price = price[i]
    slots = np.sort(np.argsort(row_price, kind="stable")[:need]) + lo
    partial = int(slots[np.argmax(row_price[slots - lo])])
    return Choice(int(rows[i]), tuple(int(k) for k in slots), partial, float(cost[i]))


def earliest(window: TaskWindow, board: Board, rows: np.ndarray | None = None) -> Choice | None:
    """The choice that finishes first, on the first of `rows` (in order) among equals; carbon
    plays no part. An interruptible task takes the earliest free slots."""
    horizon, cores = board.horizon, window.task.cores
    rows = window.rows if rows is None else rows
    lo, hi, need = window.lo, window.hi, window.need
    # most of the time one of the first servers has room right away
    for at in range(0, len(rows), _CHUNK):
        room = (board.free[rows[at : at + _CHUNK], lo : lo + need] >= cores).all(axis=1)
        if room.any():
            i = at + int(np.argmax(room))
            return priced(window, horizon, int(rows[i]), list(range(lo, lo + need)))
    ok = board.free[rows, lo:hi] >= cores
    if window.contiguous:
        starts = hi - lo - need + 1
        fits = _run_fits(ok, need, starts)
        columns = np.flatnonzero(fits.any(axis=0))
        if not len(columns):
            return None
        s = int(columns[0])
        i = int(np.argmax(fits[:, s]))
        return priced(window, horizon, int(rows[i]), list(range(lo + s, lo + s + need)))
    counts = np.cumsum(ok, axis=1)
    done = counts >= need
    if not done.any():
        return None
    finish = np.where(done.any(axis=1), np.argmax(done, axis=1), hi)
    i = int(np.argmin(finish))
    slots = list(np.flatnonzero(ok[i])[:need] + lo)
    return priced(window, horizon, int(rows[i]), [int(k) for k in slots])


def priced(window: TaskWindow, horizon: Horizon, row: int, slots: list[int]) -> Choice:
    """A choice with its price, the partial slot being the costliest one (the last of a run)."""
    price = horizon.price_g[row, slots] * window.task.cores
    partial = slots[-1] if window.contiguous else slots[int(np.argmax(price))]
    cost = float(price.sum()) - (1.0 - window.last_fraction) * float(price[slots.index(partial)])
    return Choice(row, tuple(slots), partial, cost + TIE_G * slots[-1])


def choice_pieces(window: TaskWindow, horizon: Horizon, choice: Choice) -> tuple[tuple[int, int], ...]:
    """The time intervals a choice runs: whole slots, and the partial slot's share of it
    (at the slot's end when it leads into the next piece, so the two join)."""
    slots = choice.slots
    # runs of consecutive slots: [first, last] of each
    runs: list[list[int]] = []
    for k in slots:
        if runs and runs[-1][1] == k - 1:
            runs[-1][1] = k
        else:
            runs.append([k, k])
    partial_ms = round(window.last_fraction * horizon.slot_ms)
    pieces = []
    for first, last in runs:
        start, end = horizon.slot_start_ms(first), horizon.slot_start_ms(last + 1)
        if first <= choice.partial <= last and partial_ms < horizon.slot_ms:
            cut = horizon.slot_ms - partial_ms
            if choice.partial == last:
                end -= cut  # the run ends inside its last slot
            elif choice.partial == first:
                start += cut  # it leads into the next slot: start late, so the two join
            else:  # never chosen by the solvers (the partial slot is a run's end); keep it exact
                return _pieces_by_slot(window, horizon, choice)
        pieces.append((start, end))
    return tuple(pieces)


def _pieces_by_slot(window: TaskWindow, horizon: Horizon, choice: Choice) -> tuple[tuple[int, int], ...]:
    chosen = set(choice.slots)
    partial_ms = round(window.last_fraction * horizon.slot_ms)
    intervals = []
    for k in choice.slots:
        start, end = horizon.slot_start_ms(k), horizon.slot_start_ms(k + 1)
        if k == choice.partial and partial_ms < horizon.slot_ms:
            if (k + 1) in chosen and (k - 1) not in chosen:
                start = end - partial_ms
            else:
                end = start + partial_ms
        intervals.append((start, end))
    merged: list[tuple[int, int]] = []
    for start, end in intervals:
        if merged and merged[-1][1] == start:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return tuple(merged)
