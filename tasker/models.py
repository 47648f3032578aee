"""What the API returns as typed objects, parsed once where JSON comes off the wire: tasks, the plan
and the savings; servers and the server list; the session's user, sessions and accounts; chat
messages.

The client hands these to its callers (shell, TUI, sensors) so nothing past the boundary reads a
`dict[str, Any]`. Parsing is tolerant of optional fields an older or newer backend leaves out
(they read as None, empty or a default) and refuses garbage with a `ModelError` naming the
field, e.g. `task.plan.co2_g: expected a number or null, got 'lots'`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

Interval = tuple[int, int]
"""[start, end) in epoch milliseconds."""


class ModelError(ValueError):
    """JSON from the backend does not have the shape of the object it should be."""


class _Reader:
    """Typed reads of one JSON object, each error naming the field by its path."""

    def __init__(self, raw: Any, path: str) -> None:
        if not isinstance(raw, Mapping):
            raise ModelError(f"{path}: expected an object, got {_show(raw)}")
        self.raw = raw
        self.path = path

    def _bad(self, key: str, wanted: str) -> ModelError:
        return ModelError(f"{self.path}.{key}: expected {wanted}, got {_show(self.raw.get(key))}")

    def text(self, key: str, default: str | None = None) -> str:
        value = self.raw.get(key, default)
        if value is None and default is not None:
            return default
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self.raw.get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "a string or null")
        return value

    def integer(self, key: str, default: int | None = None) -> int:
        value = self.raw.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "a whole number")
        return value

    def opt_integer(self, key: str) -> int | None:
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "a whole number or null")
        return value

    def figure(self, key: str) -> float | None:
        """A number that may be null (NaN/inf are sent as null); huge integers become inf."""
        value = self.raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self._bad(key, "a number or null")
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw.get(key, default)
        if not isinstance(value, bool):
            raise self._bad(key, "true or false")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw.get(key) or []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return tuple(value)

    def instant(self, key: str) -> int:
        value = self.raw.get(key)
        try:
            return parse_instant(value)
        except ValueError:
            raise self._bad(key, "an RFC 3339 time") from None

    def opt_instant(self, key: str) -> int | None:
        return None if self.raw.get(key) is None else self.instant(key)

    def intervals(self, key: str) -> tuple[Interval, ...]:
        value = self.raw.get(key) or []
        try:
            if not isinstance(value, list):
                raise ValueError
            out = []
            for pair in value:
                if not isinstance(pair, list) or len(pair) != 2:
                    raise ValueError
                out.append((parse_instant(pair[0]), parse_instant(pair[1])))
            return tuple(out)
        except ValueError:
            raise self._bad(key, "a list of [start, end] times") from None

    def argv(self, key: str) -> tuple[str, ...] | None:
        value = self.raw.get(key)
        if value is not None and (not isinstance(value, list) or not all(isinstance(a, str) for a in value)):
            raise self._bad(key, "a list of strings or null")
        return None if value is None else tuple(value)

    def env(self, key: str) -> dict[str, str]:
        value = self.raw.get(key) or {}
        if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
            raise self._bad(key, "a map of strings")
        return dict(value)

    def child(self, key: str) -> _Reader | None:
        value = self.raw.get(key)
        return None if value is None else _Reader(value, f"{self.path}.{key}")

    def part(self, key: str) -> _Reader:
        """A nested object that must be there."""
        return _Reader(self.raw.get(key), f"{self.path}.{key}")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def parse_instant(value: Any) -> int:
    """Epoch ms from an RFC 3339 string (or epoch ms already); ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a time: {_show(value)}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"no time zone: {value!r}")
    return round(moment.timestamp() * 1000)


def overlap_ms(intervals: tuple[Interval, ...], until_ms: int) -> int:
    """How much of `intervals` lies before `until_ms`."""
    return sum(max(0, min(end, until_ms) - start) for start, end in intervals)


