"""The websocket `/api/v1/ws`: authentication, a per-connection outbox, and a dispatcher of
client frames by their "type" (docs/websocket.md is the protocol).

Features plug in without touching the connection code: `WsDispatcher.register("chat.send",
handler)` adds a frame type, and `on_open` / `on_close` hooks see connections come and go.
Frames of one connection are handled one at a time, in order, so a client can send `ping` after
`subscribe` and know from the `pong` that the subscription is in force.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from backend.http.context import context
from backend.json_text import dumps
from backend.ports import Unavailable
from backend.services.auth import Principal
from backend.services.errors import Forbidden, InvalidField, PasswordChangeRequired, Unauthorized
from backend.services.live import Subscription
from backend.services.plan_feed import PLAN_FEED, PlanFeed, is_agent
from backend.services.telemetry import Telemetry
from backend.services.timestamps import now_ms
from tasker.domain import METRICS

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 5.0
CLOSE_UNAUTHORIZED = 4401
"""Refused credentials, or a session that ended while connected (logged out, revoked, expired,
its user disabled or deleted): the client logs in again rather than retrying the token."""
CLOSE_PASSWORD_CHANGE = 4403
"""The user must change their password before anything else (POST /api/v1/me/password)."""
SESSION_CHECK_S = 5.0
"""How often a user's connection checks in the registry that its session still holds. A session
ended by this api process closes its websockets at once; one ended elsewhere (another api
process, `tasker users ...` from a shell) within this long; an expiring one at its expiry."""
OUTBOX_FRAMES = 512
"""Frames a connection may have queued; beyond that new frames are dropped and the client is
told (an error frame with code "lagging") so it can backfill from history."""
MAX_FRAME_BYTES = 1 << 20
MAX_SUBSCRIBED_SERVERS = 10_000
AGENT_FRAME_TYPES = frozenset({"ping", "agent.subscribe"})
"""All an agent's key may send: it hears its server's plan frames and nothing else."""


class WsConnection:
    """One authenticated websocket client: what it watches and the frames waiting for it."""

    def __init__(self, ws: web.WebSocketResponse, principal: Principal, telemetry: Telemetry) -> None:
        self.ws = ws
        self.principal = principal
        self.subscription = Subscription()
        self.extensions: dict[str, Any] = {}
        """Per-connection state of plugged-in features (e.g. chat), keyed by feature name."""
        self._telemetry = telemetry
        self._outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_FRAMES)
        self._dropped = 0
        self.ending = False
        """Set when its session ended and the connection is being closed for it."""

    def push(self, text: str) -> None:
        """Queue a text frame; never waits (a full outbox drops the frame and counts it)."""
        try:
            self._outbox.put_nowait(text)
        except asyncio.QueueFull:
            self._dropped += 1
            self._telemetry.live_dropped.inc()

    def send(self, frame: dict[str, Any]) -> None:
        """Queue a JSON frame."""
        self.push(dumps(frame))

    def error(self, code: str, message: str) -> None:
        self.send({"type": "error", "code": code, "message": message})

    async def write_loop(self) -> None:
        """Drain the outbox onto the socket, one frame at a time."""
        while True:
            text = await self._outbox.get()
            await self.ws.send_str(text)
            if self._dropped:
                dropped, self._dropped = self._dropped, 0
                await self.ws.send_str(
                    dumps(
                        {
                            "type": "error",
                            "code": "lagging",
                            "message": f"{dropped} frames were dropped because this client read too slowly; "
                            "fetch history to fill the gap",
                        }
                    )
                )


MessageHandler = Callable[[WsConnection, dict[str, Any]], Awaitable[None]]
ConnectionHook = Callable[[WsConnection], Awaitable[None]]


class WsDispatcher:
    """Client frame type -> handler, plus hooks run when a connection opens and closes."""

    def __init__(self) -> None:
        self.handlers: dict[str, MessageHandler] = {}
        self.on_open: list[ConnectionHook] = []
        self.on_close: list[ConnectionHook] = []

    def register(self, frame_type: str, handler: MessageHandler) -> None:
        if frame_type in self.handlers or frame_type == "auth":
            raise ValueError(f"websocket frame type {frame_type!r} is already handled")
        self.handlers[frame_type] = handler

    async def dispatch(self, conn: WsConnection, frame: dict[str, Any]) -> None:
        frame_type = frame.get("type")
        if frame_type == "auth":
            conn.error("bad_request", "already authenticated")
            return
        if is_agent(conn.principal) and frame_type not in AGENT_FRAME_TYPES:
            conn.error(
                "forbidden",
                f"an agent key may send only {', '.join(sorted(AGENT_FRAME_TYPES))}; "
                f"{str(frame_type)[:64]!r} needs a user's session",
            )
            return
        handler = self.handlers.get(frame_type) if isinstance(frame_type, str) else None
        if handler is None:
            conn.error(
                "unknown_type",
                f"unknown frame type {str(frame_type)[:64]!r}; known: {', '.join(sorted(self.handlers))}",
            )
            return
        try:
            await handler(conn, frame)
        except InvalidField as exc:
            conn.error("bad_request", f"{exc.field} {exc.reason}")
        except Forbidden as exc:
            conn.error("forbidden", str(exc))
        except Unavailable as exc:
            conn.error("unavailable", str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing handler must not end the connection
            log.exception("websocket %s frame from %s failed", frame_type, conn.principal.name, exc_info=exc)
            conn.error("internal", f"{frame_type} failed; the backend log has the details")


# --- the built-in frame types ----------------------------------------------------------------


async def handle_ping(conn: WsConnection, frame: dict[str, Any]) -> None:
    conn.send({"type": "pong"})


async def handle_subscribe(conn: WsConnection, frame: dict[str, Any]) -> None:
    """Replace the connection's live subscription."""
    servers = frame.get("servers")
    if servers == "*":
        chosen: frozenset[str] | None = None
    elif (
        isinstance(servers, list)
        and len(servers) <= MAX_SUBSCRIBED_SERVERS
        and all(isinstance(s, str) and len(s) <= 64 for s in servers)
    ):
        chosen = frozenset(servers)
    else:
        raise InvalidField("servers", f'must be "*" or a list of at most {MAX_SUBSCRIBED_SERVERS} server ids')
    metrics = frame.get("metrics", list(METRICS))
    if not isinstance(metrics, list) or not all(isinstance(m, str) and m in METRICS for m in metrics):
        raise InvalidField("metrics", f"must be a list of: {', '.join(sorted(METRICS))}")
    conn.subscription = Subscription(chosen, frozenset(metrics))


