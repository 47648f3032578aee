"""The allocator's one entry point: a Problem and a carbon-intensity port in, a Plan out."""

from __future__ import annotations

import itertools
import random
import time

from backend.allocation import exact, repack
from backend.allocation.baselines import plan_first_fit, plan_round_robin
from backend.allocation.carbon import footprint
from backend.allocation.choices import Board, Choice, choice_pieces, occupied_slots, priced
from backend.allocation.explain import Explainer
from backend.allocation.heuristic import improve, insert, plan_greedy, ruin_and_recreate
from backend.allocation.horizon import Horizon
from backend.allocation.intensity import CarbonIntensity
from backend.allocation.model import Placement, Plan, Problem
from backend.allocation.windows import TaskWindow, Waiting, no_capacity_reason, task_windows

SEARCH_ON_RUIN_SHARE = 0.3
"""Share of a periodic round's budget that ruin and recreate gets on a fleet small enough for
the MILP, searching on from the last plan, before the neighbourhoods (`repack`) get the rest.
Rounds made this way add their searches up: on the benchmark's small instances, rounds of 1 s
on the same tasks came within 2.2% of the best plans known after four rounds, where a single
plan of 1 s or 2 s ends 3-11% above on the worst seeds (neighbourhoods alone got stuck at 10%
on one seed; see BENCHMARKS.md, allocation)."""
_searches = itertools.count()
SOLVERS = ("auto", "heuristic", "exact", "first-fit", "round-robin")
AUTO_HEURISTIC_SHARE = 0.6
"""Share of an "auto" round's budget the heuristic plans in on a fleet small enough for the MILP,
before exact re-plans of neighbourhoods (`repack`) get the rest. Rounds of a few tasks leave
most of it to them (the heuristic's search stops when its steps stop gaining) and end proven
optimal. The heuristic's ruin and recreate and the neighbourhoods each make plans the other
cannot: with 60% of 2 s to the heuristic the benchmark's small instances ended 0.28% above the
best plans known (median of 10 seeds), with 50% 0.31%, and with 50% of 1 s seed 7 was 9-15%
above (its plans come from ruin and recreate) where 75% left seed 4 at 11% (its plans come from
the neighbourhoods)."""