@dataclass(frozen=True, slots=True)
class TaskPlan:
    """Where and when the allocator placed a task, and the CO2 it expects against running now."""

    server_id: str
    pieces: tuple[Interval, ...]
    co2_g: float | None = None
    energy_kwh: float | None = None
    run_now_co2_g: float | None = None
    run_now_server_id: str | None = None
    saving_g: float | None = None
    explanation: str = ""
    epoch: int = 0
    measured_co2_g: float | None = None
    measured_energy_kwh: float | None = None
    measured_saving_g: float | None = None

    @property
    def start_ms(self) -> int:
        return self.pieces[0][0]

    @property
    def end_ms(self) -> int:
        return self.pieces[-1][1]

    @classmethod
    def from_json(cls, raw: Any, path: str = "plan") -> TaskPlan:
        """Parse the `plan` object of task JSON."""
        r = _Reader(raw, path)
        pieces = r.intervals("pieces")
        if not pieces:
            raise ModelError(f"{path}.pieces: a plan has at least one piece")
        return cls(
            server_id=r.text("server_id"),
            pieces=pieces,
            co2_g=r.figure("co2_g"),
            energy_kwh=r.figure("energy_kwh"),
            run_now_co2_g=r.figure("run_now_co2_g"),
            run_now_server_id=r.opt_text("run_now_server_id"),
            saving_g=r.figure("saving_g"),
            explanation=r.text("explanation", ""),
            epoch=r.opt_integer("epoch") or 0,
            measured_co2_g=r.figure("measured_co2_g"),
            measured_energy_kwh=r.figure("measured_energy_kwh"),
            measured_saving_g=r.figure("measured_saving_g"),
        )


RECENT_FINISHED_H = 24
"""How far back the TUI and `tasker plan` show finished tasks (`finished_since` of
`GET /api/v1/tasks` and `/plan/savings`): the list of every task ever grows without end."""
RECENT_FINISHED = f"-{RECENT_FINISHED_H}h"


@dataclass(frozen=True, slots=True)
class TaskRun:
    """How the task really ran, as its agent reported it."""

    activity: str | None = None  # running | paused | None
    runs: tuple[Interval, ...] = ()
    since_ms: int | None = None
    exit_code: int | None = None
    output_tail: str = ""
    measured_at_ms: int | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str = "run") -> TaskRun:
        """Parse the `run` object of task JSON."""
        r = _Reader(raw, path)
        return cls(
            activity=r.opt_text("activity"),
            runs=r.intervals("runs"),
            since_ms=r.opt_instant("since"),
            exit_code=r.opt_integer("exit_code"),
            output_tail=r.text("output_tail", ""),
            measured_at_ms=r.opt_instant("measured_at"),
        )


