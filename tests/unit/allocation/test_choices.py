"""The two ways of finding a one-run task's cheapest choice agree: the listed runs (`_RunTable`,
used when a task has few) and the chunked search over servers (used otherwise)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.allocation import BuiltinIntensity
from backend.allocation.choices import Board, cheapest
from backend.allocation.horizon import Horizon
from backend.allocation.windows import task_windows

from .builders import problems


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problems(), st.integers(0, 2**32 - 1), st.floats(0.0, 1.0))
def test_the_listed_runs_give_the_choice_the_search_over_servers_gives(prob, seed, load):
    horizon = Horizon(prob, BuiltinIntensity())
    windows, _ = task_windows(list(prob.tasks), horizon)
    board = Board(horizon)
    rng = np.random.default_rng(seed)
    board.free -= (rng.random(board.free.shape) * load * board.free).astype(board.free.dtype)
    for window in windows:
        if not window.contiguous:
            continue
        assert board.run_table(window) is not None  # these tasks are small enough to be listed
        listed, searched = cheapest(window, board), cheapest(window, board, window.rows)
        assert (listed is None) == (searched is None)
        if listed is not None and searched is not None:
            assert (listed.row, listed.slots, listed.partial) == (searched.row, searched.slots, searched.partial)
            assert abs(listed.cost_g - searched.cost_g) <= 1e-9
