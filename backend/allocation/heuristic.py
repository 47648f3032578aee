"""The fast online solver: greedy cheapest insertion, then re-insertion passes.

1. Tasks go in order of fewest choices first (least slack per slot needed, then the largest),
   each to its cheapest (server, slots) given the tasks already placed (`choices.cheapest`: the
   servers are tried cleanest-bound first and the search stops when no server can beat the best).
2. Improvement: each placed task, costliest first, is taken out and put back where it is now
   cheapest given all the others; a pass never makes the plan worse. Passes repeat while they
   save more than `MIN_GAIN` of the total, within the time budget. Tasks left out are retried.
3. Never worse than running now: the run-now first-fit plan is made too and, when it places
   more tasks or the same ones for less, improved in its turn; the better plan is kept (more
   tasks placed first, then less CO2). Plans compare at the planning prices: with tasks
   expected (`Horizon.price_g`), the tasks known may emit more than they would run now, the
   price of leaving clean cores to the tasks to come.
4. Ruin and recreate, while the budget lasts (`ruin_and_recreate`): a task is pushed onto a
   server where it could cost less, ejecting the tasks in its way; or it gives way, moving to
   another server so that the tasks that would gain most on the room it leaves move in; or
   related tasks are taken out; all go back in a perturbed order (fewest choices first, or most
   energy first), and the change is kept only when the plan gets better (seeded, so a plan is
   reproducible).

Incremental re-plan (`insert`): the previous choices stay, new tasks are inserted, and a bounded
repair re-inserts the new tasks and the tasks sharing their servers.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable

import numpy as np

from backend.allocation.baselines import plan_first_fit
from backend.allocation.choices import Board, Choice, cheapest, least_cost_g
from backend.allocation.windows import TaskWindow

MIN_GAIN = 1e-4
"""An improvement pass that saves less than this share of the total ends the search."""
MAX_PASSES = 4
REPAIR_LIMIT = 48
"""Tasks an incremental re-plan may move besides the new ones."""


STALE_FACTOR = 10
"""Ruin-and-recreate stops after this many steps per task without a gain (or at the deadline)."""
GIVE_SHARE = 0.25
"""Share of ruin-and-recreate steps that give way."""
GIVE_TAKE = 8
"""Tasks a give-way step moves onto the room it frees (those that would gain most there)."""
EJECT_SHARE = 0.75
"""Share of the other steps that eject (the rest ruin a server and a random few)."""
RUIN_SHARE = 0.15
"""Share of the placed tasks a ruin-and-recreate step takes out (at least 2)."""


def plan_greedy(windows: list[TaskWindow], board: Board, *, deadline: float) -> dict[str, Choice]:
    """Choices for as many of `windows` as fit, least CO2 first; `board` is updated."""
    run_now_board = board.copy()  # before the search takes any room
    best = _search(sorted(windows, key=_difficulty), windows, board, deadline)
    run_now = plan_first_fit(windows, run_now_board)
    if _score(run_now) > _score(best):
        improve(windows, run_now_board, run_now, deadline=deadline)
        best = run_now
        board.free[:] = run_now_board.free
    ruin_and_recreate(windows, board, best, deadline=deadline, rng=random.Random(len(windows)))
    return best


def ruin_and_recreate(
    windows: list[TaskWindow], board: Board, choices: dict[str, Choice], *, deadline: float, rng: random.Random
) -> None:
    """Large-neighbourhood search while the budget lasts. A step either gives way (a task goes
    first onto another server, even a dearer one, and the tasks that would gain most on the room
    it leaves go back after it with those in its way), ejects (a task goes first onto a server
    where it could cost less, and the tasks there that overlap its window go back after it) or
    ruins (the tasks on one server and on one they could move to, plus a few at random, go back
    in a perturbed order); the tasks left out are retried, and the result is kept when it places
    more tasks or emits less, otherwise undone. Moves of one task at a time cannot make room on
    a contested clean server for a bigger task, nor send a long task without slack to a dirty
    server so that several others share the clean one: these can."""
    by_id = {w.task.id: w for w in windows}
    floors: dict[str, np.ndarray] = {}  # per task, when it is first picked
    floor_on: dict[tuple[str, int], float] = {}  # per task and server, when first asked
    patience = STALE_FACTOR * len(windows)
    stale = 0
    while time.perf_counter() < deadline and len(choices) >= 2 and stale < patience:
        stale += 1
        placed_before = len(choices)
        placed = list(choices)
        draw = rng.random()
        if draw < GIVE_SHARE:
            seed = by_id[rng.choice(placed)]
            left = choices[seed.task.id]
            others = seed.rows[seed.rows != left.row]
            if not len(others):
                continue
            target = int(rng.choice(others))
            out = [seed.task.id] + [
                t for t in placed if t != seed.task.id and choices[t].row == target and _overlaps(choices[t], seed)
            ]
            invited = _gainers(left, placed, set(out), by_id, board, choices, floor_on)
            saved = _take_out(out + invited, by_id, board, choices)
            first = cheapest(seed, board, np.array([target]))
            if first is not None:
                board.take(first, seed.task.cores)
                choices[seed.task.id] = first
            again = [by_id[t] for t in invited + out[1:]] + [
                w for w in windows if w.task.id not in choices and w.task.id not in saved
            ]
            if first is None:
                again.insert(0, seed)
            _insert_all(again if rng.random() < 0.5 else _recreate_order(again, rng), board, choices)
            if first is not None:
                again.append(seed)  # undone with the others
        elif draw < GIVE_SHARE + EJECT_SHARE * (1 - GIVE_SHARE):
            # eject: a task goes first onto a server where it could cost less; the tasks there
            # that overlap its window make room and go back after it
            seed = by_id[rng.choice(placed)]
            if seed.task.id not in floors:
                floors[seed.task.id] = least_cost_g(seed, board.horizon, seed.rows)
            cheaper = seed.rows[floors[seed.task.id] < choices[seed.task.id].cost_g]
            if not len(cheaper):
                continue
            target = int(rng.choice(cheaper))
            out = [seed.task.id] + [
                t for t in placed if t != seed.task.id and choices[t].row == target and _overlaps(choices[t], seed)
            ]
            saved = _take_out(out, by_id, board, choices)
            first = cheapest(seed, board, np.array([target]))
            if first is not None:
                board.take(first, seed.task.cores)
                choices[seed.task.id] = first
            again = [by_id[t] for t in out[1:]] + [
                w for w in windows if w.task.id not in choices and w.task.id not in saved
            ]
            _insert_all(_recreate_order(again if first is not None else [seed, *again], rng), board, choices)
            again.append(seed)  # undone with the others
        else:
            seed = by_id[rng.choice(placed)]
            rows = {choices[seed.task.id].row, int(rng.choice(seed.rows))}
            related = [t for t in placed if choices[t].row in rows]
            extra = rng.sample(placed, min(len(placed), max(2, int(RUIN_SHARE * len(placed))) // 2))
            out = list(dict.fromkeys(related + extra))
            saved = _take_out(out, by_id, board, choices)
            again = [by_id[t] for t in out] + [
                w for w in windows if w.task.id not in choices and w.task.id not in saved
            ]
            _insert_all(_recreate_order(again, rng), board, choices)
        # only the tasks taken out and put back changed: compare their grams (the others' are equal)
        grams_before = sum(c.cost_g for c in saved.values())
        grams_after = sum(choices[w.task.id].cost_g for w in again if w.task.id in choices)
        if len(choices) > placed_before or (len(choices) == placed_before and grams_after < grams_before):
            stale = 0
            continue
        for w in again:  # undo
            if w.task.id in choices:
                board.give_back(choices.pop(w.task.id), w.task.cores)
        for task_id, choice in saved.items():
            board.take(choice, by_id[task_id].task.cores)
            choices[task_id] = choice


def _gainers(
    left: Choice,
    placed: list[str],
    skip: set[str],
    by_id: dict[str, TaskWindow],
    board: Board,
    choices: dict[str, Choice],
    floor_on: dict[tuple[str, int], float],
) -> list[str]:
    """Up to GIVE_TAKE placed tasks that overlap the slots `left` held on its server and could
    cost less there (their cleanest slot on it throughout), those that would save most first."""
    row, first, last = left.row, left.slots[0], left.slots[-1]
    gains = []
    for task_id in placed:
        choice = choices[task_id]
        if task_id in skip or choice.row == row or choice.slots[0] > last or choice.slots[-1] < first:
            continue
        key = (task_id, row)
        if key not in floor_on:
            window = by_id[task_id]
            eligible = bool((window.rows == row).any())
            floor_on[key] = float(least_cost_g(window, board.horizon, np.array([row]))[0]) if eligible else np.inf
        if floor_on[key] < choice.cost_g:
            gains.append((choice.cost_g - floor_on[key], task_id))
    gains.sort(reverse=True)
    return [task_id for _, task_id in gains[:GIVE_TAKE]]


def _take_out(
    ids: list[str], by_id: dict[str, TaskWindow], board: Board, choices: dict[str, Choice]
) -> dict[str, Choice]:
    """Remove the tasks' choices from the plan and free their cores; returns what they held."""
    saved = {t: choices.pop(t) for t in ids}
    for task_id, choice in saved.items():
        board.give_back(choice, by_id[task_id].task.cores)
    return saved


