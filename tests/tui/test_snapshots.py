"""Snapshots of the main screens at 80x24 and 160x48, over deterministic data (fake client,
frozen clock). Update after a deliberate change with `pytest tests/tui/test_snapshots.py --snapshot-update`
and look at the SVGs under `__snapshots__/` before committing them."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tasker_tui import format as fmt
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.help import HelpScreen
from tasker_tui.screens.status import StatusScreen
from tests.tui.conftest import type_text, wait_until
from tests.tui.helpers_fake import BASE_MS, fake_app, fleet_ready

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


def steady_cursors(app) -> None:
    """Stop text cursors blinking, so the picture does not depend on when it is taken."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


@SIZES
def test_login(snap_compare, size):
    app, _ = fake_app()

    async def run_before(pilot):
        await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")
        steady_cursors(app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_fleet(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("s", "s", "s", "S")  # sorted by power, highest first

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_fleet_filtered(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("slash")
        await type_text(pilot, "prod web")
        steady_cursors(app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_detail(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.series, what="history")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_register_form_with_a_backend_error(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen.query("#field-name"), what="form")
        await type_text(pilot, "web-ams-1")
        for field, value in (("idle_watts", "300"), ("max_watts", "200"), ("cores", "16")):
            app.screen.query_one(f"#field-{field}").focus()
            await type_text(pilot, value)
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen.query_one("#row-max_watts").has_class("-invalid"), what="error")
        steady_cursors(app)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_raw_readings(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, StatusScreen) and app.screen.page_rows, what="rows")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_help(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_offline_banner(snap_compare, size):
    app, client = fake_app()

    async def run_before(pilot):
        await fleet_ready(pilot, client)
        client.drop()
        await wait_until(pilot, lambda: app.link_status.state == "down", what="offline")
        # Retries run on a jittered timer; stop them and pin the state for a stable picture.
        from tasker_tui.live_link import LinkStatus

        app.workers.cancel_group(app, "live")
        await pilot.pause(0.1)
        app.link_status = LinkStatus("down", "cannot reach the backend at http://fake:8470: connection refused", 3, None)
        app.tick()

    assert snap_compare(app, terminal_size=size, run_before=run_before)
