"""Inputs that used to give a 500 and a traceback, sent as an attacker would, against a real
embedded backend: each gets a 4xx with a reason, or is not an error at all, and nothing reaches
the log as a traceback."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.integration.backend_rig import running_backend, user_session

pytestmark = pytest.mark.timeout(60)

DEEP = "[" * 5_000 + "]" * 5_000


def server_errors(backend) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in backend.telemetry.http_requests.samples() if 'status="500"' in line
    )


@pytest.mark.parametrize(
    "path, with_session",
    [
        ("/api/v1/auth/login", False),
        ("/api/v1/readings", True),
        ("/api/v1/servers", True),
    ],
)
async def test_json_nested_5000_deep_is_a_400_naming_the_body(embedded, caplog, path, with_session):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        headers = {"Content-Type": "application/json", **(api.headers if with_session else {})}
        async with http.post(url + path, data=DEEP, headers=headers) as response:
            body = await response.json()
        assert response.status == 400, body
        assert body["details"] == [{"field": "body", "reason": "is nested too deeply (at most 1,024 levels)"}]
        assert server_errors(backend) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_client_that_hangs_up_mid_body_is_no_server_error(embedded, caplog):
    async with running_backend(embedded) as (backend, url), aiohttp.ClientSession() as http:
        api = await user_session(backend, http, url)
        where = urlsplit(url)
        for _ in range(3):
            reader, writer = await asyncio.open_connection(where.hostname, where.port)
            writer.write(
                b"POST /api/v1/readings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: {api.headers['Authorization']}\r\n".encode()
                + b"Content-Length: 100000\r\n\r\n"
                + b'{"readings": ['
                + b" " * 500
            )
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()
            await writer.wait_closed()
        await asyncio.sleep(0.5)
        # The backend still answers, and counted no 500 nor logged a traceback.
        status, _ = await api.call("GET", "/api/v1/servers")
        assert status == 200
        assert server_errors(backend) == 0
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR], [
            r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
        ]
