"""JSON responses of the API, written by `backend.json_text` (no NaN/Infinity ever)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from backend.json_text import dumps


def json_response(body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """`web.json_response` with Tasker's serialiser; every route answers JSON through this."""
    return web.json_response(body, status=status, headers=headers, dumps=dumps)
