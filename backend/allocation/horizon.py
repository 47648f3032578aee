"""The planning horizon as slots, and what each server's electricity costs in each slot.

Everything the solvers compare is read from here, so that every solver, the baselines and the
explanations price a slot the same way: the intensity at the slot's start, times the server's
PUE, times the watts one core adds (the linear utilisation model).

The solvers compare prices (`price_g`), the accounting counts grams (`core_slot_g`). They are
the same unless the problem expects tasks not yet submitted (`Problem.expected`): then a core
in a slot where those tasks will need clean cores costs more than its grams, so that a task
with other choices leaves it to them (see `HOLD_SHARE`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from backend.allocation.intensity import CarbonIntensity
from backend.allocation.model import Expected, Problem, ServerSpec

MS_PER_KWH_AT_1W = 3_600_000_000.0
"""Milliseconds at one watt that make one kWh."""
HOLD_SHARE = 0.5
"""Share of a clean core's advantage over the marginal core of a slot that it costs on top of
its grams when tasks are expected to need it (see `Horizon.price_g`). In the benchmark's online
day (seed 1), with the day's own tasks without slack as a perfect forecast of those alone, 0.5
and 0.9 gave the same saving (29.6%); at 1 a clean core would cost as much as the marginal one,
and equal prices would leave the choice among them to the tie-break."""


class Horizon:
    """Slots of one planning round and, per server and slot, g/kWh and grams per core-slot.

    Rows follow `problem.servers` (their order is the first-fit order); columns are slots.
    """

    def __init__(self, problem: Problem, intensity: CarbonIntensity) -> None:
        self.start_ms = problem.start_ms
        self.now_ms = problem.now_ms
        self.slot_s = problem.slot_s
        self.slot_ms = problem.slot_s * 1000
        self.n_slots = problem.horizon_s // problem.slot_s
        self.end_ms = self.start_ms + self.n_slots * self.slot_ms
        self.servers: list[ServerSpec] = list(problem.servers)
        self.index = {server.id: i for i, server in enumerate(self.servers)}
        self.source = intensity
        n = self.n_slots
        self.g_per_kwh = (
            np.vstack([intensity.series(s, self.start_ms, self.slot_s, n) for s in self.servers])
            if self.servers
            else np.zeros((0, n))
        )
        self.cores = np.array([s.cores for s in self.servers], dtype=np.int64)
        per_core_kw = np.array([s.task_watts(1) / 1000.0 for s in self.servers])
        pue = np.array([s.pue for s in self.servers])
        # grams one core's share emits over one whole slot: what the accounting adds up
        self.core_slot_g = (per_core_kw * pue)[:, None] * (self.slot_s / 3600.0) * self.g_per_kwh
        self.prefix_g = np.zeros((len(self.servers), n + 1))
        np.cumsum(self.core_slot_g, axis=1, out=self.prefix_g[:, 1:])
        self.expected_cores = _per_slot(problem.expected, self.start_ms, self.slot_ms, n)
        self.price_g = self.core_slot_g
        """What the solvers pay for one core over one slot: its grams, plus a share of what it
        saves over the marginal core when tasks are expected to need the cleanest cores of the
        slot. The marginal core is the one that would serve the expected tasks one core more,
        once they took the slot's cores cleanest first (the dual price of a core, were they a
        flow)."""
        self.price_prefix = self.prefix_g
        if self.expected_cores.any() and self.servers:
            marginal = _marginal_g(self.core_slot_g, self.cores, self.expected_cores)
            self.price_g = self.core_slot_g + HOLD_SHARE * np.maximum(0.0, marginal[None, :] - self.core_slot_g)
            self.price_prefix = np.zeros_like(self.prefix_g)
            np.cumsum(self.price_g, axis=1, out=self.price_prefix[:, 1:])
        # minima of price_g over runs of 2**k slots: any window's cheapest slot in O(1)
        self._run_min = [self.price_g]
        while 2 ** len(self._run_min) <= n:
            last, half = self._run_min[-1], 2 ** (len(self._run_min) - 1)
            self._run_min.append(np.minimum(last[:, :-half], last[:, half:]))

    @property
    def holds(self) -> bool:
        """Whether some cores cost more than their grams (tasks are expected)."""
        return self.price_g is not self.core_slot_g

    def cheapest_price(self, rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Per row, the least one core costs over one slot of [lo, hi) (hi > lo)."""
        k = (hi - lo).bit_length() - 1
        level = self._run_min[k]
        return np.minimum(level[rows, lo], level[rows, hi - 2**k])

    def slot_start_ms(self, k: int) -> int:
        """Start of slot `k` (may lie outside the horizon)."""
        return self.start_ms + k * self.slot_ms

    def slot_of(self, ts_ms: int) -> int:
        """The slot holding `ts_ms` (negative before the horizon, >= n_slots after it)."""
        return (ts_ms - self.start_ms) // self.slot_ms

    def intensity(self, row: int, k: int) -> float:
        """g/kWh of server `row` in slot `k`, asking the port directly outside the horizon."""
        if 0 <= k < self.n_slots:
            return float(self.g_per_kwh[row, k])
        return self.source.at(self.servers[row], self.slot_start_ms(k))


def _per_slot(expected: Sequence[Expected], start_ms: int, slot_ms: int, n: int) -> np.ndarray:
    """Expected cores per slot: each forecast counts in every slot it overlaps (negative ones
    take off what the forecast counted; a slot never expects less than none)."""
    change = np.zeros(n + 1)
    for e in expected:
        first = max(0, (e.start_ms - start_ms) // slot_ms)
        end = min(n, -(-(e.end_ms - start_ms) // slot_ms))
        if first < end:
            change[first] += e.cores
            change[end] -= e.cores
    # rounded: a sum that should be a server's cores must not fall a hair short of them, which
    # would make that server's own core the marginal one (`_marginal_g`)
    return np.maximum(np.round(np.cumsum(change[:n]), 6), 0.0)


def _marginal_g(core_slot_g: np.ndarray, cores: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Per slot, the grams per core of the server that would serve one core more once the
    `wanted` cores took the slot's cores cleanest first (the dirtiest server, if they need all
    the fleet has): what a core taken from them costs them. 0 where none are wanted."""
    order = np.argsort(core_slot_g, axis=0, kind="stable")
    reach = np.cumsum(cores[order], axis=0)  # cores of the cleanest 1, 2, ... servers, per slot
    slots = np.arange(core_slot_g.shape[1])
    depth = np.minimum((reach <= wanted[None, :]).sum(axis=0), len(cores) - 1)
    return np.where(wanted > 0, core_slot_g[order[depth, slots], slots], 0.0)
