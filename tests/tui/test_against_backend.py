"""The must-hold flows of the TUI, driven by Pilot against a real `tasker backend` child process.

Nothing here is mocked: logins, forms, deletes, charts, raw readings and the connection banner
all go through HTTP and the websocket of an embedded backend over temporary SQLite files.
"""

from __future__ import annotations

import csv
import stat

from textual.widgets import DataTable

from tasker.session import load_session, session_file
from tasker_tui import format as fmt
from tasker_tui.app import TaskerApp
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.login import LoginScreen
from tasker_tui.screens.status import StatusScreen
from tasker_tui.widgets.fleet_table import FleetTable
from tasker_tui.widgets.metric_chart import MetricChart
from tests.tui.conftest import SYSADMIN, login, type_text, wait_for_text, wait_until
from tests.tui.screen_text import screen_text, widget_text

SIZE = (120, 40)


def fleet_names(app: TaskerApp) -> list[str]:
    table = app.screen.query_one(FleetTable)
    return [app.fleet.servers[sid]["name"] for sid in table.shown_ids]


async def register(backend, name: str, region: str = "eu-west", source: str = "wind", tags=("test",)) -> dict:
    async with await backend.admin() as api:
        return await api.create_server({
            "name": name, "location": {"region": region, "site": ""}, "energy_source": source,
            "idle_watts": 100, "max_watts": 400, "cores": 16, "tags": list(tags),
        })


async def logged_in_app(backend, pilot) -> None:
    await login(pilot, *SYSADMIN)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, FleetScreen) and pilot.app.link_status.live,
                     what="the live fleet screen")


async def test_login_refuses_a_wrong_password_then_accepts_the_right_one(backend, config_home):
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "alice", "not-her-password")
        await wait_for_text(pilot, "Login refused")
        assert isinstance(app.screen, LoginScreen)
        assert app.screen.query_one("#password").value == ""  # cleared for the next try
        await type_text(pilot, SYSADMIN[1])
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet screen")
        await wait_for_text(pilot, "alice (sysadmin)")
    stored = load_session(backend.url)
    assert stored is not None and stored.username == "alice"
    assert stat.S_IMODE(session_file().stat().st_mode) == 0o600

    # The saved session is reused: the next start goes straight to the fleet.
    again = TaskerApp(backend.url)
    async with again.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(again.screen, FleetScreen), what="resumed session")


async def test_login_names_an_unreachable_backend(config_home):
    from tasker_tui.local_stack import port_is_free

    port = next(p for p in range(47_000, 48_000) if port_is_free(p))
    app = TaskerApp(f"http://127.0.0.1:{port}")
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, *SYSADMIN)
        await wait_until(pilot, lambda: "cannot reach" in widget_text(app, "#login-message"), what="the message")
        message = widget_text(app, "#login-message")
        assert f"cannot reach the backend at http://127.0.0.1:{port}: connection refused" in message
        assert "tasker backend" in message  # says what to do about it
        assert isinstance(app.screen, LoginScreen)


async def test_register_through_the_form_with_a_validation_error(backend):
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen.query("#field-name"), what="the form")
        # Keyboard only, in tab order: name, region, site, source, intensity, PUE, idle, max, cores, tags.
        await type_text(pilot, "form-made-1")
        await pilot.press("tab", "tab")
        await type_text(pilot, "Dublin")
        await pilot.press("tab", "enter")  # open the energy source list
        await pilot.press("c", "enter")  # type-to-search: coal
        await pilot.press("tab", "tab", "tab")
        await type_text(pilot, "300")
        await pilot.press("tab")
        await type_text(pilot, "200")  # below idle: the backend refuses it
        await pilot.press("tab")
        await type_text(pilot, "16")
        await pilot.press("tab")
        await type_text(pilot, "prod, batch")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "idle_watts" in str(app.screen.query_one("#error-max_watts").render()),
                         what="the error next to Max W")
        assert "must be >=" in str(app.screen.query_one("#error-max_watts").render())
        assert app.focused is app.screen.query_one("#field-max_watts")
        await type_text(pilot, "450")  # the focused field's text is selected: typing replaces it
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back at the fleet")
        await wait_until(pilot, lambda: "form-made-1" in fleet_names(app), what="the new row")
        table = app.screen.query_one(FleetTable)
        assert app.fleet.servers[table.selected_server_id]["name"] == "form-made-1"
    async with await backend.admin() as api:
        stored = next(s for s in (await api.list_servers())["servers"] if s["name"] == "form-made-1")
    assert stored["energy_source"] == "coal" and stored["max_watts"] == 450
    assert stored["location"] == {"region": "eu-west", "site": "Dublin"} and stored["tags"] == ["prod", "batch"]


