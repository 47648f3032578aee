"""Plan frames narrowed to one server, for the websocket of that server's agent.

An agent needs to hear only that something about its server changed (a task planned there,
moved, cancelled), to heartbeat at once instead of at its next poll. A connection that sent
`agent.subscribe` gets the plan frames that concern its server: the tasks placed there, and
a stub `{"id", "state", "elsewhere": true}` for a task it was told of that has left (moved to
another server or queued again), so it learns that without learning where the task went.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backend.ports import FINISHED_TASK_STATES
from backend.services.auth import INGEST_ROLE, Principal

PLAN_FEED = "plan_feed"
"""Key of a connection's `PlanFeed` in `WsConnection.extensions`."""
MAX_KNOWN = 4096


def is_agent(principal: Principal | None) -> bool:
    """Whether a websocket is a server's agent (a scoped ingest key), not a user's session."""
    return principal is not None and principal.role == INGEST_ROLE


@dataclass(slots=True)
class PlanFeed:
    """One agent connection's server, and the tasks it was told are placed there."""

    server_id: str
    known: dict[str, None] = field(default_factory=dict)

    def pick(self, tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The tasks (task JSON) of a plan event this server's agent should hear of."""
        picked = []
        for task in tasks:
            task_id = task.get("id")
            if (task.get("plan") or {}).get("server_id") == self.server_id:
                picked.append(task)
                self._remember(task_id, task.get("state"))
            elif task_id in self.known:
                del self.known[task_id]
                picked.append({"id": task_id, "state": task.get("state"), "elsewhere": True})
        return picked

    def _remember(self, task_id: Any, state: Any) -> None:
        self.known.pop(task_id, None)
        if state in FINISHED_TASK_STATES:
            return  # nothing moves a finished task any more
        self.known[task_id] = None
        if len(self.known) > MAX_KNOWN:
            del self.known[next(iter(self.known))]


def plan_frame(event: dict[str, Any], tasks: list[dict[str, Any]], feed: PlanFeed) -> dict[str, Any] | None:
    """The `plan` frame of `event` for `feed`'s connection, or None when none concerns it."""
    picked = feed.pick(tasks)
    if not picked:
        return None
    body = {**event, **({"tasks": picked} if "tasks" in event else {"task": picked[0]})}
    return {"type": "plan", **body, "server_id": feed.server_id}
