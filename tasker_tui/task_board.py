"""What the TUI knows about tasks and the plan right now, fed by HTTP loads and `plan` frames.

Like `FleetState` it does no I/O and knows no Textual: the live link writes task JSON from the
websocket here (parsed once, into `tasker.models`), screens read it on their refresh tick and
redraw only when `version` moved.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from tasker.models import ModelError, PlanTimeline, Savings, Task

ON_SERVERS = frozenset({"planned", "running"})
FINISHED = frozenset({"done", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """Tasks on one server: running now, and planned to run there."""

    running: int = 0
    planned: int = 0


class TaskBoard:
    """Tasks the user may see, the plan timeline and the savings, as last heard."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.plan: PlanTimeline | None = None
        self.savings: Savings | None = None
        self.loaded = False
        # Bumped on every change, so screens skip redraws when nothing moved.
        self.version = 0
        # Task JSON from frames that did not parse (kept to say so, never drawn as data).
        self.refused = 0

    def set_tasks(self, tasks: Iterable[Task]) -> None:
        """Replace the list with a fresh `GET /api/v1/tasks` answer."""
        self.tasks = {task.id: task for task in tasks}
        self.loaded = True
        self.version += 1

    def upsert(self, task: Task) -> None:
        """A task as just stored (our own submit or cancel, or a frame); an older version loses."""
        known = self.tasks.get(task.id)
        if known is not None and known.version > task.version:
            return
        self.tasks[task.id] = task
        self.version += 1

    def forget_finished(self, before_ms: int) -> None:
        """Drop the finished tasks last written before `before_ms` (the TUI lists the recent ones)."""
        old = [t.id for t in self.tasks.values() if t.state in FINISHED and (t.updated_at_ms or 0) < before_ms]
        for task_id in old:
            del self.tasks[task_id]
        if old:
            self.version += 1

    def set_plan(self, plan: PlanTimeline) -> None:
        self.plan = plan
        self.version += 1

    def set_savings(self, savings: Savings) -> None:
        self.savings = savings
        self.version += 1

    def apply_frame(self, frame: Mapping[str, Any]) -> bool:
        """Apply a websocket `plan` frame; True when it carried something (the plan and the
        savings are then worth reading again)."""
        raw_tasks = list(frame.get("tasks") or []) if isinstance(frame.get("tasks"), list) else []
        if isinstance(frame.get("task"), Mapping):
            raw_tasks.append(frame["task"])
        changed = False
        for raw in raw_tasks:
            try:
                self.upsert(Task.from_json(raw, "frame.task"))
                changed = True
            except ModelError:
                self.refused += 1
        return changed or bool(frame.get("event"))

    def loads(self) -> dict[str, ServerLoad]:
        """Running and planned task counts per server id."""
        running: dict[str, int] = {}
        planned: dict[str, int] = {}
        for task in self.tasks.values():
            if task.plan is None or task.state not in ON_SERVERS:
                continue
            bucket = running if task.state == "running" else planned
            bucket[task.plan.server_id] = bucket.get(task.plan.server_id, 0) + 1
        return {sid: ServerLoad(running.get(sid, 0), planned.get(sid, 0)) for sid in {*running, *planned}}
