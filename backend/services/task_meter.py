"""Measuring the CO2 of each task that ended, from the time-series store (scheduler role).

The process holding the scheduler lease looks every `every_s` for done or failed tasks not
measured yet that ended at least `settle_s` ago (so their last readings are stored), measures
them (`measured_co2.measure`) and writes `measured_co2_g` with a compare-and-set, announcing
`measured` on the plan channel. A task whose server sent no readings is tried again until
`give_up_s` after its end, then marked measured without a figure. Each look reads only the
tasks written lately (LOOK_BACK_MS; CATCH_UP_MS on the first look, after downtime).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import replace

from backend.ports import Broker, NotFound, Registry, TaskRecord, TimeSeriesStore, Unavailable
from backend.services.grid_traces import load_intensity
from backend.services.measured_co2 import PowerSample, measure
from backend.services.plan_round import server_spec
from backend.services.tasks import task_json
from backend.services.timestamps import now_ms
from backend.services.wire import PLAN_CHANNEL

log = logging.getLogger(__name__)

MAX_POINTS = 5000
LOOK_BACK_MS = 3 * 3_600_000
"""Each look reads the tasks that ended and were written in the last `give_up_s` plus this
(a task is given up `give_up_s` after its end), within the scheduler's ARCHIVE_AFTER_MS."""
CATCH_UP_MS = 8 * 86_400_000
"""The first look after the meter starts goes this far back, for the tasks that ended while
no meter ran."""


class TaskMeter:
    """The measuring loop; runs only while `holds_lease()` says this process leads."""

    def __init__(
        self,
        registry: Registry,
        timeseries: TimeSeriesStore,
        broker: Broker | None,
        holds_lease: Callable[[], bool],
        every_s: float = 5.0,
        settle_s: float = 5.0,
        give_up_s: float = 3600.0,
    ) -> None:
        self.registry = registry
        self.timeseries = timeseries
        self.broker = broker
        self.holds_lease = holds_lease
        self.every_s = every_s
        self.settle_s = settle_s
        self.give_up_s = give_up_s
        self._task: asyncio.Task[None] | None = None
        self._looked = False

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="task meter")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.every_s)
            if not self.holds_lease():
                continue
            try:
                await self.measure_pending()
            except Unavailable as exc:
                log.warning("task measurement skipped: %s", exc)
            except Exception:  # noqa: BLE001 - a bad task must not stop the meter
                log.exception("task measurement failed; trying again")

    async def measure_pending(self) -> list[TaskRecord]:
        """Measure every task that ended and settled; returns the records written."""
        now = now_ms()
        back = int(self.give_up_s * 1000) + LOOK_BACK_MS if self._looked else CATCH_UP_MS
        ended = await self.registry.list_tasks(states=["done", "failed"], updated_since_ms=now - back)
        self._looked = True
        pending = [
            t
            for t in ended
            if t.measured_at_ms is None
            and t.finished_at_ms is not None
            and t.finished_at_ms + self.settle_s * 1000 <= now
        ]
        if not pending:
            return []
        # The tasks that shared a server with them: running, or written (a run ended) since the
        # first of their runs began.
        since = min([r[0] for t in pending for r in t.runs] + [now])
        newest: dict[str, TaskRecord] = {}
        for t in await self.registry.list_tasks(states=["running"]) + await self.registry.list_tasks(
            states=["done", "failed", "cancelled"], updated_since_ms=since
        ):  # a run that ended between the two reads is in both
            if t.id not in newest or t.version > newest[t.id].version:
                newest[t.id] = t
        tasks = list(newest.values())
        intensity = await load_intensity(self.registry)
        written = []
        for task in pending:
            record = await self._measured(task, tasks, intensity, now)
            if record is not None and await self.registry.update_task(record, task.version):
                written.append(record)
                await self._announce(record)
        return written

    async def _measured(self, task: TaskRecord, tasks: list[TaskRecord], intensity, now: int) -> TaskRecord | None:
        runs = [r for r in task.runs if r[1] > r[0]]
        result = None
        if runs and task.server_id is not None:
            try:
                server = server_spec(await self.registry.get_server(task.server_id))
            except NotFound:
                server = None
            if server is not None:
                start, end = runs[0][0], runs[-1][1]
                points = max(1, min(MAX_POINTS, -(-(end - start) // 1000)))
                series = await self.timeseries.history(task.server_id, "power", start, end, points)
                width = series.resolution_s * 1000
                samples = [PowerSample(p[0], p[0] + width, p[2]) for p in series.points]
                others = [
                    (t.cores, t.runs + ([[t.run_since_ms, now]] if t.run_since_ms is not None else []))
                    for t in tasks
                    if t.server_id == task.server_id and t.id != task.id
                ]
                result = measure(task.cores, runs, others, samples, server, intensity)
        if result is None and (task.finished_at_ms or 0) + self.give_up_s * 1000 > now:
            return None  # readings may still arrive
        return replace(
            task,
            measured_at_ms=now,
            version=task.version + 1,
            updated_at_ms=now,
            measured_co2_g=None if result is None else round(result.co2_g, 6),
            measured_energy_kwh=None if result is None else round(result.energy_kwh, 9),
        )

    async def _announce(self, task: TaskRecord) -> None:
        if self.broker is None:
            return
        body = json.dumps({"event": "measured", "task": task_json(task)}, separators=(",", ":"))
        try:
            await self.broker.publish_event(PLAN_CHANNEL, body.encode())
        except Unavailable as exc:
            log.warning("measurement of %s not broadcast: %s", task.id, exc)
