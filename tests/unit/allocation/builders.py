"""Small fleets and tasks for the allocator's tests."""

from __future__ import annotations

from backend.allocation.model import Problem, ServerSpec, TaskSpec

T0 = 1_780_272_000_000  # 2026-06-01T00:00:00Z
H = 3_600_000
M = 60_000


def server(
    id: str,
    *,
    region: str = "eu-west",
    source: str = "gas",
    g: float = 500.0,
    cores: int = 32,
    idle: float = 100.0,
    peak: float = 400.0,
    pue: float = 1.5,
    tags: frozenset[str] = frozenset(),
) -> ServerSpec:
    return ServerSpec(
        id=id,
        name=id,
        region=region,
        energy_source=source,
        intensity_g_per_kwh=g,
        pue=pue,
        idle_watts=idle,
        max_watts=peak,
        cores=cores,
        tags=tags,
    )


def task(
    id: str,
    *,
    cores: int = 4,
    hours: float = 1.0,
    start_h: float = 0.0,
    deadline_h: float = 24.0,
    interruptible: bool = False,
    **kwargs,
) -> TaskSpec:
    return TaskSpec(
        id=id,
        cores=cores,
        duration_s=int(hours * 3600),
        earliest_start_ms=T0 + int(start_h * H),
        deadline_ms=T0 + int(deadline_h * H),
        interruptible=interruptible,
        **kwargs,
    )


def problem(tasks, servers, *, slot_s: int = 300, horizon_h: float = 48.0, fixed=()) -> Problem:
    return Problem(
        tasks=list(tasks),
        servers=list(servers),
        start_ms=T0,
        now_ms=T0,
        slot_s=slot_s,
        horizon_s=int(horizon_h * 3600),
        fixed=tuple(fixed),
    )
