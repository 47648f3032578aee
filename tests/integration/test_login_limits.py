"""Failed logins are limited per username and per client address, over HTTP against a real
embedded backend. Other client addresses are other loopback addresses (127.0.0.2, ...), which
Linux routes to the backend listening on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from backend.services.auth import LOGIN_FAILURE_WINDOW_S
from tests.integration.backend_rig import embedded, running_backend  # noqa: F401 - a fixture

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
        async with http.post(f"{url}/api/v1/auth/login",
                             json={"username": username, "password": password}) as response:
            return response.status, await response.json(), dict(response.headers)


async def fail(url: str, client: str, username: str, times: int) -> None:
    for _ in range(times):
        status, _, _ = await attempt(url, client, username, "not the password")
        assert status == 401


async def test_five_failures_block_the_username_from_anywhere_and_the_address_for_anyone(backend_url):
    url = backend_url
    await fail(url, "127.0.0.1", "erin", 5)

    status, body, headers = await attempt(url, "127.0.0.1", "erin", PASSWORDS["erin"])
    assert status == 429, "the right password was checked after five failures"
    assert body["error"].startswith("too many failed logins for user 'erin' (5 in the last 5 minutes); "
                                    "try again in ")
    assert 1 <= int(headers["Retry-After"]) <= LOGIN_FAILURE_WINDOW_S
    assert body["error"].endswith(f"{headers['Retry-After']} s")

    status, body, _ = await attempt(url, "127.0.0.2", "erin", PASSWORDS["erin"])
    assert status == 429 and "for user 'erin'" in body["error"], "another address got erin in"

    status, body, _ = await attempt(url, "127.0.0.1", "frank", PASSWORDS["frank"])
    assert status == 429 and "from 127.0.0.1" in body["error"], "the guessing address got frank in"

    status, body, _ = await attempt(url, "127.0.0.2", "frank", PASSWORDS["frank"])
    assert status == 200 and body["username"] == "frank", "an unrelated user at another address was refused"


async def test_a_success_clears_the_usernames_failures(backend_url):
    url = backend_url
    await fail(url, "127.0.0.1", "erin", 4)
    status, _, _ = await attempt(url, "127.0.0.2", "erin", PASSWORDS["erin"])
    assert status == 200
    await fail(url, "127.0.0.3", "erin", 5)  # five more: without the reset the fifth would be 429
    status, body, _ = await attempt(url, "127.0.0.4", "erin", PASSWORDS["erin"])
    assert status == 429 and "for user 'erin'" in body["error"]


async def test_unknown_usernames_count_against_the_address(backend_url):
    url = backend_url
    for name in ("ann", "bob", "cid", "dot", "eve"):
        await fail(url, "127.0.0.5", name, 1)
    status, body, _ = await attempt(url, "127.0.0.5", "frank", PASSWORDS["frank"])
    assert status == 429 and "from 127.0.0.5" in body["error"]
    status, _, _ = await attempt(url, "127.0.0.6", "frank", PASSWORDS["frank"])
    assert status == 200
