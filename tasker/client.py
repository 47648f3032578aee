"""Tasker's HTTP and websocket API client, used by the shell commands, the sensors and the TUI.

It speaks only the wire contract (docs/api.md); it imports nothing from
`backend`. One `aiohttp.ClientSession` per client keeps connections alive between calls:

    async with TaskerClient("http://127.0.0.1:8470", token=token) as api:
        fleet = await api.read_servers()
        async with api.live() as live:
            await live.subscribe("*", ["power", "co2"])
            async for frame in live:
                ...

Every failure is an `ApiError` subclass whose message is one sentence a user can act on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp

from tasker.backoff import RetryBackoff
from tasker.domain import SERVER_ID, Reading
from tasker.models import (
    Account,
    AgentWork,
    History,
    Me,
    ModelError,
    PlanTimeline,
    Savings,
    Server,
    ServerPage,
    SessionInfo,
    Task,
)

# Wire timestamps: int epoch ms, an RFC 3339 string, or a relative "-1h" (history/readings).
TimeArg = int | str | None


class ApiError(Exception):
    """The backend answered with an error, or could not be asked at all.

    `status` is the HTTP status (0 when no answer came), `message` the backend's one-sentence
    reason, `details` its per-item list (e.g. `{"index": 3, "field": "value", "reason": ...}`).
    """

    def __init__(self, status: int, message: str, details: Sequence[Mapping[str, Any]] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details: list[dict[str, Any]] = [dict(d) for d in (details or []) if isinstance(d, Mapping)]

    def describe(self) -> str:
        """One line: the message and each detail as `[item N] field reason`.

        A message that merely lists the fields the details name (e.g. "invalid server: pue")
        is shortened to its head, so no field is named twice.
        """
        if not self.details:
            return self.message
        fields = {str(d.get("field")) for d in self.details if d.get("field") is not None}
        head, sep, tail = self.message.rpartition(": ")
        message = head if sep and {f.strip() for f in tail.split(",")} <= fields else self.message
        parts = []
        for d in self.details:
            item = f"item {d['index']} " if d.get("index") is not None else ""
            field = f"{d['field']} " if d.get("field") is not None else ""
            parts.append(f"{item}{field}{d.get('reason', '')}".strip())
        return f"{message}: " + "; ".join(parts)


class Unauthorized(ApiError):
    """401: no credentials, wrong ones, or an expired session."""


class Forbidden(ApiError):
    """403: the credentials are valid but the role may not do this."""


class NotFoundError(ApiError):
    """404: the server (or route) does not exist."""


class ValidationFailed(ApiError):
    """400: the request was refused as a whole; `details` names each bad field or item."""


class Conflict(ApiError):
    """409: a uniqueness rule was broken (e.g. the server name is taken)."""


class PayloadTooLarge(ApiError):
    """413: the readings batch is over the backend's size limit; send smaller batches."""


class BackendUnavailable(ApiError):
    """The backend cannot be reached (refused, timed out, dropped) or answered 503.

    `unreachable` is True when no HTTP answer came at all (the backend process is not there),
    False for a 503 (the backend is up but its broker or a store is not).
    """

    def __init__(self, status: int, message: str, details=None, *, unreachable: bool = False):
        super().__init__(status, message, details)
        self.unreachable = unreachable


_BY_STATUS: dict[int, type[ApiError]] = {
    400: ValidationFailed,
    401: Unauthorized,
    403: Forbidden,
    404: NotFoundError,
    409: Conflict,
    413: PayloadTooLarge,
    422: ValidationFailed,
    502: BackendUnavailable,
    503: BackendUnavailable,
    504: BackendUnavailable,
}


def _reason(exc: BaseException) -> str:
    """A short human reason for a transport failure."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "connection refused"
        text = getattr(os_error, "strerror", None) or str(os_error)
        return text.lower() if text else "cannot connect"
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the connection was closed by the backend"
    text = str(exc) or type(exc).__name__
    return text[0].lower() + text[1:] if text else "connection error"


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of `/readyz`: whether the backend is ready, and its body (names what is down)."""

    ready: bool
    body: dict[str, Any]


