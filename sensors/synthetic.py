"""A synthetic fleet for demos and load tests: N servers spread across regions and energy sources."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from tasker.client import Conflict, TaskerClient
from tasker.domain import ENERGY_SOURCES, REGIONS

# Server classes (idle W, max W, cores): small web nodes to big GPU-less compute boxes.
_CLASSES = ((45, 140, 8), (80, 350, 32), (120, 520, 64), (160, 800, 96))
_SITES = {
    "eu-west": "Dublin",
    "eu-central": "Frankfurt",
    "eu-north": "Stockholm",
    "eu-south": "Milan",
    "fr-central": "Paris",
    "us-east": "Ashburn",
    "us-west": "Portland",
    "us-central": "Des Moines",
    "ca-central": "Montreal",
    "sa-east": "Sao Paulo",
    "ap-south": "Mumbai",
    "ap-southeast": "Singapore",
    "ap-northeast": "Tokyo",
    "au-southeast": "Sydney",
    "af-south": "Cape Town",
}


def synthetic_servers(count: int, seed: int | str = 0, prefix: str = "emu") -> list[dict[str, Any]]:
    """`count` server bodies for `POST /api/v1/servers`, named `<prefix>-<region>-<n>`.

    Regions cycle so every region is used; about half the fleet is on grid-mix (so the daily
    intensity profile shows), the rest spread over the dedicated sources.
    """
    rng = random.Random(f"{seed}:synthetic")
    regions = list(REGIONS)
    dedicated = [s for s in ENERGY_SOURCES if s != "grid-mix"]
    servers = []
    for n in range(count):
        region = regions[n % len(regions)]
        source = "grid-mix" if n % 2 == 0 else dedicated[(n // 2) % len(dedicated)]
        idle, top, cores = rng.choice(_CLASSES)
        idle = round(idle * rng.uniform(0.85, 1.15))
        servers.append(
            {
                "name": f"{prefix}-{region}-{n + 1:04d}",
                "location": {"region": region, "site": _SITES.get(region, "")},
                "energy_source": source,
                "pue": round(rng.uniform(1.1, 1.8), 2),
                "idle_watts": idle,
                "max_watts": max(idle + 20, round(top * rng.uniform(0.9, 1.1))),
                "cores": cores,
                "tags": ["emulated", "web" if cores <= 8 else "compute"],
            }
        )
    return servers


async def create_fleet(client: TaskerClient, servers: list[dict[str, Any]], concurrency: int = 8) -> tuple[int, int]:
    """Register `servers`, skipping names already taken; returns (created, already there).

    Re-running with the same count therefore tops the fleet up instead of failing.
    """
    taken = {s.name.lower() for s in (await client.read_servers()).servers}
    todo = [body for body in servers if body["name"].lower() not in taken]
    created = 0
    limit = asyncio.Semaphore(concurrency)

    async def create(body: dict[str, Any]) -> None:
        nonlocal created
        async with limit:
            try:
                await client.create_server(body)
                created += 1
            except Conflict:
                pass  # registered meanwhile by someone else: fine

    try:
        async with asyncio.TaskGroup() as group:
            for body in todo:
                group.create_task(create(body))
    except ExceptionGroup as group_error:
        first = group_error.exceptions[0]
    else:
        return created, len(servers) - len(todo)
    raise first
