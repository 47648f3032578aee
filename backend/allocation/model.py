"""What the allocator reasons about: tasks, the servers they may run on, and the plan it makes.

Plain values only (no I/O, no driver): the scheduler role turns registry records into these,
and the solvers (`heuristic`, `exact`, `baselines`) turn them into a `Plan`.

Time is UTC epoch milliseconds; durations are seconds; energy kWh; emissions grams CO2e.
The horizon is cut into slots of `slot_s` seconds starting at `Problem.start_ms` (a multiple
of the slot): capacity is reserved per slot, energy and CO2 are counted for the time a task
really runs (its last piece may end inside a slot).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_SLOT_S = 300
"""Planning resolution: 5 minutes."""
DEFAULT_HORIZON_S = 48 * 3600
"""How far ahead the planner looks: 48 hours."""


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A task as the planner sees it.

    `duration_s` is the run time still owed at full use of `cores` (all of it for a task not
    started; what is left for a started interruptible one). `server_id` pins the task to a
    server (a started interruptible task keeps its server). Empty `regions` means any region;
    `tags` must all be on the server.
    """

    id: str
    cores: int
    duration_s: int
    earliest_start_ms: int
    deadline_ms: int
    interruptible: bool = False
    regions: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    server_id: str | None = None
    name: str = ""


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """A server that can take tasks (stale and removed servers are left out by the caller)."""

    id: str
    name: str
    region: str
    energy_source: str
    intensity_g_per_kwh: float
    """The server's own average figure (the registry's carbon_intensity_g_per_kwh)."""
    pue: float
    idle_watts: float
    max_watts: float
    cores: int
    tags: frozenset[str] = frozenset()

    def task_watts(self, cores: int) -> float:
        """Watts a task of `cores` adds on this server: the linear utilisation model."""
        return max(0.0, self.max_watts - self.idle_watts) * cores / self.cores


@dataclass(frozen=True, slots=True)
class Placement:
    """Where and when a task runs: one server, one or more pieces [start_ms, end_ms)."""

    task_id: str
    server_id: str
    pieces: tuple[tuple[int, int], ...]
    co2_g: float
    energy_kwh: float
    cores: int = 0
    """Cores held while it runs; 0 (unknown) holds the whole server when the placement is fixed."""

    @property
    def start_ms(self) -> int:
        return self.pieces[0][0]

    @property
    def end_ms(self) -> int:
        return self.pieces[-1][1]


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why a task sits where it does, against running it now on the first server that fits."""

    run_now_server_id: str | None
    run_now_start_ms: int | None
    run_now_co2_g: float | None
    """None when no server could run it now (then there is no saving to state)."""
    reason: str
    """One line for a person, e.g. 'grid-mix in us-west, 143 g/kWh; waits for midday solar in us-west: 143
    g/kWh from 20:30 vs 188 starting now'."""

    def saving_g(self, planned_co2_g: float) -> float | None:
        return None if self.run_now_co2_g is None else self.run_now_co2_g - planned_co2_g


@dataclass(frozen=True, slots=True)
class Expected:
    """Cores that tasks not yet submitted are expected to hold over [start_ms, end_ms): a
    forecast, from the tasks of the last days (see `Horizon.price_g`)."""

    start_ms: int
    end_ms: int
    cores: float


@dataclass(frozen=True, slots=True)
class Problem:
    """One planning round: the tasks to place, the servers, what is already fixed, the grid."""

    tasks: Sequence[TaskSpec]
    servers: Sequence[ServerSpec]
    start_ms: int
    """Start of the first slot (now, rounded down to the slot)."""
    now_ms: int
    slot_s: int = DEFAULT_SLOT_S
    horizon_s: int = DEFAULT_HORIZON_S
    fixed: Sequence[Placement] = ()
    """Placements that hold their cores and are not re-planned (started non-interruptible tasks)."""
    expected: Sequence[Expected] = ()
    """Demand expected from tasks not yet submitted; the plan leaves them the clean cores they
    will need (none: every task is priced at its grams alone)."""


@dataclass(slots=True)
class Plan:
    """The outcome of a round: a placement and an explanation per placed task, a reason per
    task that cannot be placed (naming the binding constraint)."""

    made_at_ms: int
    solver: str
    slot_s: int
    start_ms: int
    horizon_end_ms: int
    placements: dict[str, Placement] = field(default_factory=dict)
    explanations: dict[str, Explanation] = field(default_factory=dict)
    unschedulable: dict[str, str] = field(default_factory=dict)
    waiting: dict[str, str] = field(default_factory=dict)
    """Tasks whose run cannot end within the horizon but whose deadline lies past it: not
    placed yet, and not unschedulable either (a round after the horizon reaches them plans them)."""
    solve_s: float = 0.0
    optimal: bool = False
    """True when the exact solver proved this plan optimal (within its gap tolerance)."""

    @property
    def total_co2_g(self) -> float:
        return sum(p.co2_g for p in self.placements.values())

    def run_now_co2_g(self) -> float:
        return sum(e.run_now_co2_g or 0.0 for e in self.explanations.values())

    def by_server(self) -> Mapping[str, list[Placement]]:
        out: dict[str, list[Placement]] = {}
        for placement in self.placements.values():
            out.setdefault(placement.server_id, []).append(placement)
        for placements in out.values():
            placements.sort(key=lambda p: p.start_ms)
        return out