def _overlaps(choice: Choice, window: TaskWindow) -> bool:
    return choice.slots[0] < window.hi and choice.slots[-1] >= window.lo


def _recreate_order(again: list[TaskWindow], rng: random.Random) -> list[TaskWindow]:
    """The order a ruined neighbourhood goes back in, perturbed: half the time fewest choices
    first (places the most tasks), half the time most energy first (a large task on a clean
    server saves more than the small ones it displaces emit elsewhere)."""
    if rng.random() < 0.5:
        return sorted(again, key=lambda w: (-_energy(w) * rng.uniform(0.7, 1.4), rng.random()))
    return sorted(again, key=lambda w: (_difficulty(w)[0] * rng.uniform(0.7, 1.4), rng.random()))


def _energy(window: TaskWindow) -> float:
    """Core-slots the task runs: what its CO2 scales with."""
    return window.task.cores * (window.need - 1 + window.last_fraction)


def _search(order: list[TaskWindow], windows: list[TaskWindow], board: Board, deadline: float) -> dict[str, Choice]:
    choices: dict[str, Choice] = {}
    _insert_all(order, board, choices)
    improve(windows, board, choices, deadline=deadline)
    return choices


def _score(choices: dict[str, Choice]) -> tuple[int, float]:
    """Higher is better: more tasks placed, then fewer grams."""
    return len(choices), -sum(c.cost_g for c in choices.values())


