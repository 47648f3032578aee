"""Energy and CO2 of a placement: the one accounting every solver and explanation uses.

A task of `cores` on server s adds `s.task_watts(cores)` watts while it runs; each piece is cut
at slot boundaries and each part is priced at its slot's intensity:
    grams = sum over parts of  watts x hours / 1000 x PUE x g/kWh(slot).
Only the time really run counts (a last piece ending mid-slot pays for part of the slot).
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.allocation.horizon import MS_PER_KWH_AT_1W, Horizon


def footprint(horizon: Horizon, row: int, cores: int, pieces: Sequence[tuple[int, int]]) -> tuple[float, float]:
    """(kWh, grams CO2e) of running `cores` on server `row` of the horizon over `pieces`."""
    server = horizon.servers[row]
    watts = server.task_watts(cores)
    slot_ms, n = horizon.slot_ms, horizon.n_slots
    kwh = grams = 0.0
    for start, end in pieces:
        kwh += watts * (end - start) / MS_PER_KWH_AT_1W
        first, last = horizon.slot_of(start), horizon.slot_of(end - 1)
        if 0 <= first and last < n:
            # Inside the horizon: whole slots from the prefix sums, the two ends by their share.
            per_core = horizon.core_slot_g[row]
            head = (horizon.slot_start_ms(first + 1) - start) / slot_ms
            tail = (end - horizon.slot_start_ms(last)) / slot_ms
            if first == last:
                share = (end - start) / slot_ms * per_core[first]
            else:
                share = (
                    head * per_core[first]
                    + tail * per_core[last]
                    + horizon.prefix_g[row, last]
                    - horizon.prefix_g[row, first + 1]
                )
            grams += float(share) * cores
            continue
        t = start
        while t < end:
            k = horizon.slot_of(t)
            part_end = min(end, horizon.slot_start_ms(k + 1))
            grams += watts * (part_end - t) / MS_PER_KWH_AT_1W * server.pue * horizon.intensity(row, k)
            t = part_end
    return kwh, grams
