"""The host sensor: this machine's measured power (RAPL), posted for one registered server.

Power is always sent. CO2 is sent too when the server's spec (PUE, carbon intensity) could be
read from the registry, computed exactly as for emulated servers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

from sensors.model import ServerSpec
from sensors.progress import run_reporting
from sensors.rapl import PowerSample, RaplMeter
from sensors.sender import Item, ReadingSender, sensor_backoff
from tasker.backoff import RetryBackoff
from tasker.client import ApiError, BackendUnavailable, NotFoundError
from tasker.models import Server

log = logging.getLogger("tasker.sensors")


class UnknownServer(Exception):
    """The server given is not registered; the message says what to do."""

    user_facing = True  # shown to the user as one line by the CLI

    @classmethod
    def of(cls, ref: str) -> UnknownServer:
        return cls(
            f"no server {ref!r} is registered: add this machine with `tasker servers add`, then pass its id or name"
        )


class HostSensor:
    """Samples the meter every `interval_s` and hands readings to the sender."""

    def __init__(
        self,
        meter: RaplMeter,
        sender: ReadingSender,
        server_id: str,
        *,
        spec: ServerSpec | None = None,
        interval_s: float = 1.0,
        clock=time.time,
    ):
        if not (interval_s > 0 and math.isfinite(interval_s)):
            raise ValueError("the interval must be a positive number of seconds")
        self.meter = meter
        self.sender = sender
        self.server_id = server_id
        self.spec = spec
        self.interval_s = interval_s
        self.last: PowerSample | None = None
        self._clock = clock

    def readings(self, sample: PowerSample, ts_ms: int) -> list[Item]:
        """The readings for one sample: power, and CO2 when the server's spec is known."""
        items: list[Item] = [(self.server_id, "power", ts_ms, round(sample.watts, 3))]
        if self.spec is not None:
            items.append((self.server_id, "co2", ts_ms, round(self.spec.co2_for(sample.watts, ts_ms), 4)))
        return items

    def progress_line(self) -> str:
        power = f"{self.last.watts:.1f} W" if self.last else "measuring"
        co2 = "" if self.spec else " (power only)"
        return f"{self.server_id}: {power}{co2}  {self.sender.stats.line()}"

    async def load_spec(self, fetch: Callable[[], Awaitable[Server]], backoff: RetryBackoff | None = None) -> None:
        """Read the server's spec (for CO2), retrying while the backend is away.

        An unknown server is fatal (every reading would be refused); a spec the credentials may
        not read leaves the sensor sending power only.
        """
        backoff = backoff or sensor_backoff(1.0, 30.0)
        while True:
            try:
                self.spec = ServerSpec.of(await fetch())
                return
            except NotFoundError:
                raise UnknownServer.of(self.server_id) from None
            except BackendUnavailable:
                await asyncio.sleep(backoff.failed())
            except ApiError as exc:
                log.warning("sending power only: cannot read the spec of %s (%s)", self.server_id, exc.message)
                return

    async def _samples(self) -> None:
        # sysfs reads are quick but are still file I/O: keep them off the event loop.
        await asyncio.to_thread(self.meter.sample)
        while True:
            await asyncio.sleep(self.interval_s - (self._clock() % self.interval_s))
            sample = await asyncio.to_thread(self.meter.sample)
            if sample is None:
                continue
            self.last = sample
            self.sender.submit(self.readings(sample, int(self._clock() * 1000)))

    async def run(
        self, *, progress_every_s: float | None = 1.0, fetch_spec: Callable[[], Awaitable[Server]] | None = None
    ) -> None:
        """Measure and send until cancelled; RaplUnavailable if the counters become unreadable.

        `fetch_spec` (e.g. the client's read_server) supplies the spec for CO2, read in the background.
        """
        work = [self.sender.run(), self._samples()]
        if fetch_spec is not None and self.spec is None:
            work.append(self.load_spec(fetch_spec))
        await run_reporting(work, self.progress_line, progress_every_s)
