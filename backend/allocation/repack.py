"""Exact re-plans of neighbourhoods: the plan of a fleet small enough for the MILP, improved a
few servers at a time.

The heuristic's moves change a few tasks at once. Some plans need dozens to change together:
on the benchmark's small instances (20 servers, 60 tasks), the best plans pack the three large
clean servers with 32-core tasks back to back and send a long task without slack to a dirty
server, and no sequence of moves that each gain gets there. HiGHS on the whole model finds such
plans, but in a minute, not a second. On the tasks of three or four servers and the few tasks
elsewhere that would gain most there, it finds them in tens of milliseconds.

A step (`repack`): a task is drawn, more often the more grams it would save on its cleanest
server; the neighbourhood is its server and the cleanest others it may use. The tasks there may
move anywhere among those servers (or leave the plan, when that lets more tasks in); tasks
elsewhere that could cost less there, and tasks left out, may move in or keep what they have.
The MILP (`exact.Model`, its split tasks priced near their grams, which HiGHS solves several
times quicker) is solved with the plan's price as cutoff and a small gap; the result is kept
when it places more tasks, or as many for fewer grams (exact). The neighbourhood grows by a
server while steps are quick (doubles while they are very quick) and shrinks by one when a step
runs out of time: on an easy fleet it soon covers every server and task, which is the whole
MILP, and a plan it cannot improve is then proven optimal.
"""

from __future__ import annotations

import dataclasses
import random
import time

import numpy as np

from backend.allocation.choices import Board, Choice, least_cost_g
from backend.allocation.exact import ABS_GAP_G, Model, solve
from backend.allocation.heuristic import plan_greedy
from backend.allocation.windows import TaskWindow

STEP_S = 0.3
"""Most one neighbourhood's MILP may take."""
STEP_GAP = 1e-3
"""Relative gap a neighbourhood's MILP stops at (the whole model's is strict)."""
FIRST_SERVERS = 3
"""Servers in the first neighbourhood."""
INVITED_PER_SERVER = 3
"""Tasks from elsewhere a neighbourhood takes per server: those that would save most there.
Each adds its choices on every server of the neighbourhood to the MILP: with 5, the steps that
gain most on the benchmark's hard seeds took 0.6-1.1 s (beyond STEP_S, so they gained nothing);
with 3, 0.2-0.4 s for the same grams (BENCHMARKS.md, allocation)."""
STEP_CUT_POOL = 100
"""Cuts a neighbourhood's MILP keeps in its pool (HiGHS's default is 10,000): its steps spent
most of their time separating cuts at the root before their sub-MIP found the plan."""
MAX_REPEATS = 200
"""Neighbourhoods tried in a row that had been tried on the same plan: the search ends."""


def plan_small(
    windows: list[TaskWindow], board: Board, *, deadline: float, heuristic_share: float
) -> tuple[dict[str, Choice], bool]:
    """Choices for as many of `windows` as fit, least CO2 first, and whether they are proven
    optimal: the heuristic for `heuristic_share` of the time to `deadline`, then exact re-plans
    of neighbourhoods (`search`) for the rest. `board` is updated."""
    started = time.perf_counter()
    choices = plan_greedy(windows, board, deadline=started + heuristic_share * max(0.0, deadline - started))
    optimal = search(windows, board, choices, deadline=deadline, rng=random.Random(len(windows)))
    return choices, optimal


def search(
    windows: list[TaskWindow], board: Board, choices: dict[str, Choice], *, deadline: float, rng: random.Random
) -> bool:
    """Improve `choices` (on `board`) by exact re-plans of neighbourhoods until `deadline`;
    True when a re-plan of every task on every server proved them optimal."""
    if not windows:
        return True
    horizon = board.horizon
    by_id = {w.task.id: w for w in windows}
    floors = {w.task.id: float(least_cost_g(w, horizon, w.rows).min()) for w in windows}
    n_servers = len(horizon.servers)
    size = min(FIRST_SERVERS, n_servers)
    tried: set[frozenset[int]] = set()
    repeats = 0
    every = frozenset(range(n_servers))
    while time.perf_counter() < deadline and repeats < MAX_REPEATS:
        if size >= n_servers or not choices:
            rows = every
        else:
            seed = by_id[_draw(choices, floors, rng)]
            current = choices[seed.task.id].row
            by_floor = seed.rows[np.argsort(horizon.cheapest_price(seed.rows, seed.lo, seed.hi), kind="stable")]
            others = [int(r) for r in by_floor if int(r) != current]
            rows = frozenset([current, *others[: size - 1]])
        whole = rows == every
        if rows in tried and not whole:
            repeats += 1
            size = min(size + 1, n_servers)
            continue
        repeats = 0
        tried.add(rows)
        limit = min(STEP_S, deadline - time.perf_counter())
        if limit <= 0:
            break
        started = time.perf_counter()
        improved, complete = repack(windows, board, choices, rows, time_limit_s=limit, whole=whole)
        if improved:
            tried.clear()
        if whole and complete and not improved:
            return True
        took = time.perf_counter() - started
        if not complete:
            size = max(2, size - 1)
        elif took < limit / 30:  # a model this quick: a round of a few tasks, soon the whole of it
            size = min(n_servers, 2 * size)
        elif took < limit / 4:
            size = min(n_servers, size + 1)
    return False


