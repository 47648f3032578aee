"""Small fleets and tasks for the allocator's tests."""

from __future__ import annotations

from hypothesis import strategies as st

from backend.allocation.model import Placement, Problem, ServerSpec, TaskSpec

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


SLOT_S = 1800
"""Slots of the random problems."""
REGIONS = ("eu-north", "us-west", "ap-south")
SOURCES = (("wind", 11.0), ("grid-mix", 230.0), ("coal", 820.0), ("solar", 41.0))


@st.composite
def problems(draw):
    """Small random problems: 1-4 servers, 1-7 tasks of every kind, sometimes a running task."""
    servers = []
    for i in range(draw(st.integers(1, 4))):
        source, g = draw(st.sampled_from(SOURCES))
        servers.append(
            server(
                f"s{i}",
                region=draw(st.sampled_from(REGIONS)),
                source=source,
                g=g,
                cores=draw(st.sampled_from([4, 8, 16])),
                tags=frozenset({"gpu"}) if draw(st.booleans()) else frozenset(),
            )
        )
    tasks = []
    for i in range(draw(st.integers(1, 7))):
        start = draw(st.integers(0, 8)) * 0.5
        hours = draw(st.integers(1, 6)) * 0.5 - draw(st.sampled_from([0.0, 0.2]))
        tasks.append(
            task(
                f"t{i}",
                cores=draw(st.sampled_from([1, 2, 4, 8])),
                hours=hours,
                start_h=start,
                deadline_h=start + hours + draw(st.integers(0, 8)) * 0.5,
                interruptible=draw(st.booleans()),
                regions=frozenset(draw(st.sets(st.sampled_from(REGIONS), max_size=2))),
                tags=frozenset({"gpu"}) if draw(st.integers(0, 4)) == 0 else frozenset(),
                server_id=f"s{draw(st.integers(0, len(servers) - 1))}" if draw(st.integers(0, 5)) == 0 else None,
            )
        )
    fixed = []
    if draw(st.booleans()):
        fixed.append(Placement("running", "s0", ((T0, T0 + 2 * H),), 0.0, 0.0, cores=servers[0].cores // 2))
    return problem(tasks, servers, slot_s=SLOT_S, horizon_h=8.0, fixed=fixed)
