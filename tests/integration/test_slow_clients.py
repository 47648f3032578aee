"""Slow clients (slowloris), sent as the attack against a real embedded backend with short
timeouts from its settings: a request head or body trickled a byte at a time is cut off (the
body with a 408 saying why), while a normal client is served meanwhile."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web

from backend.bootstrap import Backend
from backend.http.app import ClientTimeouts, build_app
from tests.integration.backend_rig import Mode

pytestmark = pytest.mark.timeout(60)

HEADER_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
TRICKLE_S = 0.1
"""One byte per TRICKLE_S: the attack would need far longer than the timeouts to finish."""


@asynccontextmanager
async def short_timeouts(mode: Mode) -> AsyncIterator[tuple[Backend, str, int]]:
    """An embedded backend allowing 1 s for a request head and 1 s per MiB of body: (backend,
    host, port). Its app is built with those timeouts, as `tasker backend` builds it with
    `ClientTimeouts.from_settings` (TASKER_HEADER_TIMEOUT, TASKER_BODY_TIMEOUT)."""
    backend = Backend.create(mode.settings)
    await backend.start(give_up_after_s=20)
    app = build_app(
        backend.context,
        backend.roles,
        backend.dispatcher,
        timeouts=ClientTimeouts(header_s=HEADER_TIMEOUT_S, body_s_per_mib=BODY_TIMEOUT_S),
    )
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield backend, host, port
    finally:
        await runner.cleanup()
        await backend.close()


async def read_answer(reader: asyncio.StreamReader) -> bytes:
    """One HTTP answer (head and Content-Length body) as soon as it arrives; b"" if the
    connection closes first. Read at once, before a reset (the backend closing while bytes
    still come in) could throw it away."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return b""
    length = re.search(rb"Content-Length: (\d+)", head)
    return head + (await reader.readexactly(int(length.group(1))) if length else b"")


async def closed(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), 5.0) == b""
    except ConnectionError:
        return True


async def trickle(host: str, port: int, head: bytes, slow: bytes) -> tuple[int, bytes]:
    """Send `head` at once, then `slow` one byte per TRICKLE_S until the backend answers or
    closes: (bytes of `slow` sent, the answer). Asserts the connection is closed then."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(head)
    answer = asyncio.ensure_future(read_answer(reader))
    sent = 0
    try:
        for byte in slow:
            if answer.done():
                break
            writer.write(bytes([byte]))
            try:
                await writer.drain()
            except ConnectionError:
                break
            sent += 1
            await asyncio.wait([answer], timeout=TRICKLE_S)
        got = await asyncio.wait_for(answer, 5.0)
        assert await closed(reader), "the backend kept the connection open"
        return sent, got
    finally:
        answer.cancel()
        writer.close()


async def normal_client_is_served(host: str, port: int) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://{host}:{port}/healthz") as response:
            assert response.status == 200


async def test_request_heads_trickled_a_byte_at_a_time_are_cut_off(embedded):
    slow = b"X-Slow: " + b"a" * 2_000  # 200 s at this pace
    async with short_timeouts(embedded) as (_, host, port):
        attacks = [
            asyncio.create_task(trickle(host, port, b"GET /api/v1/servers HTTP/1.1\r\nHost: x\r\n", slow))
            for _ in range(5)
        ]
        await asyncio.sleep(HEADER_TIMEOUT_S / 2)
        await normal_client_is_served(host, port)
        for sent, answer in await asyncio.gather(*attacks):
            # Closed without an answer: nothing of the request was read, so nothing is owed.
            assert answer == b"" and sent < len(slow) // 4, (sent, answer)
        await normal_client_is_served(host, port)


@pytest.mark.parametrize("path", ["/api/v1/auth/login", "/api/v1/readings"])
async def test_a_body_trickled_a_byte_at_a_time_gets_a_408_and_the_connection_closes(embedded, path):
    slow = b'{"readings": [' + b" " * 2_000
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(slow)}\r\n\r\n"
    ).encode()
    async with short_timeouts(embedded) as (backend, host, port):
        if path == "/api/v1/readings":
            assert backend.auth is not None
            await backend.auth.add_user("sensor-owner", "sysadmin", "a password of 20 chars")
            async with aiohttp.ClientSession() as http:
                async with http.post(
                    f"http://{host}:{port}/api/v1/auth/login",
                    json={"username": "sensor-owner", "password": "a password of 20 chars"},
                ) as r:
                    token = (await r.json())["token"]
            head = head.replace(b"\r\n\r\n", f"\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        attacks = [asyncio.create_task(trickle(host, port, head, slow)) for _ in range(3)]
        await asyncio.sleep(BODY_TIMEOUT_S / 2)
        await normal_client_is_served(host, port)
        for sent, answer in await asyncio.gather(*attacks):
            status_line, _, rest = answer.partition(b"\r\n")
            assert status_line == b"HTTP/1.1 408 Request Timeout", answer[:300]
            headers, _, body = rest.partition(b"\r\n\r\n")
            assert b"Connection: close" in headers
            assert json.loads(body)["error"] == f"request body not received within {BODY_TIMEOUT_S:g} s"
            assert sent < len(slow) // 4


async def test_a_body_sent_in_time_is_served_as_usual(embedded):
    async with short_timeouts(embedded) as (backend, host, port):
        assert backend.auth is not None
        await backend.auth.add_user("patient", "admin", "a password of 20 chars")
        body = json.dumps({"username": "patient", "password": "a password of 20 chars"}).encode()
        head = (
            f"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Connection: close\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + body)
        answer = await reader.read()
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 OK"), answer[:300]
