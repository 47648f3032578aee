"""Snapshots of the main screens at 80x24 and 160x48, over deterministic data (fake client,
frozen clock). After a deliberate change: `pytest tests/tui/test_snapshots.py --snapshot-update`,
then look at the SVGs under `__snapshots__/` before committing them."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tasker_tui import format as fmt
from tasker_tui.live_link import LinkStatus
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.help import HelpScreen
from tasker_tui.screens.raw_readings import RawReadingsScreen
from tests.tui.conftest import wait_until
from tests.tui.helpers_fake import BASE_MS, fleet_ready, snapshot_of


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


async def login_form(pilot, app, client):
    await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")


async def fleet_by_power(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("W")  # sorted by power, highest first


async def fleet_filtered(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("slash")
    app.screen.query_one("#filter", Input).value = "prod web"  # typing is tested elsewhere; this is layout
    await pilot.pause(0.1)


async def detail(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("down", "enter")
    await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.series, what="history")
    await pilot.pause(0.2)


async def form_with_backend_error(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("a")
    await wait_until(pilot, lambda: app.screen.query("#field-name"), what="form")
    for field, value in (("name", "web-ams-1"), ("idle_watts", "300"), ("max_watts", "200"), ("cores", "16")):
        app.screen.query_one(f"#field-{field}", Input).value = value  # typing is tested elsewhere
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: app.screen.query_one("#row-max_watts").has_class("-invalid"), what="error")


async def raw_readings(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("r")
    await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen) and app.screen.page_rows, what="rows")


async def help_keys(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("question_mark")
    await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")


async def offline_banner(pilot, app, client):
    await fleet_ready(pilot, client)
    client.drop()
    await wait_until(pilot, lambda: app.link_status.state == "down", what="offline")
    # Retries run on a jittered timer; stop them and pin the state for a stable picture.
    app.workers.cancel_group(app, "live")
    await pilot.pause(0.1)
    app.link_status = LinkStatus("down", "cannot reach the backend at http://fake:8470: connection refused", 3, None)
    app.tick()


def with_tasks(client):
    client.add_task("render-frames", cores=8, duration_s=7200, interruptible=True)
    client.add_task("nightly-backup", cores=4, duration_s=3600)
    client.add_task("[/]", cores=2, duration_s=1800)
    client.add_task("too-big", cores=500)
    client.schedule()


async def tasks_table(pilot, app, client):
    with_tasks(client)
    await fleet_ready(pilot, client)
    await pilot.press("t")
    await wait_until(pilot, lambda: app.board.loaded and app.board.savings and app.board.plan, what="tasks")
    await pilot.pause(0.2)


async def plan_view(pilot, app, client):
    with_tasks(client)
    await fleet_ready(pilot, client)
    await pilot.press("p")
    await wait_until(pilot, lambda: app.board.plan and app.board.savings and app.board.loaded, what="plan")
    await pilot.pause(0.3)


SCENARIOS = {
    "login": login_form,
    "fleet": fleet_by_power,
    "fleet_filtered": fleet_filtered,
    "detail": detail,
    "form_error": form_with_backend_error,
    "raw_readings": raw_readings,
    "help": help_keys,
    "offline": offline_banner,
    "tasks": tasks_table,
    "plan": plan_view,
}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_screen(snap_compare, scenario, size):
    assert snapshot_of(snap_compare, SCENARIOS[scenario], size)
