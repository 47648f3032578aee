"""Live charts and raw readings (paging, CSV export) in the TUI, against a real backend.

Nothing is mocked: everything goes through HTTP and the websocket of an embedded backend over
temporary SQLite files (see the `backend` fixture).
"""

from __future__ import annotations

import csv

from textual.widgets import DataTable

from tasker_tui import format as fmt
from tasker_tui.app import TaskerApp
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.raw_readings import RawReadingsScreen
from tasker_tui.widgets.metric_chart import MetricChart
from tests.tui.conftest import SIZE, logged_in_app, register, wait_for_text, wait_until
from tests.tui.screen_text import screen_text


async def test_detail_charts_receive_live_data(backend):
    server = await register(backend, "live-chart-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot, backend.client(backend.ingest_key) as sensor:
        await logged_in_app(backend, pilot)
        await wait_until(pilot, lambda: server["id"] in app.fleet.servers, what="the server")
        app.open_server(server["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.series, what="history")
        chart = app.screen.query_one("#power-chart", MetricChart)
        assert chart._points == []
        now = fmt.now_ms()
        await sensor.post_readings(
            [
                {"server_id": server["id"], "metric": "power", "ts": now - 1000, "value": 321.0},
                {"server_id": server["id"], "metric": "co2", "ts": now - 1000, "value": 1.5},
            ]
        )
        await wait_until(pilot, lambda: any(p[2] == 321.0 for p in chart._points), what="the live point")
        await wait_for_text(pilot, "max 321 W")
        await sensor.post_readings([{"server_id": server["id"], "metric": "power", "ts": now, "value": 123.0}])
        await wait_until(pilot, lambda: chart._points[-1][1] == 123.0, what="the second live point")
        await wait_for_text(pilot, "min 123 W")
        assert "● live" in screen_text(app)


async def test_raw_readings_page_back_through_all_and_export(backend, tmp_path):
    server = await register(backend, "raw-pages-1")
    now = fmt.now_ms() - 60_000
    readings = [
        {"server_id": server["id"], "metric": "power", "ts": now - i * 1000, "value": float(i)} for i in range(250)
    ]
    async with backend.client(backend.ingest_key) as sensor:
        await sensor.post_readings(readings)
    app = TaskerApp(backend.url, export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await wait_until(pilot, lambda: server["id"] in app.fleet.servers, what="the server")
        app.open_server(server["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen), what="raw readings")
        table = app.screen.query_one("#raw", DataTable)

        def first_value() -> str:
            return str(table.get_row_at(0)[1]) if table.row_count else ""

        await wait_until(pilot, lambda: table.row_count == 100 and first_value() == "0.00", what="page 1")
        await wait_for_text(pilot, "rows 1–100")
        await pilot.press("n")
        await wait_until(pilot, lambda: first_value() == "100.00", what="page 2")
        await pilot.press("n")
        await wait_until(pilot, lambda: table.row_count == 50 and first_value() == "200.00", what="page 3")
        await wait_for_text(pilot, "oldest reached")
        assert str(table.get_row_at(49)[1]) == "249.00"
        await pilot.press("p")
        await wait_until(pilot, lambda: first_value() == "100.00", what="back to page 2")
        await pilot.press("x")
        await wait_for_text(pilot, "Exported 250 readings to")
        written = list(tmp_path.glob("tasker-raw-pages-1-power-*.csv"))
        assert len(written) == 1 and str(written[0]) in screen_text(app).replace("\n", "")
    rows = list(csv.DictReader(written[0].open()))
    assert len(rows) == 250 and rows[0]["value"] == "0.0" and rows[-1]["value"] == "249.0"
