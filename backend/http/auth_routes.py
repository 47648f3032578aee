"""Login, logout and "who am I"; and `caller()`, which every protected route starts with."""

from __future__ import annotations

from aiohttp import web

from backend.http.context import context
from backend.http.errors import json_error, read_json
from backend.http.json_body import json_response
from backend.services.auth import Principal, TooManyAttempts
from backend.services.timestamps import format_rfc3339


async def caller(request: web.Request, allow_ingest_key: bool = False) -> Principal:
    """The authenticated caller of this request; raises Unauthorized (401)."""
    auth = context(request).auth
    assert auth is not None, "routes needing auth are only mounted with the auth service"
    return await auth.authenticate(request.headers.get("Authorization"), allow_ingest_key)


async def login(request: web.Request) -> web.Response:
    """Check the password and open a session; 429 with Retry-After after too many failures
    for the username or from the caller's address (counted per api process)."""
    auth = context(request).auth
    assert auth is not None
    try:
        # The peer address, not X-Forwarded-For: a client can write that header itself.
        result = await auth.login(await read_json(request), client=request.remote)
    except TooManyAttempts as exc:
        return json_error(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})
    return json_response({
        "token": result.token,
        "expires_at": format_rfc3339(result.expires_at_ms),
        "role": result.role,
        "username": result.username,
    })


async def logout(request: web.Request) -> web.Response:
    principal = await caller(request)
    await context(request).auth.logout(principal)  # type: ignore[union-attr]
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    principal = await caller(request)
    expires = principal.expires_at_ms
    return json_response({
        "username": principal.name,
        "role": principal.role,
        "expires_at": format_rfc3339(expires) if expires is not None else None,
    })


def add_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/auth/login", login)
    app.router.add_post("/api/v1/auth/logout", logout)
    app.router.add_get("/api/v1/auth/me", me)
