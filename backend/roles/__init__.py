"""The five roles of a backend process. Each module says which adapters it needs (`NEEDS`) and
wires its services into the process (`start`), seen as a `context.RoleContext` whose adapters
are started.

- ingest: POST /api/v1/readings -> broker (confirmed)
- packager: broker work queues -> time-series store, then live events
- history: history and raw readings routes
- api: auth, servers, tasks and the plan, the websocket (live readings, registry changes,
  plan changes, chat)
- scheduler: plans tasks onto servers and time windows (one process at a time, by a lease)
"""

from __future__ import annotations

from types import ModuleType

from backend.roles import api, history, ingest, packager, scheduler

ROLES: dict[str, ModuleType] = {
    "ingest": ingest,
    "packager": packager,
    "history": history,
    "api": api,
    "scheduler": scheduler,
}
