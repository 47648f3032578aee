"""Login, logout and "who am I", the user's own password and sessions, the admins' account
routes; and `caller()`, which every protected route starts with.

A user who must change their password gets 403 ("password change required: ...") from every
route but `POST /api/v1/me/password`, `GET /api/v1/auth/me` and `POST /api/v1/auth/logout`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend.http.context import context
from backend.http.errors import json_error, read_json
from backend.http.json_body import json_response
from backend.services.accounts import AccountService, session_json
from backend.services.auth import Principal
from backend.services.errors import InvalidField
from backend.services.login_guard import TooManyAttempts
from backend.services.timestamps import format_rfc3339


async def caller(
    request: web.Request, allow_ingest_key: bool = False, *, allow_password_change: bool = False
) -> Principal:
    """The authenticated caller of this request; raises Unauthorized (401), or
    PasswordChangeRequired (403) for a user who must change their password unless
    `allow_password_change`."""
    auth = context(request).auth
    assert auth is not None, "routes needing auth are only mounted with the auth service"
    return await auth.authenticate(request.headers.get("Authorization"), allow_ingest_key, allow_password_change)


def _accounts(request: web.Request) -> AccountService:
    auth = context(request).auth
    assert auth is not None
    return auth.accounts


def _too_many(exc: TooManyAttempts) -> web.Response:
    return json_error(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)})


async def login(request: web.Request) -> web.Response:
    """Check the password and open a session; 429 with Retry-After after too many failures
    for the username or from the caller's address (counted per api process); 403 for a
    disabled account (said only after the right password)."""
    auth = context(request).auth
    assert auth is not None
    try:
        # The peer address, not X-Forwarded-For: a client can write that header itself.
        result = await auth.login(await read_json(request), client=request.remote)
    except TooManyAttempts as exc:
        return _too_many(exc)
    body: dict[str, Any] = {
        "token": result.token,
        "expires_at": format_rfc3339(result.expires_at_ms),
        "role": result.role,
        "username": result.username,
        "must_change_password": result.must_change_password,
    }
    if result.must_change_password:
        body["password_change_reason"] = result.password_change_reason
    return json_response(body)


async def logout(request: web.Request) -> web.Response:
    principal = await caller(request, allow_password_change=True)
    await context(request).auth.logout(principal)  # type: ignore[union-attr]
    return web.Response(status=204)


async def me(request: web.Request) -> web.Response:
    principal = await caller(request, allow_password_change=True)
    expires = principal.expires_at_ms
    return json_response(
        {
            "username": principal.name,
            "role": principal.role,
            "expires_at": format_rfc3339(expires) if expires is not None else None,
            "must_change_password": principal.must_change_password,
        }
    )


# --- the caller's own account ----------------------------------------------------------------


async def change_my_password(request: web.Request) -> web.Response:
    """`{"current_password", "new_password"}`: 200 once changed (the must-change flag cleared,
    the caller's other sessions ended); 400 naming the field when the current one is wrong or
    the new one breaks the policy; 429 after too many wrong current passwords."""
    principal = await caller(request, allow_password_change=True)
    try:
        ended = await _accounts(request).change_own_password(principal, await read_json(request), request.remote)
    except TooManyAttempts as exc:
        return _too_many(exc)
    return json_response({"username": principal.name, "must_change_password": False, "other_sessions_ended": ended})


async def my_sessions(request: web.Request) -> web.Response:
    principal = await caller(request)
    sessions = await _accounts(request).sessions(principal.name)
    return json_response({"sessions": [session_json(s, principal.token_hash) for s in sessions]})


async def end_my_other_sessions(request: web.Request) -> web.Response:
    """Log out everywhere else: every session of the caller but this one ends."""
    principal = await caller(request)
    ended = await _accounts(request).revoke_sessions(principal.name, principal.name, keep=principal.token_hash)
    return json_response({"ended": ended})


# --- admins: every account -------------------------------------------------------------------


async def _admin(request: web.Request) -> Principal:
    principal = await caller(request)
    principal.require_admin()
    return principal


def _confirm(request: web.Request) -> None:
    if request.query.get("confirm", "").lower() not in ("true", "1", "yes"):
        raise InvalidField("confirm", "must be true: deleting a user needs ?confirm=true")


async def list_users(request: web.Request) -> web.Response:
    await _admin(request)
    return json_response({"users": [u.as_json() for u in await _accounts(request).list_users()]})


async def set_user_password(request: web.Request) -> web.Response:
    """`{"password", "must_change_password": false}`: every session of the user ends."""
    principal = await _admin(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidField("body", 'must be a JSON object {"password", "must_change_password"}')
    must_change = body.get("must_change_password", False)
    if not isinstance(must_change, bool):
        raise InvalidField("must_change_password", "must be true or false")
    username = request.match_info["username"]
    ended = await _accounts(request).set_password(principal.name, username, body.get("password"), must_change)  # type: ignore[arg-type]
    return json_response({"username": username, "must_change_password": must_change, "sessions_ended": ended})


async def disable_user(request: web.Request) -> web.Response:
    principal = await _admin(request)
    username = request.match_info["username"]
    ended = await _accounts(request).disable(principal.name, username, acting_user=principal.name)
    return json_response({"username": username, "disabled": True, "sessions_ended": ended})


async def enable_user(request: web.Request) -> web.Response:
    principal = await _admin(request)
    username = request.match_info["username"]
    changed = await _accounts(request).enable(principal.name, username)
    return json_response({"username": username, "disabled": False, "changed": changed})


async def delete_user(request: web.Request) -> web.Response:
    """`?confirm=true`, and `&transfer_to=USER` when the user owns servers or unfinished tasks
    (409 names them otherwise)."""
    principal = await _admin(request)
    _confirm(request)
    removal = await _accounts(request).remove(
        principal.name, request.match_info["username"], request.query.get("transfer_to"), acting_user=principal.name
    )
    return json_response(
        {"servers_transferred": removal.servers, "tasks_transferred": removal.tasks, "sessions_ended": removal.sessions}
    )


async def user_sessions(request: web.Request) -> web.Response:
    """A user's unexpired sessions (admins, or the user themselves)."""
    principal = await caller(request)
    username = request.match_info["username"]
    if principal.name != username:
        principal.require_admin()
    sessions = await _accounts(request).sessions(username)
    return json_response({"sessions": [session_json(s, principal.token_hash) for s in sessions]})


async def end_user_sessions(request: web.Request) -> web.Response:
    """End a user's sessions (`?session=ID` for one); never the caller's own (log out for that)."""
    principal = await caller(request)
    username = request.match_info["username"]
    if principal.name != username:
        principal.require_admin()
    ended = await _accounts(request).revoke_sessions(
        principal.name, username, request.query.get("session"), keep=principal.token_hash
    )
    return json_response({"ended": ended})


ROUTES = (
    ("POST", "/api/v1/auth/login", login),
    ("POST", "/api/v1/auth/logout", logout),
    ("GET", "/api/v1/auth/me", me),
    ("POST", "/api/v1/me/password", change_my_password),
    ("GET", "/api/v1/me/sessions", my_sessions),
    ("DELETE", "/api/v1/me/sessions", end_my_other_sessions),
    ("GET", "/api/v1/users", list_users),
    ("DELETE", "/api/v1/users/{username}", delete_user),
    ("PUT", "/api/v1/users/{username}/password", set_user_password),
    ("POST", "/api/v1/users/{username}/disable", disable_user),
    ("POST", "/api/v1/users/{username}/enable", enable_user),
    ("GET", "/api/v1/users/{username}/sessions", user_sessions),
    ("DELETE", "/api/v1/users/{username}/sessions", end_user_sessions),
)
"""Every route of this module: (method, path, handler)."""


def add_routes(app: web.Application) -> None:
    for method, path, handler in ROUTES:
        if method == "GET":
            app.router.add_get(path, handler)  # and HEAD
        else:
            app.router.add_route(method, path, handler)