async def handle_agent_subscribe(conn: WsConnection, frame: dict[str, Any]) -> None:
    """Narrow the connection's plan frames to one server's (a key: only its own server)."""
    server_id = frame.get("server_id")
    if not isinstance(server_id, str) or not 0 < len(server_id) <= 64:
        raise InvalidField("server_id", "must be a server id")
    scope = conn.principal.server_id
    if is_agent(conn.principal) and server_id != scope:
        raise Forbidden(f"this key is scoped to server {scope!r}; it may not follow {server_id!r}")
    conn.extensions[PLAN_FEED] = PlanFeed(server_id)
    conn.send({"type": "agent.subscribed", "server_id": server_id})


def default_dispatcher() -> WsDispatcher:
    dispatcher = WsDispatcher()
    dispatcher.register("ping", handle_ping)
    dispatcher.register("subscribe", handle_subscribe)
    dispatcher.register("agent.subscribe", handle_agent_subscribe)
    return dispatcher


WS_DISPATCHER = web.AppKey("tasker_ws_dispatcher", WsDispatcher)
WS_OPEN = web.AppKey("tasker_ws_open", set["WsConnection"])


# --- the route --------------------------------------------------------------------------------


def _decode(data: str) -> dict[str, Any] | None:
    try:
        frame = json.loads(data)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def _authenticate(request: web.Request, ws: web.WebSocketResponse) -> Principal:
    """From the Authorization header, else from a first {"type":"auth"} frame within 5 s: a
    session, or an ingest key scoped to a server (that server's agent)."""
    auth = context(request).auth
    assert auth is not None
    header = request.headers.get("Authorization")
    if header:
        return _agent_or_session(await auth.authenticate(header, allow_ingest_key=True))
    try:
        msg = await ws.receive(timeout=AUTH_TIMEOUT_S)
    except TimeoutError:
        raise Unauthorized(f"no credentials within {AUTH_TIMEOUT_S:g} s") from None
    frame = _decode(msg.data) if msg.type == WSMsgType.TEXT else None
    if frame is None or frame.get("type") != "auth" or not isinstance(frame.get("token"), str):
        raise Unauthorized('the first frame must be {"type": "auth", "token": "..."}')
    return _agent_or_session(await auth.authenticate_token(frame["token"], allow_ingest_key=True))


def _agent_or_session(principal: Principal) -> Principal:
    if is_agent(principal) and principal.server_id is None:
        raise Unauthorized(
            "an ingest key not scoped to a server only posts readings; an agent needs "
            "one made with tasker keys create --server ID"
        )
    return principal


