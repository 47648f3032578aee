"""Tasks, the plan and the savings for the fake client: JSON in the API's shapes, a toy scheduler.

`FakeTasks` is mixed into `FakeClient`; `schedule()` places every queued task on the cleanest
hour of a fitting server (a stand-in for the allocator) and pushes the `plan` frame a real
backend would send.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

from tasker.client import Conflict, NotFoundError, ValidationFailed
from tasker.models import PlanTimeline, Savings, Task
from tasker.when import parse_duration

SLOT_S = 1800
HORIZON_S = 48 * 3600


def rfc3339(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def curve(region: str, slots: int, start_ms: int) -> list[float]:
    """A region's g/kWh per slot: a daily wave, cleanest in the afternoon (deterministic)."""
    base = 80 + (sum(map(ord, region)) % 7) * 60
    out = []
    for i in range(slots):
        hour = ((start_ms // 1000 + i * SLOT_S) % 86400) / 3600
        out.append(round(base + 0.6 * base * math.cos((hour - 3) / 24 * 2 * math.pi), 1))
    return out


def task_json(
    task_id: str,
    name: str,
    *,
    state: str = "queued",
    owner: str = "alice",
    cores: int = 4,
    duration_s: int = 3600,
    created_ms: int = 0,
    plan: dict | None = None,
    **extra: Any,
) -> dict:
    """A task as `GET /api/v1/tasks/{id}` shows it."""
    body = {
        "id": task_id,
        "name": name,
        "owner": owner,
        "cores": cores,
        "duration_s": duration_s,
        "earliest_start": rfc3339(created_ms),
        "deadline": rfc3339(created_ms + 86_400_000),
        "interruptible": False,
        "regions": [],
        "tags": [],
        "command": None,
        "state": state,
        "reason": "waiting for the scheduler" if state == "queued" else "",
        "plan": plan,
        "created_at": rfc3339(created_ms),
        "updated_at": rfc3339(created_ms),
        "started_at": None,
        "finished_at": None,
        "version": 1,
        "cwd": None,
        "env": {},
        "run": {
            "activity": None,
            "runs": [],
            "since": None,
            "exit_code": None,
            "output_tail": "",
            "agent_epoch": 0,
            "measured_at": None,
        },
    }
    body.update(extra)
    return body


class FakeTasks:
    """The task half of the fake client (needs `servers`, `_check`, `push`, `now_ms`)."""

    def init_tasks(self) -> None:
        self.tasks: dict[str, dict] = {}
        # what the TUI asked for as `finished_since`, each list and savings read
        self.finished_since_asked: list = []
        self.plan_override: Any = None  # a test may serve any JSON as the plan
        self.savings_today: dict | None = {
            "since": "2026-11-18T00:00:00Z",
            "done": 2,
            "measured": 2,
            "run_now_co2_g": 2100.0,
            "measured_co2_g": 850.0,
            "saved_g": 1250.0,
        }

    # --- the API ---

    async def list_tasks(self, states=(), finished_since=None) -> list[dict]:
        self._check()
        self.finished_since_asked.append(finished_since)
        return [dict(t) for t in self.tasks.values() if not states or t["state"] in states]

    async def get_task(self, task_id: str) -> dict:
        self._check()
        if task_id not in self.tasks:
            raise NotFoundError(404, f"no task with id {task_id!r}")
        return dict(self.tasks[task_id])

    async def submit_task(self, body) -> dict:
        self._check()
        self.calls.append("submit")
        details = []
        if body.get("cores", 0) > max(s["cores"] for s in self.servers.values()):
            details.append({"field": "cores", "reason": "no registered server has that many cores"})
        if str(body.get("name", "")).startswith("taken"):
            details.append({"field": "name", "reason": "the backend does not like this name"})
        if details:
            raise ValidationFailed(400, f"invalid task: {', '.join(d['field'] for d in details)}", details)
        task_id = f"tsk_{len(self.tasks) + 1:010d}"
        duration = body["duration"] if isinstance(body["duration"], int) else parse_duration(body["duration"])
        task = task_json(
            task_id,
            body["name"],
            cores=body["cores"],
            duration_s=duration,
            created_ms=self.now_ms,
            interruptible=body.get("interruptible", False),
            regions=list(body.get("regions", [])),
            tags=list(body.get("tags", [])),
            command=body.get("command"),
        )
        if body.get("earliest_start"):
            task["earliest_start"] = body["earliest_start"]
        if body.get("deadline"):
            task["deadline"] = body["deadline"]
        self.tasks[task_id] = task
        self.push({"type": "plan", "event": "submitted", "task": task})
        return dict(task)

    async def cancel_task(self, task_id: str) -> dict:
        self._check()
        task = self.tasks[task_id]
        if task["state"] in ("done", "failed", "cancelled"):
            raise Conflict(409, f"task {task_id} is already {task['state']}")
        task.update(
            state="cancelled",
            reason="cancelled by alice",
            version=task["version"] + 1,
            finished_at=rfc3339(self.now_ms),
        )
        self.push({"type": "plan", "event": "cancelled", "task": task})
        return dict(task)

    async def plan(self) -> Any:
        self._check()
        self.calls.append("plan")
        if self.plan_override is not None:
            return self.plan_override
        start = self.now_ms - self.now_ms % (SLOT_S * 1000)
        slots = HORIZON_S // SLOT_S
        curves, servers = {}, []
        for server in self.servers.values():
            region = server["location"]["region"]
            curves.setdefault(region, curve(region, slots, start))
            placements = [
                {
                    "task_id": t["id"],
                    "name": t["name"],
                    "owner": t["owner"],
                    "cores": t["cores"],
                    "state": t["state"],
                    "co2_g": t["plan"]["co2_g"],
                    "pieces": t["plan"]["pieces"],
                }
                for t in self.tasks.values()
                if t["plan"] and t["plan"]["server_id"] == server["id"] and t["state"] in ("planned", "running")
            ]
            servers.append(
                {
                    "id": server["id"],
                    "name": server["name"],
                    "region": region,
                    "energy_source": server["energy_source"],
                    "cores": server["cores"],
                    "pue": 1.5,
                    "curve": region,
                    "placements": placements,
                }
            )
        return {
            "start": rfc3339(start),
            "end": rfc3339(start + HORIZON_S * 1000),
            "slot_s": SLOT_S,
            "servers": servers,
            "curves": curves,
        }

    async def plan_savings(self, finished_since=None) -> dict:
        self._check()
        self.finished_since_asked.append(finished_since)
        compared = [
            t
            for t in self.tasks.values()
            if t["plan"] and t["plan"]["co2_g"] is not None and t["plan"]["run_now_co2_g"] is not None
        ]
        planned = sum(t["plan"]["co2_g"] for t in compared)
        run_now = sum(t["plan"]["run_now_co2_g"] for t in compared)
        body: dict[str, Any] = {
            "totals": {
                "tasks": len(self.tasks),
                "compared": len(compared),
                "planned_co2_g": planned,
                "run_now_co2_g": run_now,
                "saving_g": run_now - planned,
                "saving_pct": 100 * (run_now - planned) / run_now if run_now else None,
            },
            "by_state": {},
        }
        if self.savings_today is not None:
            body["today"] = self.savings_today
        return body

    async def read_tasks(self, states=(), finished_since=None) -> list[Task]:
        return [Task.from_json(t) for t in await self.list_tasks(states, finished_since)]

    async def read_task(self, task_id: str) -> Task:
        return Task.from_json(await self.get_task(task_id))

    async def read_plan(self) -> PlanTimeline:
        return PlanTimeline.from_json(await self.plan())

    async def read_savings(self, finished_since=None) -> Savings:
        return Savings.from_json(await self.plan_savings(finished_since))

    # --- test controls ---

    def add_task(self, name: str, **kwargs: Any) -> dict:
        task_id = f"tsk_{len(self.tasks) + 1:010d}"
        self.tasks[task_id] = task_json(task_id, name, created_ms=self.now_ms, **kwargs)
        return self.tasks[task_id]

    def schedule(self) -> list[dict]:
        """Place each queued task on the first server with the cores, in the cleanest window of
        its region over the next day, and push the `replanned` frame."""
        start = self.now_ms - self.now_ms % (SLOT_S * 1000)
        changed = []
        for task in self.tasks.values():
            if task["state"] != "queued":
                continue
            server = next(
                (
                    s
                    for s in self.servers.values()
                    if s["cores"] >= task["cores"]
                    and (not task["regions"] or s["location"]["region"] in task["regions"])
                ),
                None,
            )
            if server is None:
                task.update(state="unschedulable", reason="no server meets the constraints")
                changed.append(task)
                continue
            values = curve(server["location"]["region"], 48, start)
            need = max(1, math.ceil(task["duration_s"] / SLOT_S))
            best = min(range(1, 48 - need), key=lambda i: sum(values[i : i + need]))
            begin = start + best * SLOT_S * 1000
            kwh = (
                task["cores"]
                / server["cores"]
                * (server["max_watts"] - server["idle_watts"])
                / 1000
                * task["duration_s"]
                / 3600
            )
            planned = round(kwh * 1.5 * sum(values[best : best + need]) / need, 1)
            run_now = round(kwh * 1.5 * values[0] * 1.4, 1)
            task.update(
                state="planned",
                reason="",
                version=task["version"] + 1,
                plan={
                    "server_id": server["id"],
                    "pieces": [[rfc3339(begin), rfc3339(begin + task["duration_s"] * 1000)]],
                    "start": rfc3339(begin),
                    "end": rfc3339(begin + task["duration_s"] * 1000),
                    "co2_g": planned,
                    "energy_kwh": round(kwh, 3),
                    "run_now_co2_g": run_now,
                    "run_now_server_id": server["id"],
                    "saving_g": round(run_now - planned, 1),
                    "explanation": f"{server['name']} in {server['location']['region']}: the grid is cleanest then.",
                    "epoch": 1,
                    "measured_co2_g": None,
                    "measured_energy_kwh": None,
                    "measured_saving_g": None,
                },
            )
            changed.append(task)
        if changed:
            self.push({"type": "plan", "event": "replanned", "epoch": 1, "tasks": changed})
        return changed