@dataclass(frozen=True, slots=True)
class Task:
    """A task as the API shows it (`GET /api/v1/tasks/{id}`)."""

    id: str
    name: str
    owner: str
    cores: int
    duration_s: int
    state: str
    earliest_start_ms: int | None = None
    deadline_ms: int | None = None
    interruptible: bool = False
    regions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    reason: str = ""
    plan: TaskPlan | None = None
    created_at_ms: int | None = None
    updated_at_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    version: int = 0
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    run: TaskRun = field(default_factory=TaskRun)

    @classmethod
    def from_json(cls, raw: Any, path: str = "task") -> Task:
        """Parse task JSON; ModelError naming the first field that is not what it should be."""
        r = _Reader(raw, path)
        plan = r.child("plan")
        run = r.child("run")
        return cls(
            id=r.text("id"),
            name=r.text("name"),
            owner=r.text("owner", ""),
            cores=r.integer("cores"),
            duration_s=r.integer("duration_s"),
            state=r.text("state"),
            earliest_start_ms=r.opt_instant("earliest_start"),
            deadline_ms=r.opt_instant("deadline"),
            interruptible=r.flag("interruptible"),
            regions=r.strings("regions"),
            tags=r.strings("tags"),
            command=r.argv("command"),
            reason=r.text("reason", ""),
            plan=None if plan is None else TaskPlan.from_json(plan.raw, plan.path),
            created_at_ms=r.opt_instant("created_at"),
            updated_at_ms=r.opt_instant("updated_at"),
            started_at_ms=r.opt_instant("started_at"),
            finished_at_ms=r.opt_instant("finished_at"),
            version=r.opt_integer("version") or 0,
            cwd=r.opt_text("cwd"),
            env=r.env("env"),
            run=TaskRun() if run is None else TaskRun.from_json(run.raw, run.path),
        )

    def progress(self, now_ms: int) -> float:
        """Share of the duration run so far (0..1): from the runs the agent reported when there
        are any, else from the planned pieces up to now while the task is running."""
        if self.state == "done":
            return 1.0
        if self.duration_s <= 0:
            return 0.0
        if self.run.runs or self.run.since_ms is not None:
            # `runs` are the closed intervals; `since` starts the one still open.
            done_ms = overlap_ms(self.run.runs, now_ms)
            if self.run.since_ms is not None:
                done_ms += max(0, now_ms - self.run.since_ms)
        elif self.state == "running" and self.plan is not None:
            done_ms = overlap_ms(self.plan.pieces, now_ms)
        else:
            return 0.0
        return max(0.0, min(1.0, done_ms / (self.duration_s * 1000)))


@dataclass(frozen=True, slots=True)
class Placement:
    """One task's pieces on a server's timeline; name and id are None for another owner's task."""

    cores: int
    state: str
    pieces: tuple[Interval, ...]
    co2_g: float | None = None
    task_id: str | None = None
    name: str | None = None
    owner: str | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str) -> Placement:
        r = _Reader(raw, path)
        return cls(
            cores=r.integer("cores"),
            state=r.text("state"),
            pieces=r.intervals("pieces"),
            co2_g=r.figure("co2_g"),
            task_id=r.opt_text("task_id"),
            name=r.opt_text("name"),
            owner=r.opt_text("owner"),
        )


@dataclass(frozen=True, slots=True)
class PlanServer:
    """A server's row of the plan: its placements and the key of its intensity curve."""

    id: str
    name: str
    region: str
    energy_source: str
    cores: int
    curve: str
    placements: tuple[Placement, ...] = ()
    pue: float | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str) -> PlanServer:
        r = _Reader(raw, path)
        placements = r.raw.get("placements") or []
        if not isinstance(placements, list):
            raise ModelError(f"{path}.placements: expected a list, got {_show(placements)}")
        return cls(
            id=r.text("id"),
            name=r.text("name"),
            region=r.text("region", ""),
            energy_source=r.text("energy_source", ""),
            cores=r.integer("cores", 0),
            curve=r.text("curve", ""),
            placements=tuple(Placement.from_json(p, f"{path}.placements[{i}]") for i, p in enumerate(placements)),
            pue=r.figure("pue"),
        )


@dataclass(frozen=True, slots=True)
class PlanTimeline:
    """`GET /api/v1/plan`: every server's placements over [start, end), in slots of `slot_s`,
    and the intensity curves (g/kWh per slot from `start`) the servers refer to by key."""

    start_ms: int
    end_ms: int
    slot_s: int
    servers: tuple[PlanServer, ...] = ()
    curves: Mapping[str, tuple[float | None, ...]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any, path: str = "plan") -> PlanTimeline:
        """Parse the plan timeline; ModelError on garbage."""
        r = _Reader(raw, path)
        servers = r.raw.get("servers") or []
        curves = r.raw.get("curves") or {}
        if not isinstance(servers, list):
            raise ModelError(f"{path}.servers: expected a list, got {_show(servers)}")
        if not isinstance(curves, Mapping):
            raise ModelError(f"{path}.curves: expected an object, got {_show(curves)}")
        parsed_curves = {}
        for key, values in curves.items():
            if not isinstance(values, list):
                raise ModelError(f"{path}.curves.{key}: expected a list of numbers")
            parsed_curves[str(key)] = tuple(_Reader({"v": v}, f"{path}.curves.{key}").figure("v") for v in values)
        slot_s = r.integer("slot_s")
        if slot_s <= 0:
            raise ModelError(f"{path}.slot_s: expected a positive number of seconds, got {slot_s}")
        return cls(
            start_ms=r.instant("start"),
            end_ms=r.instant("end"),
            slot_s=slot_s,
            servers=tuple(PlanServer.from_json(s, f"{path}.servers[{i}]") for i, s in enumerate(servers)),
            curves=parsed_curves,
        )

    def curve_of(self, server: PlanServer) -> tuple[float | None, ...]:
        return self.curves.get(server.curve, ())