async def websocket(request: web.Request) -> web.WebSocketResponse:
    ctx = context(request)
    ws = web.WebSocketResponse(heartbeat=30.0, max_msg_size=MAX_FRAME_BYTES)
    await ws.prepare(request)
    try:
        principal = await _authenticate(request, ws)
    except Unauthorized as exc:
        await _refuse(ws, "unauthorized", str(exc), CLOSE_UNAUTHORIZED, "unauthorized")
        return ws
    except PasswordChangeRequired as exc:
        await _refuse(ws, "password_change_required", str(exc), CLOSE_PASSWORD_CHANGE, "password change required")
        return ws

    conn = WsConnection(ws, principal, ctx.telemetry)
    dispatcher = request.app[WS_DISPATCHER]
    open_connections = request.app[WS_OPEN]
    writer = asyncio.create_task(conn.write_loop(), name="ws-writer")
    hello = {"type": "hello", "username": principal.name, "role": principal.role, "server_time": now_ms()}
    conn.send({**hello, "server_id": principal.server_id} if is_agent(principal) else hello)
    # Features (chat, presence) are for people: an agent's connection skips their hooks.
    hooked = not is_agent(principal)
    hub = ctx.hub
    if hub is not None:
        hub.add(conn)
    open_connections.add(conn)
    ctx.telemetry.ws_connections.set(len(open_connections))
    log.info("websocket opened by %s (%s)", principal.name, principal.role)
    watcher = (
        asyncio.create_task(_watch_session(conn, ctx.auth), name="ws-session")
        if principal.token_hash is not None and ctx.auth is not None
        else None
    )
    try:
        for hook in dispatcher.on_open if hooked else ():
            await hook(conn)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                frame = _decode(msg.data)
                if frame is None:
                    conn.error("bad_frame", 'a frame must be a JSON object with a "type"')
                    continue
                await dispatcher.dispatch(conn, frame)
            elif msg.type == WSMsgType.BINARY:
                conn.error("bad_frame", "binary frames are not supported; send JSON text")
            if writer.done():
                break  # the socket failed under the writer
    finally:
        if hub is not None:
            hub.remove(conn)
        open_connections.discard(conn)
        ctx.telemetry.ws_connections.set(len(open_connections))
        for hook in dispatcher.on_close if hooked else ():
            try:
                await hook(conn)
            except Exception:  # noqa: BLE001 - one feature's cleanup must not skip the others
                log.exception("websocket close hook failed")
        if watcher is not None:
            if conn.ending:  # it is closing the socket: let it finish the close handshake
                await asyncio.wait({watcher}, timeout=2.0)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await ws.close()
        log.info("websocket closed for %s", principal.name)
    return ws


async def _refuse(ws: web.WebSocketResponse, code: str, message: str, close_code: int, reason: str) -> None:
    """Say why in one error frame, then close with `close_code` and a short `reason`."""
    if ws.closed:
        return
    try:
        await ws.send_str(dumps({"type": "error", "code": code, "message": message}))
    except (ConnectionError, RuntimeError):
        pass  # the client went away first
    await ws.close(code=close_code, message=reason.encode()[:123].decode("utf-8", "ignore").encode())


async def _watch_session(conn: WsConnection, auth: Any) -> None:
    """Close the connection (4401, with the reason) once its session no longer holds: checked
    every SESSION_CHECK_S, at once when this process ends sessions (`AuthService.watch`), and
    at the session's expiry. A registry that cannot answer keeps the connection open."""
    wake = asyncio.Event()
    stop_watching = auth.watch(conn.principal, wake.set)
    expires = conn.principal.expires_at_ms
    first = True
    try:
        while True:
            # The first check is spread out so that connections opened together check apart.
            wait = SESSION_CHECK_S * (random.uniform(0.5, 1.0) if first else 1.0)
            first = False
            if expires is not None:
                wait = min(wait, max(0.0, (expires - now_ms()) / 1000))
            try:
                await asyncio.wait_for(wake.wait(), wait)
            except TimeoutError:
                pass
            wake.clear()
            try:
                reason = await auth.session_ended(conn.principal)
            except Unavailable as exc:
                log.debug("session of a websocket not checked: %s", exc)
                continue
            if reason is not None:
                conn.ending = True
                log.info("websocket of %s closed: %s", conn.principal.name, reason)
                await _refuse(conn.ws, "unauthorized", reason, CLOSE_UNAUTHORIZED, reason)
                return
    finally:
        stop_watching()


async def close_all(app: web.Application) -> None:
    """On shutdown: close every websocket (1001 going away) so the server can stop."""
    still_open = app[WS_OPEN]
    for conn in list(still_open):
        await conn.ws.close(code=1001, message=b"server shutting down")


def add_routes(app: web.Application, dispatcher: WsDispatcher) -> None:
    app[WS_DISPATCHER] = dispatcher
    app[WS_OPEN] = set()
    app.on_shutdown.append(close_all)
    app.router.add_get("/api/v1/ws", websocket)