def reading_to_wire(reading: Reading | Mapping[str, Any]) -> dict[str, Any]:
    """A reading as the readings endpoint takes it."""
    if isinstance(reading, Reading):
        return {"server_id": reading.server_id, "metric": reading.metric, "ts": reading.ts_ms, "value": reading.value}
    return dict(reading)


def match_server(servers: Iterable[Server], ref: str) -> Server:
    """The server whose id is `ref`, or else whose name is `ref` (case-insensitive)."""
    servers = list(servers)
    found = next((s for s in servers if s.id == ref), None) or next(
        (s for s in servers if s.name.lower() == ref.lower()), None
    )
    if found is None:
        raise NotFoundError(404, f"no server with id or name {ref!r}")
    return found


class TaskerClient:
    """Async client of one Tasker backend. Use as `async with`; one connection pool per instance.

    `token` is a session token (from `login`) or an ingest key; it is sent as a Bearer header.
    """

    def __init__(self, base_url: str, token: str | None = None, *, timeout: float = 10.0):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"backend URL {base_url!r}: expected http://host:port")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 5.0))
        self._session: aiohttp.ClientSession | None = None

    # --- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> TaskerClient:
        await self.open()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Create the connection pool (done by `async with`)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout, json_serialize=_dumps)

    async def close(self) -> None:
        """Close the connection pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- plumbing -------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def unavailable(self, reason: str, status: int = 0) -> BackendUnavailable:
        """The error for "no answer from the backend", naming its URL."""
        return BackendUnavailable(
            status, f"cannot reach the backend at {self.base_url}: {reason}", unreachable=status == 0
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: Mapping[str, Any] | None = None,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        """Send one request; return (status, decoded JSON body or None) or raise an ApiError."""
        if self._session is None:
            await self.open()
        assert self._session is not None
        clean = {k: str(v) for k, v in (params or {}).items() if v is not None}
        headers = self._headers()
        if data is not None:
            headers["Content-Type"] = content_type
        try:
            async with self._session.request(
                method, self.base_url + path, json=json_body, data=data, params=clean, headers=headers
            ) as resp:
                raw = await resp.read()
                status = resp.status
                http_reason = resp.reason or ""
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self.unavailable(_reason(exc)) from None
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace").strip()
        if status < 400:
            return status, body
        raise self._error(status, http_reason, body)

    def _error(self, status: int, http_reason: str, body: Any) -> ApiError:
        if isinstance(body, Mapping):
            message = str(body.get("error") or body.get("message") or http_reason)
            details = body.get("details") if isinstance(body.get("details"), list) else None
        else:
            message = (body if isinstance(body, str) and body and len(body) < 200 else "") or http_reason
            details = None
        message = message or f"HTTP {status}"
        cls = _BY_STATUS.get(status, BackendUnavailable if status >= 500 else ApiError)
        if cls is BackendUnavailable:
            return BackendUnavailable(status, f"the backend at {self.base_url} is unavailable: {message}", details)
        return cls(status, message, details)

    # --- health ---------------------------------------------------------------------------

    async def healthz(self) -> bool:
        """True when the backend process answers `/healthz`."""
        status, _ = await self.request("GET", "/healthz")
        return status == 200

    async def readyz(self) -> Readiness:
        """Whether the backend's broker and stores answer; the body names what is down."""
        try:
            _, body = await self.request("GET", "/readyz")
            return Readiness(True, body if isinstance(body, dict) else {})
        except BackendUnavailable as exc:
            if exc.unreachable:
                raise
            return Readiness(False, {"error": exc.message, "details": exc.details})

    # --- auth -----------------------------------------------------------------------------

    async def login(self, username: str, password: str) -> dict[str, Any]:
        """Log in; keeps the session token on this client and returns the backend's answer
        (`token`, `expires_at`, `role`, `username`)."""
        _, body = await self.request(
            "POST", "/api/v1/auth/login", json_body={"username": username, "password": password}
        )
        if not isinstance(body, dict) or not body.get("token"):
            raise ApiError(200, "the backend's login answer has no token")
        self.token = body["token"]
        return body

    async def logout(self) -> None:
        """Revoke this client's session on the backend."""
        await self.request("POST", "/api/v1/auth/logout")
        self.token = None

    async def me(self) -> Me:
        """Who the current token belongs to; ModelError when the answer is not what it should be."""
        return Me.from_json((await self.request("GET", "/api/v1/auth/me"))[1])

    # --- accounts (docs/accounts.md) --------------------------------------------------------

    async def change_password(self, current: str, new: str) -> dict[str, Any]:
        """Change this session's user's password (needed first when `login` answered
        `must_change_password`); the user's other sessions end. ValidationFailed names the
        field: a wrong `current_password`, or a `new_password` the policy refuses."""
        body = {"current_password": current, "new_password": new}
        return (await self.request("POST", "/api/v1/me/password", json_body=body))[1]

    async def my_sessions(self) -> list[SessionInfo]:
        """This user's live sessions."""
        return _sessions((await self.request("GET", "/api/v1/me/sessions"))[1])

    async def end_my_other_sessions(self) -> int:
        """Log out everywhere else; returns how many sessions ended."""
        return int(((await self.request("DELETE", "/api/v1/me/sessions"))[1] or {}).get("ended", 0))

    async def list_users(self) -> list[Account]:
        """Every user (admins only)."""
        users = _items((await self.request("GET", "/api/v1/users"))[1], "users")
        return [Account.from_json(raw, f"users[{i}]") for i, raw in enumerate(users)]

    def _user_path(self, username: str, tail: str = "") -> str:
        return f"/api/v1/users/{quote(username, safe='')}{tail}"

    async def set_user_password(self, username: str, password: str, *, must_change: bool = False) -> dict[str, Any]:
        """Set a user's password (admins only); every session of the user ends."""
        body = {"password": password, "must_change_password": must_change}
        return (await self.request("PUT", self._user_path(username, "/password"), json_body=body))[1]

    async def disable_user(self, username: str) -> dict[str, Any]:
        """Disable a user (admins only): its logins are refused, its sessions end."""
        return (await self.request("POST", self._user_path(username, "/disable")))[1]

    async def enable_user(self, username: str) -> dict[str, Any]:
        return (await self.request("POST", self._user_path(username, "/enable")))[1]

    async def delete_user(self, username: str, *, transfer_to: str | None = None) -> dict[str, Any]:
        """Delete a user (admins only; the caller has confirmed); Conflict when it owns servers
        or unfinished tasks and no `transfer_to` is given."""
        params = {"confirm": "true", "transfer_to": transfer_to}
        return (await self.request("DELETE", self._user_path(username), params=params))[1]

    async def user_sessions(self, username: str) -> list[SessionInfo]:
        """A user's live sessions (admins, or the user)."""
        return _sessions((await self.request("GET", self._user_path(username, "/sessions")))[1])

    async def end_user_sessions(self, username: str, session: str | None = None) -> int:
        """End a user's sessions, or only `session` (an id); never this client's own."""
        params = {"session": session}
        answer = (await self.request("DELETE", self._user_path(username, "/sessions"), params=params))[1]
        return int((answer or {}).get("ended", 0))

    # --- registry -------------------------------------------------------------------------

    async def list_servers(self) -> dict[str, Any]:
        """`{"servers": [server JSON...], "latest": {server_id: {metric: {"ts", "value"}}}}`."""
        _, body = await self.request("GET", "/api/v1/servers")
        body = body if isinstance(body, dict) else {}
        body.setdefault("servers", [])
        body.setdefault("latest", {})
        return body

    async def get_server(self, server_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"/api/v1/servers/{quote(server_id, safe='')}"))[1]

    async def find_server(self, ref: str) -> Server:
        """The server whose id is `ref`, or else whose name is `ref` (case-insensitive)."""
        return match_server((await self.read_servers()).servers, ref)

    async def server_id_of(self, ref: str, retry: RetryBackoff) -> str:
        """The id of the server `ref` names, for a host's agent or sensor. An id is taken as it
        is, without asking: the host starts while the backend is away, and its first request
        says whether the id is right. A name, as every command takes, is looked up, waiting
        `retry`'s delays while the backend is away; NotFoundError when no server has it."""
        if SERVER_ID.fullmatch(ref):
            return ref
        while True:
            try:
                return (await self.find_server(ref)).id
            except BackendUnavailable:
                await asyncio.sleep(retry.failed())

    async def create_server(self, server: Mapping[str, Any]) -> dict[str, Any]:
        """Register a server; returns it with its backend-assigned `id`."""
        return (await self.request("POST", "/api/v1/servers", json_body=dict(server)))[1]

    async def update_server(self, server_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some writable fields of a server; returns the server as now stored."""
        path = f"/api/v1/servers/{quote(server_id, safe='')}"
        return (await self.request("PATCH", path, json_body=dict(changes)))[1]

    async def delete_server(self, server_id: str, *, purge: bool = False) -> None:
        """Remove a server (the caller has confirmed); `purge` also drops its history."""
        params = {"confirm": "true", "purge": "true" if purge else None}
        await self.request("DELETE", f"/api/v1/servers/{quote(server_id, safe='')}", params=params)

    async def transfer_server(self, server_id: str, owner: str) -> Server:
        """Hand a server to another sysadmin or admin (admins only); returns it as now stored."""
        path = f"/api/v1/servers/{quote(server_id, safe='')}/owner"
        return Server.from_json((await self.request("PUT", path, json_body={"owner": owner}))[1])

    async def audit(self, limit: int = 100, before: str | None = None) -> dict[str, Any]:
        """A page of the audit log, newest first (admins only): `entries`, `next_before`."""
        params = {"limit": str(limit), "before": before}
        return (await self.request("GET", "/api/v1/audit", params=params))[1]

    # --- tasks, the plan and grid traces -----------------------------------------------------

    async def submit_task(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """Submit a task (docs/api.md task fields); returns it as stored, queued, with its `id`."""
        return (await self.request("POST", "/api/v1/tasks", json_body=dict(task)))[1]

    async def list_tasks(
        self, states: Sequence[str] = (), finished_since: TimeArg = None, server_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The tasks the caller may see, oldest first (optionally only in some states; with
        `finished_since`, without those that finished before it; with `server_id`, only those
        placed on that server)."""
        params = {"state": ",".join(states) or None, "finished_since": finished_since, "server": server_id}
        _, body = await self.request("GET", "/api/v1/tasks", params=params)
        return list((body or {}).get("tasks", []))

    async def get_task(self, task_id: str) -> dict[str, Any]:
        return (await self.request("GET", f"/api/v1/tasks/{quote(task_id, safe='')}"))[1]

    async def cancel_task(self, task_id: str) -> dict[str, Any]:
        """Cancel a task not finished yet; returns it, cancelled."""
        return (await self.request("DELETE", f"/api/v1/tasks/{quote(task_id, safe='')}"))[1]

    async def agent_heartbeat(self, server_id: str, agent: str, running: Sequence[str] = ()) -> AgentWork:
        """Take or renew the agent lease of a server; its tasks to run and to stop (docs/agents.md).
        Conflict while another agent holds the lease; ModelError when the answer is garbled."""
        body = {"agent": agent, "running": list(running)}
        return AgentWork.from_json(
            (await self.request("POST", f"/api/v1/agents/{quote(server_id, safe='')}/heartbeat", json_body=body))[1]
        )

    async def task_event(self, task_id: str, event: Mapping[str, Any]) -> dict[str, Any]:
        """Report how a task runs (running, paused, resumed, done, failed); Conflict when stale."""
        return (await self.request("POST", f"/api/v1/tasks/{quote(task_id, safe='')}/events", json_body=dict(event)))[1]

    async def plan(self) -> dict[str, Any]:
        """Each server's timeline over the horizon, with intensity curves (`GET /api/v1/plan`)."""
        return (await self.request("GET", "/api/v1/plan"))[1]

    async def plan_savings(self, finished_since: TimeArg = None) -> dict[str, Any]:
        """CO2 planned vs run-now, in total and per task state (over the tasks `list_tasks`
        would list with the same `finished_since`)."""
        params = {"finished_since": finished_since}
        return (await self.request("GET", "/api/v1/plan/savings", params=params))[1]

    async def import_grid_traces(self, csv_text: str) -> dict[str, Any]:
        """Replace the traces of the regions in a `region,ts,g_per_kwh` CSV (admin)."""
        _, body = await self.request("PUT", "/api/v1/grid/traces", data=csv_text.encode(), content_type="text/csv")
        return body

    # --- readings -------------------------------------------------------------------------

    async def post_readings(self, readings: Iterable[Reading | Mapping[str, Any]]) -> int:
        """Send one atomic batch; returns how many the backend accepted (202)."""
        batch = [reading_to_wire(r) for r in readings]
        return await self.post_readings_body(_dumps({"readings": batch}).encode())

    async def post_readings_body(self, body: bytes) -> int:
        """Send an already encoded `{"readings": [...]}` batch (the sensors pre-encode)."""
        _, answer = await self.request("POST", "/api/v1/readings", data=body)
        return int(answer.get("accepted", 0)) if isinstance(answer, dict) else 0

    async def history(
        self, server_id: str, metric: str, *, start: TimeArg = None, end: TimeArg = None, points: int | None = None
    ) -> dict[str, Any]:
        """Downsampled series: `{"metric","unit","resolution_s","points": [[ts,min,avg,max],...]}`."""
        params = {"metric": metric, "from": start, "to": end, "points": points}
        return (await self.request("GET", f"/api/v1/servers/{quote(server_id, safe='')}/history", params=params))[1]

    async def readings(
        self,
        server_id: str,
        metric: str,
        *,
        start: TimeArg = None,
        end: TimeArg = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        """One page of raw readings, newest first: `{"readings": [...], "next_cursor": ...}`."""
        params = {"metric": metric, "from": start, "to": end, "limit": limit, "cursor": cursor}
        return (await self.request("GET", f"/api/v1/servers/{quote(server_id, safe='')}/readings", params=params))[1]

    async def iter_readings(self, server_id: str, metric: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        """Every raw reading in the range, newest first, following the cursor page by page."""
        cursor = None
        while True:
            page = await self.readings(server_id, metric, cursor=cursor, **kwargs)
            for item in page.get("readings", []):
                yield item
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # --- websocket ------------------------------------------------------------------------

    def live(self, *, heartbeat: float = 20.0) -> LiveConnection:
        """The websocket: `async with api.live() as live: await live.subscribe(...); async for f in live`."""
        return LiveConnection(self, heartbeat=heartbeat)

    # --- servers, tasks and the plan as typed objects (tasker.models) -------------------------

    async def read_servers(self) -> ServerPage:
        """`list_servers`, parsed: every server and the latest readings; ModelError on garbage."""
        _, body = await self.request("GET", "/api/v1/servers")
        return ServerPage.from_json(body)

    async def read_server(self, server_id: str) -> Server:
        """`get_server`, parsed."""
        return Server.from_json(await self.get_server(server_id))

    async def read_history(
        self, server_id: str, metric: str, *, start: TimeArg = None, end: TimeArg = None, points: int | None = None
    ) -> History:
        """`history`, parsed: the metric's buckets over the range."""
        return History.from_json(await self.history(server_id, metric, start=start, end=end, points=points))

    async def register_server(self, form: Mapping[str, Any]) -> Server:
        """`create_server`, parsed: the server as stored, with its `id`."""
        return Server.from_json(await self.create_server(form))

    async def change_server(self, server_id: str, changes: Mapping[str, Any]) -> Server:
        """`update_server`, parsed: the server as now stored."""
        return Server.from_json(await self.update_server(server_id, changes))

    async def read_tasks(
        self, states: Sequence[str] = (), finished_since: TimeArg = None, server_id: str | None = None
    ) -> list[Task]:
        """`list_tasks`, parsed; ModelError when the answer is not task JSON."""
        raws = await self.list_tasks(states, finished_since, server_id)
        return [Task.from_json(raw, f"tasks[{i}]") for i, raw in enumerate(raws)]

    async def read_task(self, task_id: str) -> Task:
        """`get_task`, parsed."""
        return Task.from_json(await self.get_task(task_id))

    async def read_plan(self) -> PlanTimeline:
        """`plan`, parsed: each server's placements and the intensity curves."""
        return PlanTimeline.from_json(await self.plan())

    async def read_savings(self, finished_since: TimeArg = None) -> Savings:
        """`plan_savings`, parsed."""
        return Savings.from_json(await self.plan_savings(finished_since))


class LiveConnection:
    """One websocket connection to `/api/v1/ws`, yielding decoded server frames.

    Entering waits for the `hello` frame (kept as `.hello`); a refused token raises
    `Unauthorized`. When the socket drops, iteration raises `BackendUnavailable`; the caller
    reconnects (with its own backoff) and subscribes again.
    """

    def __init__(self, client: TaskerClient, *, heartbeat: float):
        self._client = client
        self._heartbeat = heartbeat
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self.hello: dict[str, Any] = {}

    @property
    def url(self) -> str:
        base = self._client.base_url
        return ("wss" + base[5:] if base.startswith("https") else "ws" + base[4:]) + "/api/v1/ws"

    async def __aenter__(self) -> LiveConnection:
        client = self._client
        await client.open()
        assert client._session is not None
        try:
            self._ws = await client._session.ws_connect(
                self.url, headers=client._headers(), heartbeat=self._heartbeat, autoping=True
            )
        except aiohttp.WSServerHandshakeError as exc:
            raise client._error(exc.status, exc.message, None) from None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise client.unavailable(_reason(exc)) from None
        try:
            first = await asyncio.wait_for(self._next_frame(), timeout=10.0)
        except asyncio.TimeoutError:
            await self.close()
            raise client.unavailable("no hello frame on the websocket within 10 s") from None
        except BaseException:
            await self.close()
            raise
        if first.get("type") != "hello":
            await self.close()
            raise ApiError(0, f"unexpected first websocket frame: {first.get('type')!r}")
        self.hello = first
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()

    async def send(self, frame: Mapping[str, Any]) -> None:
        """Send one client frame (subscribe, ping, chat.*)."""
        if self._ws is None or self._ws.closed:
            raise self._client.unavailable("the websocket is closed")
        try:
            await self._ws.send_str(_dumps(frame))
        except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
            raise self._client.unavailable(f"the websocket dropped ({_reason(exc)})") from None

    async def subscribe(self, servers: Sequence[str] | str = "*", metrics: Sequence[str] = ("power", "co2")) -> None:
        """Replace the subscription: server ids (or "*" for all) and metric names."""
        await self.send(
            {
                "type": "subscribe",
                "servers": servers if isinstance(servers, str) else list(servers),
                "metrics": list(metrics),
            }
        )

    async def ping(self) -> None:
        await self.send({"type": "ping"})

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            yield await self._next_frame()

    async def _next_frame(self) -> dict[str, Any]:
        """The next decoded JSON frame; raises when the socket is gone or the token refused."""
        ws = self._ws
        assert ws is not None
        while True:
            try:
                msg = await ws.receive()
            except (aiohttp.ClientError, asyncio.TimeoutError, ConnectionError) as exc:
                raise self._client.unavailable(f"the websocket dropped ({_reason(exc)})") from None
            if msg.type == aiohttp.WSMsgType.TEXT:
                try:
                    frame = json.loads(msg.data)
                except ValueError:
                    continue  # a garbled frame is not worth dropping the connection for
                if not isinstance(frame, dict):
                    continue
                if frame.get("type") == "error" and frame.get("code") == "unauthorized":
                    raise Unauthorized(401, str(frame.get("message") or "the websocket refused the token"))
                if frame.get("type") == "error" and frame.get("code") == "password_change_required":
                    raise Forbidden(403, str(frame.get("message") or "password change required"))
                return frame
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
                code = ws.close_code
                if code == 4401:
                    raise Unauthorized(401, "the websocket refused the token")
                raise self._client.unavailable(f"the websocket was closed (code {code})")
            if msg.type == aiohttp.WSMsgType.ERROR:
                raise self._client.unavailable(f"the websocket dropped ({_reason(ws.exception() or Exception())})")
            # BINARY/PING/PONG: not part of the protocol; ignore.


def _items(body: Any, key: str) -> list[Any]:
    """The list under `key` of an answer (empty when absent); ModelError when it is no list."""
    items = body.get(key, []) if isinstance(body, Mapping) else []
    if not isinstance(items, list):
        raise ModelError(f"{key}: expected a list, got {type(items).__name__}")
    return items


def _sessions(body: Any) -> list[SessionInfo]:
    return [SessionInfo.from_json(raw, f"sessions[{i}]") for i, raw in enumerate(_items(body, "sessions"))]


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)