@dataclass(frozen=True, slots=True)
class SavingsSums:
    """CO2 planned against run-now over some tasks (those with both figures are `compared`)."""

    tasks: int = 0
    compared: int = 0
    planned_co2_g: float | None = None
    run_now_co2_g: float | None = None
    saving_g: float | None = None
    saving_pct: float | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str) -> SavingsSums:
        r = _Reader(raw, path)
        return cls(
            tasks=r.integer("tasks", 0),
            compared=r.integer("compared", 0),
            planned_co2_g=r.figure("planned_co2_g"),
            run_now_co2_g=r.figure("run_now_co2_g"),
            saving_g=r.figure("saving_g"),
            saving_pct=r.figure("saving_pct"),
        )


@dataclass(frozen=True, slots=True)
class SavedToday:
    """Run-now minus measured CO2 over the tasks done since midnight UTC with a measurement."""

    done: int = 0
    measured: int = 0
    run_now_co2_g: float | None = None
    measured_co2_g: float | None = None
    saved_g: float | None = None
    since_ms: int | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str) -> SavedToday:
        r = _Reader(raw, path)
        return cls(
            done=r.integer("done", 0),
            measured=r.integer("measured", 0),
            run_now_co2_g=r.figure("run_now_co2_g"),
            measured_co2_g=r.figure("measured_co2_g"),
            saved_g=r.figure("saved_g"),
            since_ms=r.opt_instant("since"),
        )


@dataclass(frozen=True, slots=True)
class Savings:
    """`GET /api/v1/plan/savings`: totals, and `today` when the backend measures tasks."""

    totals: SavingsSums = field(default_factory=SavingsSums)
    today: SavedToday | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str = "savings") -> Savings:
        """Parse the savings answer; ModelError on garbage."""
        r = _Reader(raw, path)
        totals = r.child("totals")
        today = r.child("today")
        return cls(
            totals=SavingsSums() if totals is None else SavingsSums.from_json(totals.raw, totals.path),
            today=None if today is None else SavedToday.from_json(today.raw, today.path),
        )