async def test_edit_changes_the_server(backend):
    server = await register(backend, "to-edit-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        table = app.screen.query_one(FleetTable)
        await wait_until(pilot, lambda: server["id"] in table.shown_ids, what="the server's row")
        table.move_cursor(row=table.shown_ids.index(server["id"]))
        await pilot.press("e")
        await wait_until(pilot, lambda: app.screen.query("#field-site"), what="the edit form")
        assert app.screen.query_one("#field-name").value == "to-edit-1"
        app.screen.query_one("#field-site").focus()
        await type_text(pilot, "Cork")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back at the fleet")
        await wait_for_text(pilot, "eu-west/Cork")
    async with await backend.admin() as api:
        assert (await api.get_server(server["id"]))["location"]["site"] == "Cork"


async def test_delete_asks_first(backend):
    server = await register(backend, "to-delete-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        table = app.screen.query_one(FleetTable)
        await wait_until(pilot, lambda: server["id"] in table.shown_ids, what="the server's row")
        table.move_cursor(row=table.shown_ids.index(server["id"]))
        await pilot.press("d")
        await wait_for_text(pilot, "Delete server to-delete-1?")
        await pilot.press("enter")  # the focus is on Cancel: a stray enter deletes nothing
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the modal closing")
        assert server["id"] in table.shown_ids
        await pilot.press("d")
        await wait_for_text(pilot, "Delete server to-delete-1?")
        await pilot.press("y")
        await wait_until(pilot, lambda: server["id"] not in table.shown_ids, what="the row leaving")
    async with await backend.admin() as api:
        assert all(s["id"] != server["id"] for s in (await api.list_servers())["servers"])


async def test_filter_by_source_and_tag(backend):
    await register(backend, "flt-coal-1", source="coal", tags=("legacy",))
    await register(backend, "flt-solar-1", source="solar", tags=("green",))
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await wait_until(pilot, lambda: {"flt-coal-1", "flt-solar-1"} <= set(fleet_names(app)), what="both rows")
        await pilot.press("slash")
        await type_text(pilot, "coal")
        await wait_until(pilot, lambda: "flt-solar-1" not in fleet_names(app), what="the filter")
        assert "flt-coal-1" in fleet_names(app)
        assert all(app.fleet.servers[sid]["energy_source"] == "coal" for sid in app.screen.query_one(FleetTable).shown_ids)
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.press("slash", "ctrl+u")
        await type_text(pilot, "green")
        await wait_until(pilot, lambda: fleet_names(app) == ["flt-solar-1"], what="the tag filter")
        await pilot.press("escape")
        await wait_until(pilot, lambda: {"flt-coal-1", "flt-solar-1"} <= set(fleet_names(app)), what="filter cleared")


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
        await sensor.post_readings([
            {"server_id": server["id"], "metric": "power", "ts": now - 1000, "value": 321.0},
            {"server_id": server["id"], "metric": "co2", "ts": now - 1000, "value": 1.5},
        ])
        await wait_until(pilot, lambda: any(p[2] == 321.0 for p in chart._points), what="the live point")
        await wait_for_text(pilot, "max 321 W")
        await sensor.post_readings([{"server_id": server["id"], "metric": "power", "ts": now, "value": 123.0}])
        await wait_until(pilot, lambda: chart._points[-1][1] == 123.0, what="the second live point")
        await wait_for_text(pilot, "min 123 W")
        assert "● live" in screen_text(app)


async def test_raw_readings_page_back_through_all_and_export(backend, tmp_path):
    server = await register(backend, "raw-pages-1")
    now = fmt.now_ms() - 60_000
    readings = [{"server_id": server["id"], "metric": "power", "ts": now - i * 1000, "value": float(i)} for i in range(250)]
    async with backend.client(backend.ingest_key) as sensor:
        await sensor.post_readings(readings)
    app = TaskerApp(backend.url, export_dir=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await wait_until(pilot, lambda: server["id"] in app.fleet.servers, what="the server")
        app.open_server(server["id"])
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, StatusScreen), what="raw readings")
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


async def test_banner_when_the_backend_stops_and_clears_when_it_returns(backend):
    server = await register(backend, "banner-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await wait_until(pilot, lambda: server["id"] in app.screen.query_one(FleetTable).shown_ids, what="row")
        assert "Backend connection lost" not in screen_text(app)
        backend.stack.stop_backend()
        await wait_for_text(pilot, "Backend connection lost")
        assert "marked stale" in screen_text(app)
        assert "○ offline" in screen_text(app)
        assert "○ banner-1" in screen_text(app)  # the row keeps its data, marked stale
        backend.stack.restart_backend()
        await wait_until(pilot, lambda: app.link_status.live, timeout=20, what="the reconnect")
        await wait_until(pilot, lambda: "Backend connection lost" not in screen_text(app), what="banner gone")
        assert "● live" in screen_text(app)
        # Resubscribed: a reading posted now arrives live.
        async with backend.client(backend.ingest_key) as sensor:
            await sensor.post_readings([{"server_id": server["id"], "metric": "power", "ts": fmt.now_ms(), "value": 77.0}])
        await wait_until(pilot, lambda: app.fleet.latest(server["id"], "power") == 77.0, what="live after reconnect")
