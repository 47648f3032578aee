"""Carbon-agnostic baselines, priced with the same accounting as the carbon-aware plan.

- run-now first-fit: tasks in order of submission (earliest start, then as given), each at the
  earliest time it fits, on the first server (in fleet order) that satisfies its constraints;
- round-robin: tasks in the same order, each on the next eligible server in rotation that can
  take it, as early as it fits there.
"""

from __future__ import annotations

from backend.allocation.choices import Board, Choice, earliest
from backend.allocation.windows import TaskWindow


def plan_first_fit(windows: list[TaskWindow], board: Board) -> dict[str, Choice]:
    """Run now, first fit; `board` is updated."""
    choices: dict[str, Choice] = {}
    for window in _submission_order(windows):
        choice = earliest(window, board)
        if choice is not None:
            board.take(choice, window.task.cores)
            choices[window.task.id] = choice
    return choices


def plan_round_robin(windows: list[TaskWindow], board: Board) -> dict[str, Choice]:
    """Round-robin over the fleet; `board` is updated."""
    choices: dict[str, Choice] = {}
    turn = 0
    n_servers = len(board.horizon.servers)
    for window in _submission_order(windows):
        # eligible servers from the one whose turn it is, wrapping around
        rows = sorted(window.rows, key=lambda r: (r - turn) % n_servers)
        for row in rows:
            choice = earliest(window, board, rows=window.rows[window.rows == row])
            if choice is not None:
                board.take(choice, window.task.cores)
                choices[window.task.id] = choice
                turn = row + 1
                break
    return choices


def _submission_order(windows: list[TaskWindow]) -> list[TaskWindow]:
    return sorted(windows, key=lambda w: w.task.earliest_start_ms)  # stable: ties keep their order