def format_instant(ts_ms: int) -> str:
    """Epoch ms as the backend writes instants: RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts_ms % 1000:03d}Z"


def _list_of(r: _Reader, key: str) -> list[Any]:
    value = r.raw.get(key) or []
    if not isinstance(value, list):
        raise ModelError(f"{r.path}.{key}: expected a list, got {_show(value)}")
    return value


# --- servers ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Location:
    """Where a server is: its region code and, optionally, a site (empty when not set)."""

    region: str
    site: str = ""

    def text(self, *, with_site: bool = False) -> str:
        """`eu-west`, or `eu-west/Dublin` when asked and a site is set."""
        return f"{self.region}/{self.site}" if with_site and self.site else self.region


@dataclass(frozen=True, slots=True)
class Server:
    """A registered server as the API shows it (`GET /api/v1/servers/{id}`, docs/api.md).

    Figures a backend leaves out or sends as null read as None; `carbon_intensity_source` says
    where the intensity comes from (`set by user`, or the default's origin).
    """

    id: str
    name: str
    location: Location
    energy_source: str
    carbon_intensity_g_per_kwh: float | None = None
    carbon_intensity_source: str = ""
    pue: float | None = None
    idle_watts: float | None = None
    max_watts: float | None = None
    cores: int | None = None
    tags: tuple[str, ...] = ()
    created_at_ms: int | None = None
    created_by: str = ""
    owner: str = ""
    updated_at_ms: int | None = None

    @property
    def intensity_set_by_user(self) -> bool:
        return self.carbon_intensity_source == "set by user"

    @classmethod
    def from_json(cls, raw: Any, path: str = "server") -> Server:
        """Parse server JSON; ModelError naming the first field that is not what it should be."""
        r = _Reader(raw, path)
        location = r.part("location")
        return cls(
            id=r.text("id"),
            name=r.text("name"),
            location=Location(region=location.text("region"), site=location.opt_text("site") or ""),
            energy_source=r.text("energy_source"),
            carbon_intensity_g_per_kwh=r.figure("carbon_intensity_g_per_kwh"),
            carbon_intensity_source=r.text("carbon_intensity_source", ""),
            pue=r.figure("pue"),
            idle_watts=r.figure("idle_watts"),
            max_watts=r.figure("max_watts"),
            cores=r.opt_integer("cores"),
            tags=r.strings("tags"),
            created_at_ms=r.opt_instant("created_at"),
            created_by=r.text("created_by", ""),
            owner=r.text("owner", ""),
            updated_at_ms=r.opt_instant("updated_at"),
        )

    def to_json(self) -> dict[str, Any]:
        """The server as the API writes it (what `--json` prints and a PATCH is compared with)."""
        return {
            "id": self.id,
            "name": self.name,
            "location": {"region": self.location.region, "site": self.location.site},
            "energy_source": self.energy_source,
            "carbon_intensity_g_per_kwh": self.carbon_intensity_g_per_kwh,
            "carbon_intensity_source": self.carbon_intensity_source,
            "pue": self.pue,
            "idle_watts": self.idle_watts,
            "max_watts": self.max_watts,
            "cores": self.cores,
            "tags": list(self.tags),
            "created_at": None if self.created_at_ms is None else format_instant(self.created_at_ms),
            "created_by": self.created_by,
            "owner": self.owner,
            "updated_at": None if self.updated_at_ms is None else format_instant(self.updated_at_ms),
        }


@dataclass(frozen=True, slots=True)
class LatestReading:
    """A server's newest stored reading of one metric; `value` None when it was null."""

    ts_ms: int
    value: float | None

    @classmethod
    def from_json(cls, raw: Any, path: str) -> LatestReading:
        r = _Reader(raw, path)
        return cls(ts_ms=r.integer("ts"), value=r.figure("value"))

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts_ms, "value": self.value}


@dataclass(frozen=True, slots=True)
class ServerPage:
    """`GET /api/v1/servers`: every server, by name, and the latest reading of each metric by
    server id; `latest_unavailable` says why `latest` is empty when the store is down."""

    servers: tuple[Server, ...] = ()
    latest: Mapping[str, Mapping[str, LatestReading]] = field(default_factory=dict)
    latest_unavailable: str | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str = "fleet") -> ServerPage:
        """Parse the server list; ModelError on garbage."""
        r = _Reader(raw, path)
        servers = tuple(Server.from_json(s, f"{path}.servers[{i}]") for i, s in enumerate(_list_of(r, "servers")))
        latest_raw = r.raw.get("latest")
        latest_raw = {} if latest_raw is None else latest_raw
        if not isinstance(latest_raw, Mapping):
            raise ModelError(f"{path}.latest: expected an object, got {_show(latest_raw)}")
        latest: dict[str, dict[str, LatestReading]] = {}
        for server_id, metrics in latest_raw.items():
            by_metric = _Reader(metrics, f"{path}.latest.{server_id}")
            latest[str(server_id)] = {
                str(metric): LatestReading.from_json(point, f"{by_metric.path}.{metric}")
                for metric, point in by_metric.raw.items()
                if point is not None
            }
        return cls(servers=servers, latest=latest, latest_unavailable=r.opt_text("latest_unavailable"))

    def latest_of(self, server_id: str) -> Mapping[str, LatestReading]:
        return self.latest.get(server_id, {})


