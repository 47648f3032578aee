"""The planning horizon as slots, and what each server's electricity costs in each slot.

Everything the solvers compare is read from here, so that every solver, the baselines and the
explanations price a slot the same way: the intensity at the slot's start, times the server's
PUE, times the watts one core adds (the linear utilisation model).
"""

from __future__ import annotations

import numpy as np

from backend.allocation.intensity import CarbonIntensity
from backend.allocation.model import Problem, ServerSpec

MS_PER_KWH_AT_1W = 3_600_000_000.0
"""Milliseconds at one watt that make one kWh."""


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
        # grams one core's share emits over one whole slot: what the solvers add up
        self.core_slot_g = (per_core_kw * pue)[:, None] * (self.slot_s / 3600.0) * self.g_per_kwh
        self.prefix_g = np.zeros((len(self.servers), n + 1))
        np.cumsum(self.core_slot_g, axis=1, out=self.prefix_g[:, 1:])
        # minima of core_slot_g over runs of 2**k slots: any window's cleanest slot in O(1)
        self._run_min = [self.core_slot_g]
        while 2 ** len(self._run_min) <= n:
            last, half = self._run_min[-1], 2 ** (len(self._run_min) - 1)
            self._run_min.append(np.minimum(last[:, :-half], last[:, half:]))

    def cleanest_g(self, rows: np.ndarray, lo: int, hi: int) -> np.ndarray:
        """Per row, the least grams one core emits over one slot of [lo, hi) (hi > lo)."""
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
