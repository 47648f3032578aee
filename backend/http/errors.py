"""Every failure as a JSON body `{"error": "...", "details": [...]}`; never a traceback.

Expected failures (bad input, missing credentials, a service down) map to their status codes
here, so handlers simply raise the core's exceptions.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from aiohttp import web

from backend.http.context import CONTEXT
from backend.http.json_body import json_response
from backend.ports import Conflict, NotFound, Unavailable
from backend.services.errors import Forbidden, InvalidField, Unauthorized
from backend.services.readings import BatchRejected
from backend.services.servers import FormRejected

log = logging.getLogger(__name__)


def json_error(
    status: int, message: str, details: list[Any] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body: dict[str, Any] = {"error": message}
    if details:
        body["details"] = details
    return json_response(body, status=status, headers=headers)


class BodyTimeout(TimeoutError):
    """The client did not send its request body in time (408). A TimeoutError, so that aiohttp,
    draining the rest of the body after the answer, gives up at once and closes the connection."""

    def __init__(self, allowed_s: float) -> None:
        super().__init__(f"request body not received within {allowed_s:g} s")


CLIENT_CLOSED = 499
"""Status recorded (never sent) for a request whose client hung up, as nginx counts them."""
TOO_DEEP = "is nested too deeply (at most 1,024 levels)"


async def read_json(request: web.Request) -> Any:
    """The request body as JSON; 400 saying why when it is not (413 raised by aiohttp if too big)."""
    raw = await request.read()
    if not raw:
        raise InvalidField("body", "is empty; expected JSON")
    try:
        # orjson: several times faster on every POST of readings. What it refuses goes to the
        # standard library, which reads more (NaN and Infinity literals, which validation then
        # names per item; UTF-16/32) and words the error messages. (Integers beyond 64 bits
        # come back as floats of the same size, not ints; no field takes such numbers.)
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            raise InvalidField("body", TOO_DEEP) from None
    try:
        return json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidField("body", "is not UTF-8 text") from None
    except ValueError as exc:
        raise InvalidField("body", f"is not valid JSON ({exc})") from None
    except RecursionError:  # nesting orjson let through (within its limit) yet deeper than ours
        raise InvalidField("body", TOO_DEEP) from None


def _route_label(request: web.Request) -> str:
    info = request.match_info
    route = getattr(info, "route", None)
    resource = getattr(route, "resource", None)
    return resource.canonical if resource is not None else "unmatched"


def _to_response(request: web.Request, exc: BaseException) -> web.StreamResponse:
    if isinstance(exc, BatchRejected):
        return json_error(exc.status, str(exc), [d.as_json() for d in exc.details])
    if isinstance(exc, FormRejected):
        return json_error(400, str(exc), exc.details)
    if isinstance(exc, InvalidField):
        return json_error(400, f"{exc.field} {exc.reason}", [{"field": exc.field, "reason": exc.reason}])
    if isinstance(exc, Unauthorized):
        return json_error(401, str(exc), headers={"WWW-Authenticate": 'Bearer realm="tasker"'})
    if isinstance(exc, Forbidden):
        return json_error(403, str(exc))
    if isinstance(exc, NotFound):
        return json_error(404, str(exc))
    if isinstance(exc, Conflict):
        return json_error(409, str(exc))
    if isinstance(exc, Unavailable):
        log.warning("%s %s: 503 %s", request.method, request.path, exc)
        return json_error(503, str(exc), headers={"Retry-After": "1"})
    if isinstance(exc, web.HTTPException):
        if exc.status == 413:
            return json_error(413, f"request body is over the limit of {request.client_max_size} bytes")
        return json_error(
            exc.status, exc.reason, headers={k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        )
    if isinstance(exc, BodyTimeout):
        log.info("%s %s: 408 %s", request.method, request.path, exc)
        response = json_error(408, str(exc), [{"field": "body", "reason": "was not received in time"}])
        response.force_close()
        return response
    if isinstance(exc, ConnectionResetError):
        # The client hung up (e.g. mid-body): nobody is there to answer and nothing failed here.
        log.info("%s %s: the client closed the connection before the request was read", request.method, request.path)
        return json_error(CLIENT_CLOSED, "the client closed the connection")
    log.exception("%s %s failed unexpectedly", request.method, request.path, exc_info=exc)
    return json_error(500, "internal error; the backend log has the details")


@web.middleware
async def error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise  # redirects and the like are not failures
        response = _to_response(request, exc)
    except Exception as exc:  # noqa: BLE001 - the one place that turns failures into JSON
        response = _to_response(request, exc)
    request.app[CONTEXT].telemetry.http_requests.inc(route=_route_label(request), status=str(response.status))
    return response