HistoryPoint = tuple[int, float | None, float | None, float | None]
"""A history bucket: its start (epoch ms), then min, avg and max (None where null)."""


@dataclass(frozen=True, slots=True)
class History:
    """`GET /api/v1/servers/{id}/history`: a metric's buckets over a range, oldest first."""

    metric: str
    unit: str = ""
    resolution_s: int = 1
    points: tuple[HistoryPoint, ...] = ()

    @classmethod
    def from_json(cls, raw: Any, path: str = "history") -> History:
        """Parse a history answer; ModelError naming the first bad bucket."""
        r = _Reader(raw, path)
        points = []
        for i, point in enumerate(_list_of(r, "points")):
            if not isinstance(point, list) or len(point) != 4:
                raise ModelError(f"{path}.points[{i}]: expected [ts, min, avg, max], got {_show(point)}")
            bucket = _Reader(dict(zip(("ts", "min", "avg", "max"), point, strict=True)), f"{path}.points[{i}]")
            points.append((bucket.integer("ts"), bucket.figure("min"), bucket.figure("avg"), bucket.figure("max")))
        return cls(
            metric=r.text("metric", ""),
            unit=r.text("unit", ""),
            resolution_s=max(1, r.opt_integer("resolution_s") or 1),
            points=tuple(points),
        )


# --- accounts -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Me:
    """`GET /api/v1/auth/me`: who the session belongs to."""

    username: str
    role: str
    expires_at_ms: int | None = None
    must_change_password: bool = False

    @classmethod
    def from_json(cls, raw: Any, path: str = "me") -> Me:
        r = _Reader(raw, path)
        return cls(
            username=r.text("username"),
            role=r.text("role"),
            expires_at_ms=r.opt_instant("expires_at"),
            must_change_password=r.flag("must_change_password"),
        )


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One live session of a user, as `GET /api/v1/me/sessions` lists it."""

    id: str
    created_at_ms: int | None = None
    expires_at_ms: int | None = None
    client: str | None = None
    current: bool = False

    @classmethod
    def from_json(cls, raw: Any, path: str = "session") -> SessionInfo:
        r = _Reader(raw, path)
        return cls(
            id=r.text("id"),
            created_at_ms=r.opt_instant("created_at"),
            expires_at_ms=r.opt_instant("expires_at"),
            client=r.opt_text("client"),
            current=r.flag("current"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """A user as `GET /api/v1/users` lists it (admins only); `sessions` is how many are live."""

    username: str
    role: str
    disabled: bool = False
    disabled_at_ms: int | None = None
    must_change_password: bool = False
    created_at_ms: int | None = None
    password_changed_at_ms: int | None = None
    sessions: int = 0

    @classmethod
    def from_json(cls, raw: Any, path: str = "user") -> Account:
        r = _Reader(raw, path)
        return cls(
            username=r.text("username"),
            role=r.text("role"),
            disabled=r.flag("disabled"),
            disabled_at_ms=r.opt_instant("disabled_at"),
            must_change_password=r.flag("must_change_password"),
            created_at_ms=r.opt_instant("created_at"),
            password_changed_at_ms=r.opt_instant("password_changed_at"),
            sessions=r.opt_integer("sessions") or 0,
        )


# --- chat (docs/websocket.md section 8) ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerLink:
    """A server a chat message points at: its id and its name when the message was sent."""

    id: str
    name: str

    @classmethod
    def from_json(cls, raw: Any, path: str) -> ServerLink:
        r = _Reader(raw, path)
        server_id = r.text("id")
        return cls(id=server_id, name=r.opt_text("name") or server_id)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One stored chat message; `ts_ms` as the backend stamped it."""

    id: int
    conversation: str
    sender: str
    text: str
    ts_ms: int = 0
    sender_role: str | None = None
    client_key: str | None = None
    server: ServerLink | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str = "message") -> ChatMessage:
        r = _Reader(raw, path)
        server = r.child("server")
        return cls(
            id=r.integer("id"),
            conversation=r.text("conversation", ""),
            sender=r.text("sender", ""),
            text=r.text("text", ""),
            ts_ms=r.opt_integer("ts") or 0,
            sender_role=r.opt_text("sender_role"),
            client_key=r.opt_text("client_key"),
            server=None if server is None else ServerLink.from_json(server.raw, server.path),
        )