def _draw(choices: dict[str, Choice], floors: dict[str, float], rng: random.Random) -> str:
    """A placed task, drawn by the grams it would save on its cleanest server (any if none)."""
    ids = list(choices)
    weights = [max(0.0, choices[t].cost_g - floors[t]) for t in ids]
    if sum(weights) <= 0:
        return rng.choice(ids)
    return rng.choices(ids, weights=weights)[0]


def repack(
    windows: list[TaskWindow],
    board: Board,
    choices: dict[str, Choice],
    rows: frozenset[int],
    *,
    time_limit_s: float,
    whole: bool = False,
) -> tuple[bool, bool]:
    """Re-plan exactly the tasks on `rows` and those that could gain there; (improved, the MILP
    finished within its time). `choices` and `board` change only when the plan improves."""
    by_id = {w.task.id: w for w in windows}
    on_rows = np.array(sorted(rows))
    inside = [t for t, c in choices.items() if c.row in rows]
    invited = _invited(windows, board, choices, rows, on_rows, limit=None if whole else INVITED_PER_SERVER * len(rows))
    free = board.copy()
    for task_id in inside:
        free.give_back(choices[task_id], by_id[task_id].task.cores)
    # each task keeps its own servers among `rows`; one left where it was costs what it costs now
    sub = [dataclasses.replace(by_id[t], rows=np.intersect1d(by_id[t].rows, on_rows)) for t in inside + invited]
    keep_g = {t: choices[t].cost_g for t in invited if t in choices}
    # a step's model prices interruptible tasks near their grams: several times quicker, and a
    # plan it finds is kept only when its exact grams are fewer (below); the whole model is exact
    model = Model(sub, free, keep_g=keep_g, partial_slots=whole)
    now_g = sum(model.price_of(by_id[t], choices[t]) for t in inside) + sum(model.penalty[t] for t in invited)
    values, complete = solve(
        model,
        time_limit_s=time_limit_s,
        rel_gap=1e-9 if whole else STEP_GAP,
        cutoff_g=now_g - ABS_GAP_G,
        cut_pool=None if whole else STEP_CUT_POOL,
    )
    if values is None:
        return False, complete
    new = model.choices(values)
    # more tasks placed first, then fewer grams (a task of the neighbourhood may leave the plan
    # when that lets more others in)
    placed_before = len(inside) + sum(t in choices for t in invited)
    placed_after = sum(t in new for t in inside) + sum(t in new or t in choices for t in invited)
    grams_before = sum(choices[t].cost_g for t in inside + invited if t in choices)
    kept = [t for t in invited if t not in new and t in choices]
    grams_after = sum(c.cost_g for c in new.values()) + sum(choices[t].cost_g for t in kept)
    if placed_after < placed_before or (placed_after == placed_before and grams_after >= grams_before - ABS_GAP_G):
        return False, complete
    for task_id in inside + [t for t in invited if t in new and t in choices]:
        board.give_back(choices.pop(task_id), by_id[task_id].task.cores)
    for task_id, choice in new.items():
        board.take(choice, by_id[task_id].task.cores)
        choices[task_id] = choice
    return True, complete


def _invited(
    windows: list[TaskWindow],
    board: Board,
    choices: dict[str, Choice],
    rows: frozenset[int],
    on_rows: np.ndarray,
    *,
    limit: int | None,
) -> list[str]:
    """Tasks not on `rows` that may use them: those left out first, then those that could cost
    less there, most saved first (at most `limit` of them; all with None)."""
    left_out, gains = [], []
    for w in windows:
        task_id = w.task.id
        choice = choices.get(task_id)
        if choice is not None and choice.row in rows:
            continue
        usable = np.intersect1d(w.rows, on_rows)
        if not len(usable):
            continue
        if choice is None:
            left_out.append(task_id)
            continue
        floor = float(least_cost_g(w, board.horizon, usable).min())
        if floor < choice.cost_g:
            gains.append((choice.cost_g - floor, task_id))
    gains.sort(reverse=True)
    ranked = left_out + [task_id for _, task_id in gains]
    return ranked if limit is None else ranked[:limit]
