"""Why each task sits where it does: against running it now on the first server that fits,
given only the load that is fixed, and in one line for a person."""

from __future__ import annotations

from backend.allocation.carbon import footprint
from backend.allocation.choices import TIE_G, Board, Choice, choice_pieces, earliest
from backend.allocation.horizon import Horizon
from backend.allocation.model import Explanation
from backend.allocation.windows import TaskWindow, fmt_instant
from tasker.grid import GRID_PROFILES, local_hour

SOLAR_DEPTH = 0.1
"""A region's grid whose midday dip is at least this deep is said to wait for 'midday solar'."""
CLEANER = 0.98
"""A later slot counts as cleaner when its intensity is below this share of the earlier one."""


class Explainer:
    """Explanations for one plan; the run-now counterfactual is shared by tasks that ask alike."""

    def __init__(self, horizon: Horizon, fixed_board: Board) -> None:
        self.horizon = horizon
        self.fixed_board = fixed_board
        self._run_now: dict[tuple, tuple[Choice, float] | None] = {}

    def explain(self, window: TaskWindow, choice: Choice) -> Explanation:
        """Where and when the run-now first-fit would put the task alone, its CO2, and why not."""
        run_now = self._counterfactual(window)
        why = f"{self._why_server(choice)}; {self._why_time(window, choice)}"
        if run_now is None:
            return Explanation(None, None, None, why)
        other, grams = run_now
        start = self.horizon.slot_start_ms(other.slots[0])
        return Explanation(self.horizon.servers[other.row].id, start, grams, why)

    def _counterfactual(self, window: TaskWindow) -> tuple[Choice, float] | None:
        task = window.task
        key = (
            window.rows.tobytes(),
            window.lo,
            window.hi,
            window.need,
            window.last_fraction,
            task.cores,
            window.contiguous,
        )
        if key not in self._run_now:
            choice = earliest(window, self.fixed_board)
            if choice is None:
                self._run_now[key] = None
            elif choice.slots[-1] < self.horizon.n_slots and not self.horizon.holds:
                # the price of a choice is its grams (plus the tie-break): no need to cut pieces
                self._run_now[key] = (choice, choice.cost_g - TIE_G * choice.slots[-1])
            else:
                pieces = choice_pieces(window, self.horizon, choice)
                self._run_now[key] = (choice, footprint(self.horizon, choice.row, task.cores, pieces)[1])
        return self._run_now[key]

    def _why_server(self, choice: Choice) -> str:
        server = self.horizon.servers[choice.row]
        return f"{server.energy_source} in {server.region}, {self._level(choice):.0f} g/kWh"

    def _level(self, choice: Choice) -> float:
        """Mean g/kWh of the server over the task's slots."""
        return float(self.horizon.g_per_kwh[choice.row, list(choice.slots)].mean())

    def _why_time(self, window: TaskWindow, choice: Choice) -> str:
        first = choice.slots[0]
        if first == window.lo:
            return "runs as soon as it may"
        horizon, row = self.horizon, choice.row
        server = horizon.servers[row]
        # over its run, as the server's figure is, against a run of as many slots from the start
        then = self._level(choice)
        before = float(horizon.g_per_kwh[row, window.lo : window.lo + len(choice.slots)].mean())
        at = fmt_instant(horizon.slot_start_ms(first))
        earlier = (
            "now"
            if horizon.slot_start_ms(window.lo) <= horizon.now_ms
            else f"at {fmt_instant(horizon.slot_start_ms(window.lo))}"
        )
        if then < CLEANER * before:
            profile = GRID_PROFILES.get(server.region)
            sunny = profile is not None and profile.solar_depth >= SOLAR_DEPTH
            if sunny and 9.0 <= local_hour(server.region, horizon.slot_start_ms(first)) <= 17.0:
                what = f"midday solar in {server.region}"
            else:
                what = f"a cleaner grid in {server.region}"
            return f"waits for {what}: {then:.0f} g/kWh from {at} vs {before:.0f} starting {earlier}"
        if self._held(window, first):
            return "clean cores before then are kept for the tasks expected to come"
        return "earlier slots on cleaner servers are full"

    def _held(self, window: TaskWindow, first: int) -> bool:
        """Whether some of the task's servers cost more than their grams before `first`."""
        horizon = self.horizon
        if not horizon.holds:
            return False
        rows = window.rows
        return bool((horizon.price_g[rows, window.lo : first] > horizon.core_slot_g[rows, window.lo : first]).any())
