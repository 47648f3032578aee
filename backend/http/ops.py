"""Operational routes for probes and scrapers: /healthz, /readyz, /metrics (no auth)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from backend.http.context import context
from backend.http.json_body import json_response
from backend.ports import Unavailable

READY_TIMEOUT_S = 1.0


async def healthz(request: web.Request) -> web.Response:
    """The process is alive and serving."""
    return json_response({"status": "alive"})


async def _probe(name: str, check) -> tuple[str, str | None]:  # type: ignore[no-untyped-def]
    try:
        await asyncio.wait_for(check(), READY_TIMEOUT_S)
    except TimeoutError:
        return name, f"no answer within {READY_TIMEOUT_S:g} s"
    except Unavailable as exc:
        return name, str(exc) or type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - whatever a ping raises means "not ready"
        return name, f"{type(exc).__name__}: {exc}"
    return name, None


async def readyz(request: web.Request) -> web.Response:
    """200 when the broker and stores this process uses answer; 503 naming each one down."""
    results = await asyncio.gather(*(_probe(n, c) for n, c in context(request).checks.items()))
    checks = {name: ("ok" if problem is None else f"down: {problem}") for name, problem in results}
    down = [f"{name} unavailable: {problem}" for name, problem in results if problem is not None]
    if down:
        return json_response({"error": "not ready: " + "; ".join(down), "checks": checks}, status=503)
    return json_response({"status": "ready", "checks": checks})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of this process's counters."""
    text = await context(request).telemetry.render()
    return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Prometheus-Format": "0.0.4"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
