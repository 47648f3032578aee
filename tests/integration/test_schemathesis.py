"""Every operation of the OpenAPI document, called by schemathesis against a real embedded backend
with inputs made from the document (valid ones and broken ones): no answer is a 500, none breaks
the document (status, content type, body schema). Stateful sequences along the document's links
are not run: against this live backend hypothesis reported them as a flaky strategy under load.

The backend runs on a loop of its own in a thread, since schemathesis calls it synchronously.
Calls are made as an admin; posting readings with an ingest key, as sensors do.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import schemathesis
from aiohttp.http_exceptions import HttpProcessingError
from hypothesis import HealthCheck, Phase, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.bootstrap import Backend, serving
from backend.http.openapi import document
from tasker.config import Settings

pytestmark = pytest.mark.timeout(600)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_EXAMPLES = 20
"""Per operation and generation mode: about a minute for the whole API on a busy 2-core machine."""
PHASES = [Phase.explicit, Phase.generate]
"""No replaying and shrinking: against a live backend whose state each call changes, a replay
draws differently and hypothesis reports its strategy as flaky instead of the failure."""
KEY_OPERATIONS = {"postReadings"}
"""Operations called with the ingest key, as sensors call them."""


@dataclass
class LiveBackend:
    url: str
    admin_token: str
    ingest_key: str
    errors: list[logging.LogRecord]
    spare_tokens: list[str] = field(default_factory=list)
    """Sessions of another user, to log out: logging out the admin would leave every later call a 401."""

    def headers(self, case) -> dict[str, str]:
        operation_id = case.operation.definition.raw.get("operationId")
        # The admin's own password, sessions and account stay as they are: a fuzzed call on them
        # lands on another user.
        if (case.path_parameters or {}).get("username") == ADMIN:
            case.path_parameters["username"] = "fuzz-victim"
        if operation_id == "logout" and self.spare_tokens:
            return {"Authorization": f"Bearer {self.spare_tokens.pop()}"}
        secret = self.ingest_key if operation_id in KEY_OPERATIONS else self.admin_token
        return {"Authorization": f"Bearer {secret}"}

    def login(self, username: str = "fuzz-admin") -> str:
        answer = requests.post(
            f"{self.url}/api/v1/auth/login", json={"username": username, "password": PASSWORD}, timeout=30
        )
        answer.raise_for_status()
        return answer.json()["token"]


ADMIN = "fuzz-admin"


PASSWORD = secrets.token_urlsafe(16)


class ErrorLog(logging.Handler):
    """Log records at ERROR and above from the backend: a traceback is a bug even without a 500."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # aiohttp logs a request it cannot parse (a request line over 8 KiB) at ERROR, then
        # answers it 400 before any route: not a fault of the backend.
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "aiohttp.server" and isinstance(exc, HttpProcessingError):
            return
        self.records.append(record)


@pytest.fixture(scope="module")
def live_backend(tmp_path_factory) -> Iterator[LiveBackend]:
    """An embedded backend running every role on its own loop in a thread, with an admin, an
    ingest key and one registered server."""
    tmp: Path = tmp_path_factory.mktemp("schemathesis")
    loop = asyncio.new_event_loop()
    ready: Future[LiveBackend] = Future()
    stop = asyncio.Event()
    errors = ErrorLog()

    async def run() -> None:
        settings_ = Settings(timeseries_url=f"sqlite:///{tmp}/ts.db", registry_url=f"sqlite:///{tmp}/registry.db")
        backend = Backend.create(settings_)
        try:
            await backend.start(give_up_after_s=20)
            async with serving(backend, "127.0.0.1", 0) as url:
                assert backend.auth is not None
                for name, role in ((ADMIN, "admin"), ("fuzz-spare", "sysadmin"), ("fuzz-victim", "sysadmin")):
                    await backend.auth.add_user(name, role, PASSWORD)
                _, key = await backend.auth.create_ingest_key("schemathesis", "fuzz-admin")
                ready.set_result(LiveBackend(url, "", key, errors.records))
                await stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise
        finally:
            await backend.close()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), name="schemathesis-backend")
    logging.getLogger().addHandler(errors)
    thread.start()
    try:
        live = ready.result(timeout=60)
        live.admin_token = live.login()
        live.spare_tokens = [live.login("fuzz-spare") for _ in range(MAX_EXAMPLES * 3)]
        server = {
            "name": "fuzz-target",
            "location": {"region": "eu-west"},
            "energy_source": "wind",
            "idle_watts": 80,
            "max_watts": 400,
            "cores": 16,
        }
        requests.post(
            f"{live.url}/api/v1/servers",
            json=server,
            headers={"Authorization": f"Bearer {live.admin_token}"},
            timeout=30,
        ).raise_for_status()
        yield live
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        logging.getLogger().removeHandler(errors)
        loop.close()


@pytest.fixture(scope="module")
def api_schema(live_backend: LiveBackend):
    schema = schemathesis.openapi.from_dict(document())
    schema.config.update(base_url=live_backend.url)
    schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=MAX_EXAMPLES)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, phases=PHASES, suppress_health_check=list(HealthCheck)
)
def test_every_operation_answers_within_its_contract(case, live_backend: LiveBackend):
    case.call_and_validate(headers=live_backend.headers(case), checks=CHECKS, timeout=30)
    assert not live_backend.errors, [r.getMessage() for r in live_backend.errors]