def insert(
    new: list[TaskWindow], kept: list[TaskWindow], board: Board, choices: dict[str, Choice], *, deadline: float
) -> None:
    """Add `new` tasks to a plan whose `kept` tasks already hold `choices` on `board`, then
    repair locally: re-insert the new ones and up to REPAIR_LIMIT tasks on the servers they use."""
    _insert_all(sorted(new, key=_difficulty), board, choices)
    touched = {choices[w.task.id].row for w in new if w.task.id in choices}
    neighbours = [w for w in kept if w.task.id in choices and choices[w.task.id].row in touched]
    neighbours.sort(key=lambda w: -choices[w.task.id].cost_g)
    improve(new + neighbours[:REPAIR_LIMIT], board, choices, deadline=deadline, passes=1)


def improve(
    windows: Iterable[TaskWindow],
    board: Board,
    choices: dict[str, Choice],
    *,
    deadline: float,
    passes: int = MAX_PASSES,
) -> None:
    """Re-insertion passes over `windows` (costliest first), then a retry of those left out."""
    windows = list(windows)
    for _ in range(passes):
        if time.perf_counter() > deadline:
            break
        total = sum(c.cost_g for c in choices.values()) or 1.0
        gained = 0.0
        for window in sorted(windows, key=lambda w: -choices[w.task.id].cost_g if w.task.id in choices else 0):
            current = choices.get(window.task.id)
            if current is None:
                continue
            if time.perf_counter() > deadline:  # a pass over a large plan takes most of a second
                break
            cores = window.task.cores
            board.give_back(current, cores)
            better = cheapest(window, board)
            if better is not None and better.cost_g < current.cost_g:
                gained += current.cost_g - better.cost_g
                current = better
            board.take(current, cores)
            choices[window.task.id] = current
        if gained < MIN_GAIN * total:
            break
    _insert_all([w for w in windows if w.task.id not in choices], board, choices)


def _insert_all(windows: Iterable[TaskWindow], board: Board, choices: dict[str, Choice]) -> None:
    for window in windows:
        choice = cheapest(window, board)
        if choice is not None:
            board.take(choice, window.task.cores)
            choices[window.task.id] = choice


def _difficulty(window: TaskWindow) -> tuple[float, int]:
    return (window.slack, -window.task.cores * window.need)
