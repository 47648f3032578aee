"""Snapshots of the fleet sorted and filtered the k9s way, and of a day's chart with its dates, at
80x24 and 160x48 over deterministic data. After a deliberate change:
`pytest tests/tui/test_snapshots_tables.py --snapshot-update`, then look at the SVGs."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from tasker_tui import format as fmt
from tasker_tui.screens.detail import DetailScreen
from tests.tui.conftest import wait_until
from tests.tui.helpers_fake import BASE_MS, fleet_ready, snapshot_of


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


async def fleet_by_watts_in_europe(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("W")  # the biggest first
    await pilot.press("slash")
    app.screen.query_one("#filter", Input).value = "region:eu-* !tag:web"  # typing is tested elsewhere
    await pilot.press("enter")
    await pilot.pause(0.1)


async def detail_over_a_day(pilot, app, client):
    await fleet_ready(pilot, client)
    await pilot.press("enter", "3")
    await wait_until(
        pilot,
        lambda: isinstance(app.screen, DetailScreen) and app.screen.series and app.screen.range.label == "24h",
        what="a day's history",
    )
    await pilot.pause(0.2)


SCENARIOS = {"fleet_sorted_filtered": fleet_by_watts_in_europe, "detail_day": detail_over_a_day}


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_screen(snap_compare, scenario, size):
    assert snapshot_of(snap_compare, SCENARIOS[scenario], size)