def plan_tasks(
    problem: Problem,
    intensity: CarbonIntensity,
    *,
    solver: str = "auto",
    time_budget_s: float = 1.0,
    previous: Plan | None = None,
    refine: bool = False,
) -> Plan:
    """Place every task of `problem` where and when it emits least CO2 within its window.

    `solver`: "auto" (when the MILP is small enough: the heuristic, then exact re-plans of
    neighbourhoods with the rest of the budget, `repack`; else the heuristic alone),
    "heuristic", "exact" (HiGHS on the whole model, from the plan "auto" makes in a quarter of
    the budget), or a carbon-agnostic baseline ("first-fit", "round-robin"). `time_budget_s`
    bounds the search (the heuristic's improvement passes, the MILP's run). With `previous` (the last plan), the
    heuristic keeps its placements that still hold, inserts the other tasks and repairs
    locally: the fast path after one submission. With `refine` too, it then searches from there
    for the rest of the budget (the periodic round): a plan changes only where the search finds
    better, so what was planned around tasks known ahead stays planned. An "auto" round small
    enough for the MILP searches on with ruin and recreate, then exact re-plans of
    neighbourhoods: over rounds its search adds up.

    Every task ends in `placements` (with an explanation) or in `unschedulable` with the
    binding constraint. Capacity per server and slot includes `problem.fixed`.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(SOLVERS)}")
    started = time.perf_counter()
    deadline = started + time_budget_s
    horizon = Horizon(problem, intensity)
    windows, reasons = task_windows(list(problem.tasks), horizon)
    unschedulable = {t: r for t, r in reasons.items() if not isinstance(r, Waiting)}
    fixed_board = Board(horizon, problem.fixed)
    board = fixed_board.copy()
    used, optimal = solver, False
    kept_choices: dict[str, Choice] = {}
    if solver == "first-fit":
        choices = plan_first_fit(windows, board)
    elif solver == "round-robin":
        choices = plan_round_robin(windows, board)
    elif previous is not None and solver in ("auto", "heuristic") and not (refine and _exact_fits(solver, windows)):
        used, (choices, kept_choices) = "heuristic", _replan(windows, board, previous, deadline, refine)
    elif solver == "exact":
        warm, _ = repack.plan_small(
            windows,
            board.copy(),
            deadline=started + time_budget_s * exact.ORACLE_HEURISTIC_SHARE,
            heuristic_share=AUTO_HEURISTIC_SHARE,
        )
        choices, optimal = exact.plan_exact(
            windows, board, warm, time_budget_s=max(0.0, deadline - time.perf_counter())
        )
    elif previous is not None and refine and _exact_fits(solver, windows):
        choices, kept_choices = _replan(windows, board, previous, deadline)
        rng = random.Random(next(_searches))  # each round tries other moves than the last
        ruin_and_recreate(windows, board, choices, deadline=started + SEARCH_ON_RUIN_SHARE * time_budget_s, rng=rng)
        optimal = repack.search(windows, board, choices, deadline=deadline, rng=rng)
        used = "exact" if optimal else "heuristic+exact"
    elif _exact_fits(solver, windows):
        choices, optimal = repack.plan_small(windows, board, deadline=deadline, heuristic_share=AUTO_HEURISTIC_SHARE)
        used = "exact" if optimal else "heuristic+exact"
    else:
        used, choices = "heuristic", plan_greedy(windows, board, deadline=deadline)
    plan = Plan(
        made_at_ms=problem.now_ms,
        solver=used,
        slot_s=problem.slot_s,
        start_ms=horizon.start_ms,
        horizon_end_ms=horizon.end_ms,
        unschedulable=unschedulable,
        waiting={t: str(r) for t, r in reasons.items() if isinstance(r, Waiting)},
        optimal=optimal,
    )
    explainer = Explainer(horizon, fixed_board)
    for window in windows:
        task = window.task
        choice = choices.get(task.id)
        if choice is None:
            plan.unschedulable[task.id] = no_capacity_reason(window)
            continue
        before = previous.placements.get(task.id) if previous is not None else None
        if before is not None and kept_choices.get(task.id) is choice:
            # It stays where it was, and keeps its explanation: its run-now alternative is the one
            # it had when it was placed, not one that drifts as time passes.
            plan.placements[task.id] = before
            if previous is not None and task.id in previous.explanations:
                plan.explanations[task.id] = previous.explanations[task.id]
                continue
        else:
            pieces = choice_pieces(window, horizon, choice)
            kwh, grams = footprint(horizon, choice.row, task.cores, pieces)
            plan.placements[task.id] = Placement(
                task.id, horizon.servers[choice.row].id, pieces, grams, kwh, task.cores
            )
        plan.explanations[task.id] = explainer.explain(window, choice)
    plan.solve_s = time.perf_counter() - started
    return plan


def _exact_fits(solver: str, windows: list[TaskWindow]) -> bool:
    return solver == "auto" and exact.small_enough(windows)


def _replan(
    windows: list[TaskWindow], board: Board, previous: Plan, deadline: float, refine: bool = False
) -> tuple[dict[str, Choice], dict[str, Choice]]:
    """Keep what still holds of `previous`, insert the rest with a bounded local repair (and,
    with `refine`, search on until `deadline`); the choices, and those of the previous plan as
    they were kept (before the repair)."""
    choices: dict[str, Choice] = {}
    kept, new = [], []
    for window in windows:
        choice = _still_valid(window, board, previous.placements.get(window.task.id))
        if choice is None:
            new.append(window)
        else:
            board.take(choice, window.task.cores)
            choices[window.task.id] = choice
            kept.append(window)
    before_repair = dict(choices)
    insert(new, kept, board, choices, deadline=deadline)
    if refine:
        improve(windows, board, choices, deadline=deadline)
        ruin_and_recreate(windows, board, choices, deadline=deadline, rng=random.Random(len(windows)))
    return choices, before_repair


def _still_valid(window: TaskWindow, board: Board, placement: Placement | None) -> Choice | None:
    """The previous placement as a choice, if its server, slots and room still allow it."""
    horizon = board.horizon
    if placement is None or placement.server_id not in horizon.index:
        return None
    row = horizon.index[placement.server_id]
    slots = occupied_slots(horizon, placement.pieces)
    if (
        row not in window.rows
        or len(slots) != window.need
        or slots[0] < window.lo
        or slots[-1] >= window.hi
        or (window.contiguous and slots[-1] - slots[0] != window.need - 1)
    ):
        return None
    choice = priced(window, horizon, row, slots)
    return choice if board.fits(choice, window.task.cores) else None
