"""Fixtures of the TUI tests: an isolated config dir, a real embedded backend, Pilot helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tasker.client import TaskerClient
from tasker_tui.app import TaskerApp
from tasker_tui.local_stack import LocalStack
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.widgets.fleet_table import FleetTable
from tests.tui.screen_text import screen_text, screen_words

SIZE = (120, 40)
SYSADMIN = ("alice", "alice-pass-123")
ENGINEER = ("bob", "bob-pass-1234")


@pytest.fixture(autouse=True)
def config_home(tmp_path, monkeypatch) -> Path:
    """Sessions the TUI saves go to a temporary XDG config dir, never the user's."""
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("TASKER_TOKEN", raising=False)
    return home


@dataclass
class RealBackend:
    """A running `tasker backend` (embedded mode) with a sysadmin, an engineer and an ingest key."""

    stack: LocalStack
    url: str
    ingest_key: str

    def client(self, token: str | None = None) -> TaskerClient:
        return TaskerClient(self.url, token)

    async def admin(self) -> TaskerClient:
        """A client logged in as the sysadmin (close it after use)."""
        client = self.client()
        await client.login(*SYSADMIN)
        return client


@pytest.fixture(scope="module")
def backend(tmp_path_factory) -> Iterator[RealBackend]:
    """One real backend per test module, as a child process over temporary SQLite files."""
    stack = LocalStack(tmp_path_factory.mktemp("stack"))
    try:
        key = stack.provision(
            [(SYSADMIN[0], "sysadmin", SYSADMIN[1]), (ENGINEER[0], "engineer", ENGINEER[1])], "tui-tests"
        )
        url = stack.start_backend()
        assert key is not None
        yield RealBackend(stack, url, key)
    finally:
        stack.close()


async def wait_until(pilot, condition: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    """Let the app run until `condition()` holds; fail with the screen's text when it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what or condition}; the screen shows:\n{screen_text(pilot.app)}")


async def wait_for_text(pilot, text: str, timeout: float = 10.0) -> None:
    """Wait until `text` is on screen (whitespace-insensitive, so wrapped lines match)."""
    wanted = " ".join(text.split())
    await wait_until(pilot, lambda: wanted in screen_words(pilot.app), timeout, repr(text))


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[("space" if c == " " else c) for c in text])


async def login(pilot, username: str, password: str) -> None:
    await wait_until(pilot, lambda: pilot.app.screen.query("#username"), what="the login form")
    await type_text(pilot, username)
    await pilot.press("tab")
    await type_text(pilot, password)
    await pilot.press("enter")


def fleet_names(app: TaskerApp) -> list[str]:
    """Names of the fleet table's rows, top to bottom."""
    table = app.screen.query_one(FleetTable)
    return [app.fleet.servers[sid].name for sid in table.shown_ids]


async def register(backend, name: str, region: str = "eu-west", source: str = "wind", tags=("test",)) -> dict:
    """Register a server through the API (as a second user would), not through the TUI."""
    async with await backend.admin() as api:
        return await api.create_server(
            {
                "name": name,
                "location": {"region": region, "site": ""},
                "energy_source": source,
                "idle_watts": 100,
                "max_watts": 400,
                "cores": 16,
                "tags": list(tags),
            }
        )


async def logged_in_app(backend, pilot) -> None:
    """Log in as the sysadmin and wait for the live fleet screen."""
    await login(pilot, *SYSADMIN)
    await wait_until(
        pilot,
        lambda: isinstance(pilot.app.screen, FleetScreen) and pilot.app.link_status.live,
        what="the live fleet screen",
    )


async def select_server(pilot, server_id: str) -> FleetTable:
    """Put the fleet table's cursor on a server with the arrow keys, as a user would."""
    table = pilot.app.screen.query_one(FleetTable)
    await wait_until(pilot, lambda: server_id in table.shown_ids, what="the server's row")
    await pilot.press("home")
    for _ in range(table.row_count):
        if table.selected_server_id == server_id:
            return table
        await pilot.press("down")
    raise AssertionError(f"the cursor never reached {server_id}")
