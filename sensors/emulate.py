"""The fleet emulator: every registered server gets power and CO2 readings at each interval,
and (with `agents`) the tasks planned on it load it as they would a real host.

Ticks are aligned to multiples of the interval (ts = k * interval), so readings of all servers
share timestamps and a restarted emulator continues the same grid. When the process falls
behind (a stalled event loop) it skips the missed ticks rather than bursting to catch up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sensors.emulated_agents import EmulatedAgents
from sensors.model import FleetModel
from sensors.progress import run_reporting
from sensors.registry import RegistryFollower
from sensors.sender import Item, ReadingSender


@dataclass(slots=True)
class EmulatorState:
    """How far the emulator got, for the progress line and for tests."""

    ticks: int = 0
    skipped_ticks: int = 0
    servers: int = 0


class FleetEmulator:
    """Composes the registry follower, the model and the sender; `run()` until cancelled."""

    def __init__(
        self,
        follower: RegistryFollower,
        sender: ReadingSender,
        *,
        interval_s: float = 1.0,
        seed: int | str = 0,
        clock=time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        agents: EmulatedAgents | None = None,
    ):
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError("the interval must be a positive number of seconds")
        self.follower = follower
        self.sender = sender
        self.interval_s = interval_s
        self.model = FleetModel(seed)
        self.state = EmulatorState()
        self._clock = clock
        self._sleep = sleep  # with `clock`, lets a test run the ticks on a fake clock
        self._synced_version = -1
        self.agents = agents
        """Plays the agent of every emulated server: planned tasks load their servers."""

    def progress_line(self) -> str:
        mode = self.follower.mode
        line = f"servers {self.state.servers} ({mode})  {self.sender.stats.line()}"
        if self.agents is not None:
            line += f"  {self.agents.stats.line()}"
        if self.follower.mode in ("retrying", "refused") and self.follower.last_error:
            line += f"  registry: {self.follower.last_error}"
        return line

    def tick(self, ts_ms: int) -> list[Item]:
        """One round of readings for every known server at `ts_ms`."""
        if self.follower.version != self._synced_version:
            self.model.sync(self.follower.specs)
            self._synced_version = self.follower.version
            self.state.servers = len(self.model.models)
        items: list[Item] = []
        append = items.append
        task_cores = None if self.agents is None else self.agents.cores_at
        for sid, power, co2 in self.model.tick(ts_ms, self.interval_s, task_cores):
            append((sid, "power", ts_ms, round(power, 3)))
            append((sid, "co2", ts_ms, round(co2, 4)))
        self.state.ticks += 1
        return items

    async def _ticks(self) -> None:
        await self.follower.loaded.wait()
        step = self.interval_s
        due = math.floor(self._clock() / step) * step + step
        while True:
            delay = due - self._clock()
            if delay > 0:
                await self._sleep(delay)
            self.sender.submit(self.tick(int(round(due * 1000))))
            due += step
            behind = self._clock() - due
            if behind > step:
                missed = math.floor(behind / step)
                self.state.skipped_ticks += missed
                due += missed * step

    async def run(self, *, progress_every_s: float | None = 1.0) -> None:
        """Emulate until cancelled (or until the sender or follower hit a fatal error)."""
        work = [self.follower.run(), self.sender.run(), self._ticks()]
        if self.agents is not None:
            work.append(self.agents.run(lambda: self.follower.specs))
        await run_reporting(work, self.progress_line, progress_every_s)
