"""The OpenAPI document is the API: every route a backend serves is an operation of it and every
operation is a route; it is served without credentials; docs/openapi.json and docs/api.md say
the same."""

from __future__ import annotations

import json
import re
from pathlib import Path

import aiohttp
import pytest

from backend.bootstrap import ROLES
from backend.http.app import build_app
from backend.http.context import ApiContext
from backend.http.openapi import OPENAPI_PATH, document
from backend.services.telemetry import Telemetry
from tests.integration.backend_rig import running_backend

REPO = Path(__file__).resolve().parents[2]
METHODS = ("get", "put", "post", "delete", "patch")


def documented() -> set[tuple[str, str]]:
    return {
        (method.upper(), path) for path, item in document()["paths"].items() for method in item if method in METHODS
    }


def served() -> set[tuple[str, str]]:
    """(method, path) of every route of a backend running all roles (HEAD comes with GET)."""
    app = build_app(ApiContext(Telemetry()), ROLES)
    return {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }


def test_every_route_is_documented_and_every_operation_is_a_route():
    assert served() - documented() == set(), "routes missing from backend/http/openapi.py"
    assert documented() - served() == set(), "operations in backend/http/openapi.py that no route serves"


def test_every_operation_has_an_id_security_and_responses():
    ids = []
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            ids.append(operation["operationId"])
            assert operation["responses"], (method, path)
            # A route without credentials says so; every other one inherits the session scheme.
            assert "security" in operation or document()["security"], (method, path)
    assert len(ids) == len(set(ids)), "operationIds repeat"


def test_docs_openapi_json_is_the_document_written_out():
    written = json.loads((REPO / "docs" / "openapi.json").read_text())
    assert written == json.loads(json.dumps(document())), (
        "docs/openapi.json is stale: python -m backend.http.openapi > docs/openapi.json"
    )


def test_docs_api_md_lists_every_operation():
    text = (REPO / "docs" / "api.md").read_text()
    listed = set(re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/[^`]*)`", text, flags=re.MULTILINE))
    assert listed == documented(), (
        f"missing from docs/api.md: {sorted(documented() - listed)}; not operations: {sorted(listed - documented())}"
    )


async def test_the_document_is_served_without_credentials(embedded):
    async with running_backend(embedded) as (_, url), aiohttp.ClientSession() as http:
        async with http.get(url + OPENAPI_PATH) as response:
            assert response.status == 200
            assert response.content_type == "application/json"
            body = await response.json()
    assert body["openapi"].startswith("3.1")
    assert body == json.loads(json.dumps(document()))


@pytest.mark.parametrize(
    "schema, field, expected",
    [
        ("ReadingBatch", ("properties", "readings", "maxItems"), 10_000),
        ("History", ("properties", "points", "maxItems"), 10_000),
        ("ServerForm", ("properties", "pue", "maximum"), 5),
    ],
)
def test_limits_are_the_codes_own(schema, field, expected):
    node = document()["components"]["schemas"][schema]
    for key in field:
        node = node[key]
    assert node == expected