@dataclass(frozen=True, slots=True)
class OnlineUser:
    """Someone connected to chat, as `chat.presence` and `chat.joined` list them."""

    username: str
    role: str = ""

    @classmethod
    def from_json(cls, raw: Any, path: str = "online") -> OnlineUser:
        r = _Reader(raw, path)
        return cls(username=r.text("username"), role=r.text("role", ""))


# --- agents (docs/agents.md) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentLease:
    """The agent lease of a server as a heartbeat answer states it."""

    epoch: int
    ttl_s: float
    holder: str = ""

    @classmethod
    def from_json(cls, raw: Any, path: str = "lease") -> AgentLease:
        r = _Reader(raw, path)
        ttl = r.figure("ttl_s")
        if ttl is None or not math.isfinite(ttl):
            raise ModelError(f"{path}.ttl_s: expected a number of seconds, got {_show(r.raw.get('ttl_s'))}")
        return cls(epoch=r.integer("epoch"), ttl_s=ttl, holder=r.text("holder", ""))


@dataclass(frozen=True, slots=True)
class AgentTask:
    """A task the agent is to run, with its planned pieces (epoch ms)."""

    id: str
    state: str
    pieces: tuple[Interval, ...] = ()
    command: tuple[str, ...] | None = None
    cwd: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cores: int = 0
    interruptible: bool = False

    @classmethod
    def from_json(cls, raw: Any, path: str = "task") -> AgentTask:
        r = _Reader(raw, path)
        return cls(
            id=r.text("id"),
            state=r.text("state"),
            pieces=r.intervals("pieces"),
            command=r.argv("command"),
            cwd=r.opt_text("cwd"),
            env=r.env("env"),
            cores=r.opt_integer("cores") or 0,
            interruptible=r.flag("interruptible"),
        )


@dataclass(frozen=True, slots=True)
class AgentWork:
    """`POST /api/v1/agents/{server_id}/heartbeat`: the lease, the tasks to run and those to
    stop (task id -> why), the backend's clock and how often to heartbeat."""

    lease: AgentLease
    now_ms: int
    tasks: tuple[AgentTask, ...] = ()
    cancel: Mapping[str, str] = field(default_factory=dict)
    poll_s: float | None = None

    @classmethod
    def from_json(cls, raw: Any, path: str = "heartbeat") -> AgentWork:
        """Parse a heartbeat answer; ModelError on garbage."""
        r = _Reader(raw, path)
        lease = r.part("lease")
        cancel = {}
        for i, item in enumerate(_list_of(r, "cancel")):
            stop = _Reader(item, f"{path}.cancel[{i}]")
            cancel[stop.text("task_id")] = stop.text("reason", "")
        return cls(
            lease=AgentLease.from_json(lease.raw, lease.path),
            now_ms=r.integer("now_ms"),
            tasks=tuple(AgentTask.from_json(t, f"{path}.tasks[{i}]") for i, t in enumerate(_list_of(r, "tasks"))),
            cancel=cancel,
            poll_s=r.figure("poll_s"),
        )
