"""Registering, editing, deleting and filtering servers from the TUI, against a real backend.

Nothing is mocked: everything goes through HTTP and the websocket of an embedded backend over
temporary SQLite files (see the `backend` fixture).
"""

from __future__ import annotations

from tasker.domain import default_carbon_intensity
from tasker_tui.app import TaskerApp
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.widgets.fleet_table import FleetTable
from tests.tui.conftest import (
    SIZE,
    fleet_names,
    logged_in_app,
    register,
    select_server,
    type_text,
    wait_for_text,
    wait_until,
)


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
        await wait_until(
            pilot,
            lambda: "must be >=" in str(app.screen.query_one("#error-max_watts").render()),
            what="the error next to Max W",
        )
        # The backend's field name is said as the form labels it.
        assert "Idle W" in str(app.screen.query_one("#error-max_watts").render())
        assert app.focused is app.screen.query_one("#field-max_watts")
        await type_text(pilot, "450")  # the focused field's text is selected: typing replaces it
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back at the fleet")
        await wait_until(pilot, lambda: "form-made-1" in fleet_names(app), what="the new row")
        table = app.screen.query_one(FleetTable)
        assert app.fleet.servers[table.selected_server_id].name == "form-made-1"
        # No sensor reports it yet: its detail says so rather than calling it stale.
        await pilot.press("enter")
        await wait_for_text(pilot, "form-made-1 eu-west/Dublin coal ○ no readings yet")
    async with await backend.admin() as api:
        stored = next(s for s in (await api.list_servers())["servers"] if s["name"] == "form-made-1")
    assert stored["energy_source"] == "coal" and stored["max_watts"] == 450
    assert stored["location"] == {"region": "eu-west", "site": "Dublin"} and stored["tags"] == ["prod", "batch"]


async def test_edit_changes_the_server(backend):
    server = await register(backend, "to-edit-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await select_server(pilot, server["id"])
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


async def test_blanking_a_set_carbon_intensity_goes_back_to_the_default(backend):
    server = await register(backend, "intensity-1", region="eu-north", source="grid-mix")
    async with await backend.admin() as api:
        server = await api.update_server(server["id"], {"carbon_intensity_g_per_kwh": 123})
    assert server["carbon_intensity_g_per_kwh"] == 123 and server["carbon_intensity_source"] == "set by user"
    default, origin = default_carbon_intensity("grid-mix", "eu-north")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        await select_server(pilot, server["id"])
        await pilot.press("e")
        await wait_until(pilot, lambda: app.screen.query("#field-carbon_intensity_g_per_kwh"), what="the edit form")
        field = app.screen.query_one("#field-carbon_intensity_g_per_kwh")
        assert field.value == "123"
        await wait_for_text(pilot, "blank = grid average for eu-north")  # what blank means, said beside it
        field.focus()
        await pilot.press("ctrl+u", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back at the fleet")
    async with await backend.admin() as api:
        stored = await api.get_server(server["id"])
    assert stored["carbon_intensity_g_per_kwh"] == default and stored["carbon_intensity_source"] == origin


async def test_delete_asks_first(backend):
    server = await register(backend, "to-delete-1")
    app = TaskerApp(backend.url)
    async with app.run_test(size=SIZE) as pilot:
        await logged_in_app(backend, pilot)
        table = await select_server(pilot, server["id"])
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
        assert all(app.fleet.servers[sid].energy_source == "coal" for sid in app.screen.query_one(FleetTable).shown_ids)
        await pilot.press("enter")  # keep the filter, back to the table
        await pilot.press("slash", "ctrl+u")
        await type_text(pilot, "green")
        await wait_until(pilot, lambda: fleet_names(app) == ["flt-solar-1"], what="the tag filter")
        await pilot.press("escape")
        await wait_until(pilot, lambda: {"flt-coal-1", "flt-solar-1"} <= set(fleet_names(app)), what="filter cleared")
