"""Failed logins slow down the (username, client address) that made them, and nobody else,
over HTTP against a real embedded backend. Other client addresses are other loopback addresses (127.0.0.2, ...), which
Linux routes to the backend listening on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from backend.services.login_guard import FREE_FAILURES
from tests.integration.backend_rig import running_backend

pytestmark = pytest.mark.timeout(60)

PASSWORDS = {"erin": "erin's long password", "frank": "frank's long password"}


@pytest.fixture
async def backend_url(embedded) -> AsyncIterator[str]:
    async with running_backend(embedded) as (backend, url):
        for username, password in PASSWORDS.items():
            await backend.auth.add_user(username, "sysadmin", password)
        yield url


async def attempt(url: str, client: str, username: str, password: str) -> tuple[int, dict, dict]:
    """One login from the loopback address `client`: (status, JSON body, headers)."""
    connector = aiohttp.TCPConnector(local_addr=(client, 0))
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{url}/api/v1/auth/login", json={"username": username, "password": password}) as response:
            return response.status, await response.json(), dict(response.headers)


async def fail(url: str, client: str, username: str, times: int) -> None:
    for _ in range(times):
        status, _, _ = await attempt(url, client, username, "not the password")
        assert status == 401


async def test_guessing_slows_only_the_guessing_pair_with_a_growing_delay(backend_url):
    url = backend_url
    await fail(url, "127.0.0.1", "erin", FREE_FAILURES)

    status, body, headers = await attempt(url, "127.0.0.1", "erin", PASSWORDS["erin"])
    assert status == 429, "the right password was checked straight after the free failures"
    assert body["error"] == ("too many failed logins for user 'erin' from this address (3 lately); try again in 1 s")
    assert headers["Retry-After"] == "1"

    # Five wrong passwords used to lock erin out everywhere, and everyone at the address.
    status, body, _ = await attempt(url, "127.0.0.2", "erin", PASSWORDS["erin"])
    assert status == 200 and body["username"] == "erin", "erin was locked out by someone else's guesses"
    status, body, _ = await attempt(url, "127.0.0.1", "frank", PASSWORDS["frank"])
    assert status == 200 and body["username"] == "frank", "frank was locked out by his NAT neighbour"

    await asyncio.sleep(1.1)
    status, _, _ = await attempt(url, "127.0.0.1", "erin", "still not the password")
    assert status == 401
    status, body, headers = await attempt(url, "127.0.0.1", "erin", PASSWORDS["erin"])
    assert status == 429 and headers["Retry-After"] == "2", body


async def test_unknown_usernames_sprayed_from_an_address_do_not_lock_it(backend_url):
    url = backend_url
    for i in range(12):
        await fail(url, "127.0.0.5", f"guess-{i}", 1)
    status, body, _ = await attempt(url, "127.0.0.5", "frank", PASSWORDS["frank"])
    assert status == 200 and body["username"] == "frank"
