"""Snapshots of the command line and of a form naming every mistake, at 80x24 and 160x48, over
the fake client with a frozen clock (see `test_snapshots.py` for updating them)."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tasker_tui import format as fmt
from tasker_tui.command_line import CommandLineScreen
from tasker_tui.screens.server_form import ServerFormScreen
from tests.tui.conftest import type_text, wait_until
from tests.tui.helpers_fake import BASE_MS, fleet_ready, snapshot_of


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


async def command_line_error(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("colon")
    await wait_until(pilot, lambda: isinstance(app.screen, CommandLineScreen) and app.screen.ready, what=":")
    await type_text(pilot, "server web")
    await pilot.press("enter")
    await wait_until(
        pilot, lambda: "could be" in str(app.screen.query_one("#command-message").render()), what="the error"
    )


async def form_every_mistake(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("a")
    await wait_until(pilot, lambda: isinstance(app.screen, ServerFormScreen) and app.screen.ready, what="form")
    for field, value in (("name", "web 9"), ("pue", "0.5"), ("idle_watts", "300"), ("max_watts", "200")):
        app.screen.query_one(f"#field-{field}", Input).value = value  # typing is tested elsewhere
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: app.screen.query_one("#row-max_watts").has_class("-invalid"), what="errors")
    await pilot.pause(0.1)


SCENARIOS = {"command_line_error": command_line_error, "form_every_mistake": form_every_mistake}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_screen(snap_compare, scenario, size):
    assert snapshot_of(snap_compare, SCENARIOS[scenario], size)
