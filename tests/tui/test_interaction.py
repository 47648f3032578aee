"""What a user notices of keys and focus: bursts of keys typed ahead, deleting from a detail
screen, footers that offer only what works, forms, the `:` command line, and the smaller keys.

Over the in-memory fake client with a frozen clock, like `test_screens.py`.
"""

from __future__ import annotations

import pytest
from textual import events
from textual.widgets import DataTable, Input

from tasker_tui import format as fmt
from tasker_tui.command_line import CommandLineScreen
from tasker_tui.screens.confirm import ConfirmScreen
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.raw_readings import RawReadingsScreen
from tasker_tui.screens.server_form import ServerFormScreen
from tests.tui.conftest import type_text, wait_for_text, wait_until
from tests.tui.helpers_fake import BASE_MS, fake_app, fleet_ready
from tests.tui.screen_text import screen_text, screen_words

KEY_NAMES = {"/": "slash", "-": "minus", "\t": "tab", " ": "space", ":": "colon", "\r": "enter"}


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


def burst(app, text: str) -> None:
    """Every key of `text` queued at once, as one write from the terminal delivers them (pilot.press
    would wait for the app between keys)."""
    for char in text:
        app.post_message(events.Key(KEY_NAMES.get(char, char), char))


def toasts(app) -> list[str]:
    """The messages of the toasts raised (Pilot's screen dump leaves toasts out)."""
    return [n.message for n in app._notifications]


async def settled(pilot) -> None:
    await pilot.pause(0.3)
    await pilot.press()  # nothing: lets the queued keys be handled before looking


async def select(pilot, name: str) -> str:
    app = pilot.app
    table = app.screen.query_one("#fleet")
    server_id = next(sid for sid, s in app.fleet.servers.items() if s.name == name)
    await pilot.press("home")
    for _ in range(len(app.fleet.servers)):
        if table.selected_server_id == server_id:
            return server_id
        await pilot.press("down")
    raise AssertionError(f"no row for {name}")


# --- 1. keys typed ahead ----------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["/dyn", "/db", "/web-dub"])
async def test_a_burst_after_slash_goes_into_the_filter(typed):
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        count = len(client.servers)
        burst(app, typed)
        await wait_until(
            pilot,
            lambda: app.screen.query_one("#filter", Input).value == typed[1:],
            what=f"the filter to read {typed[1:]!r}",
        )
        await settled(pilot)
        assert isinstance(app.screen, FleetScreen)  # no delete question, no edit form
        assert app.screen.query_one("#filter", Input).value == typed[1:]
        assert len(client.servers) == count
        assert f"/{typed[1:]}:" in screen_words(app)  # the totals line says what is filtered


async def test_a_paste_right_after_slash_goes_into_the_filter():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        burst(app, "/")
        app.post_message(events.Paste("web-dub"))
        await wait_until(
            pilot, lambda: app.screen.query_one("#filter", Input).value == "web-dub", what="the pasted filter"
        )
        await settled(pilot)
        assert "web-dub-1" in screen_words(app) and "db-iad-1" not in screen_words(app)


async def test_a_delete_question_cannot_be_answered_by_type_ahead():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        server_id = await select(pilot, "web-dub-1")
        burst(app, "dy")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.shown, what="question")
        await settled(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        assert server_id in client.servers
        assert "Delete server web-dub-1?" in screen_words(app)
        await pilot.press("enter")  # the focus is on No: the default answer
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back to the fleet")
        assert server_id in client.servers
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.shown, what="question")
        await pilot.press("y")  # pressed after it was shown: counts
        await wait_until(pilot, lambda: server_id not in client.servers, what="deleted")


async def test_tab_in_a_burst_moves_to_the_next_field_of_the_form_it_opened():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        burst(app, "aweb-9\t")
        await wait_until(
            pilot,
            lambda: (
                isinstance(app.screen, ServerFormScreen)
                and app.focused is not None
                and app.focused.id == "field-region"
            ),
            what="the focus on the second field",
        )
        assert app.screen.query_one("#field-name", Input).value == "web-9"


# --- 2. deleting from the detail screen -----------------------------------------------------------


async def open_detail(pilot, name: str) -> DetailScreen:
    await select(pilot, name)
    await pilot.press("enter")
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.ready, what="detail")
    return app.screen


async def test_deleting_from_the_detail_screen_returns_to_the_fleet_once():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        detail = await open_detail(pilot, "web-dub-1")
        server_id = detail.server_id
        real_delete = client.delete_server

        async def delete_and_announce(sid, *, purge=False):
            # The backend tells every live connection, this TUI's included, as it deletes.
            server = client.servers[sid]
            await real_delete(sid)
            client.push({"type": "registry", "event": "removed", "server": server})

        client.delete_server = delete_and_announce
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen) and app.screen.shown, what="question")
        await pilot.press("y")
        await wait_until(
            pilot,
            lambda: server_id not in app.fleet.servers and isinstance(app.screen, FleetScreen),
            what="the fleet without the server",
        )
        # The detail screen's own resume (queued when the question closed) may come after the
        # delete closed it: the fleet stays.
        detail.on_screen_resume()
        detail.refresh_live()
        await settled(pilot)
        assert isinstance(app.screen, FleetScreen)
        words = screen_words(app)
        assert "11 servers" in words and "web-dub-1" not in words
        await pilot.press("ctrl+l")  # log out from there: the login screen, no crash
        await wait_until(pilot, lambda: app.screen.query("#username"), what="the login screen")
        assert app.is_running


# --- 3. footers offer only what works ------------------------------------------------------------


def engineer_app():
    app, client = fake_app()
    real_login = client.login

    async def login_as_engineer(username, password):
        answer = await real_login(username, password)
        return {**answer, "role": "engineer"}

    client.login = login_as_engineer
    return app, client


async def test_an_engineer_is_not_offered_changes_and_a_key_says_why():
    app, client = engineer_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await fleet_ready(pilot, client)
        bar = screen_text(app).splitlines()[-1]
        assert "Open" in bar and "Tasks" in bar
        assert "Add" not in bar and "Edit" not in bar and "Delete" not in bar
        await pilot.press("a")  # the key still exists for sysadmins; for an engineer it says why
        await wait_until(
            pilot,
            lambda: any("Engineers may not register or edit servers" in t for t in toasts(app)),
            what="the toast saying why",
        )
        assert isinstance(app.screen, FleetScreen)
        await pilot.press("t")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TasksScreen", what="tasks")
        bar = screen_text(app).splitlines()[-1]
        assert "Open" in bar and "New" not in bar and "Cancel task" not in bar


async def test_with_the_chat_focused_the_footer_offers_no_key_the_input_would_type():
    app, client = fake_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await fleet_ready(pilot, client)
        assert "Filter" in screen_text(app).splitlines()[-1]
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.focused is not None and app.focused.id == "chat-input", what="chat")
        bar = screen_text(app).splitlines()[-1]
        assert "Close chat" in bar
        assert "Filter" not in bar and "Quit" not in bar.replace("^q", "")


async def test_the_palette_finds_the_screens_actions_while_the_chat_is_focused():
    app, client = fake_app()
    async with app.run_test(size=(160, 40)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.focused is not None and app.focused.id == "chat-input", what="chat")
        await pilot.press("ctrl+p")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "CommandPalette", what="palette")
        await type_text(pilot, "tasks")
        await wait_for_text(pilot, "Every task: state, server, start, progress, CO2")
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TasksScreen", what="the tasks screen")


# --- 5. forms -------------------------------------------------------------------------------------


async def open_register_form(pilot) -> ServerFormScreen:
    app = pilot.app
    await pilot.press("a")
    await wait_until(pilot, lambda: isinstance(app.screen, ServerFormScreen) and app.screen.ready, what="form")
    return app.screen


def field_error(app, key: str) -> str:
    return str(app.screen.query_one(f"#error-{key}").render())


async def test_one_save_names_every_mistake_of_the_server_form():
    app, client = fake_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await fleet_ready(pilot, client)
        form = await open_register_form(pilot)
        await type_text(pilot, "web 9")  # a space: not allowed in a name
        for key, value in (("pue", "0.5"), ("idle_watts", "300"), ("max_watts", "200"), ("cores", "16")):
            form.query_one(f"#field-{key}", Input).value = value
        await pilot.press("ctrl+s")
        await wait_for_text(pilot, "Fix the 3 fields marked in red.")
        invalid = {row.id for row in form.query(".form-row.-invalid")}
        assert invalid == {"row-name", "row-pue", "row-max_watts"}
        assert "no spaces" in field_error(app, "name")
        assert "between 1 and 5" in field_error(app, "pue")
        assert "must be >= Idle W (300)" in field_error(app, "max_watts")
        assert "create" not in client.calls  # the backend was not asked


async def test_a_field_says_what_is_wrong_as_it_is_typed_and_clears_when_fixed():
    app, client = fake_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await fleet_ready(pilot, client)
        form = await open_register_form(pilot)
        await pilot.press("tab", "tab", "tab", "tab", "tab", "tab")  # to Idle W, past the lists
        assert app.focused.id == "field-idle_watts"
        await type_text(pilot, "4x")
        await wait_until(pilot, lambda: form.query_one("#row-idle_watts").has_class("-invalid"), what="error")
        assert "must be a number" in field_error(app, "idle_watts")
        assert not form.query_one("#row-name").has_class("-invalid")  # untouched: no "required" yet
        await pilot.press("backspace")
        await wait_until(pilot, lambda: not form.query_one("#row-idle_watts").has_class("-invalid"), what="cleared")


async def test_the_task_form_too_says_what_is_wrong_as_it_is_typed():
    from tests.tui.test_tasks import open_form, with_tasks

    app, client = with_tasks()
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, client)
        await pilot.press("tab")  # to Cores
        await type_text(pilot, "many")
        await wait_until(pilot, lambda: form.query_one("#row-cores").has_class("-invalid"), what="the error")
        assert not form.query_one("#row-name").has_class("-invalid")  # untouched: no "required" yet
        form.query_one("#field-cores", Input).value = "4"
        await wait_until(pilot, lambda: not form.query_one("#row-cores").has_class("-invalid"), what="cleared")


async def test_escape_on_a_changed_server_form_asks_before_throwing_it_away():
    app, client = fake_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await fleet_ready(pilot, client)
        await open_register_form(pilot)
        await pilot.press("escape")  # nothing typed: closes at once
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="closed")
        form = await open_register_form(pilot)
        await type_text(pilot, "half")
        await pilot.press("escape")
        await wait_for_text(pilot, "Discard your changes?")
        await pilot.press("n")
        await wait_until(pilot, lambda: app.screen is form, what="kept")
        assert form.query_one("#field-name", Input).value == "half"
        await pilot.press("escape")
        await wait_for_text(pilot, "Discard your changes?")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="discarded")


async def test_the_focused_field_of_a_form_stands_out():
    app, client = fake_app()
    async with app.run_test(size=(120, 36)) as pilot:
        await fleet_ready(pilot, client)
        form = await open_register_form(pilot)
        label = form.query_one("#row-name .form-label")
        other = form.query_one("#row-site .form-label")
        assert label.styles.text_style.bold and not other.styles.text_style.bold
        assert label.styles.color != other.styles.color
        await pilot.press("tab", "tab")
        await wait_until(pilot, lambda: app.focused.id == "field-site", what="site focused")
        await pilot.pause(0.1)
        assert other.styles.text_style.bold and not label.styles.text_style.bold


# --- 7. the : command line ----------------------------------------------------------------------


async def test_the_command_line_goes_to_screens_by_name():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("colon")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandLineScreen) and app.screen.ready, what=":")
        await type_text(pilot, "tasks")
        await pilot.press("enter")
        await wait_until(pilot, lambda: type(app.screen).__name__ == "TasksScreen", what="the tasks screen")
        burst(app, ":server db-iad-1\r")  # typed ahead, in one write
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the server's detail")
        assert app.fleet.servers[app.screen.server_id].name == "db-iad-1"
        burst(app, ":servers\r")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert len(app.screen_stack) == 2  # back, not one more screen on the stack


async def test_the_command_line_completes_and_says_what_is_wrong():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("colon")
        await wait_until(pilot, lambda: isinstance(app.screen, CommandLineScreen) and app.screen.ready, what=":")
        line = app.screen.query_one("#command-input", Input)
        await type_text(pilot, "serve")
        await pilot.press("tab")
        assert line.value == "server"  # servers or server: the common part
        await type_text(pilot, " web-du")
        await pilot.press("tab")
        assert line.value == "server web-dub-"
        await pilot.press("enter")
        await wait_for_text(pilot, "'web-dub-' could be web-dub-1, web-dub-2")
        assert isinstance(app.screen, CommandLineScreen)  # still open, to fix
        line.value = "frobnicate"
        await pilot.press("enter")
        await wait_for_text(pilot, "no command 'frobnicate'; commands: :servers")
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="closed")


# --- 8. smaller things --------------------------------------------------------------------------


async def open_raw_readings(pilot):
    app = pilot.app
    await pilot.press("r")
    await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen) and app.screen.page_rows, what="rows")
    return app.screen


async def test_u_after_a_typed_range_goes_back_to_a_range_ending_now():
    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        raw = await open_raw_readings(pilot)
        table = raw.query_one("#raw", DataTable)
        await pilot.press("T")
        await wait_until(pilot, lambda: app.screen.query("#range-from"), what="the range form")
        await type_text(pilot, "-200s")
        await pilot.press("tab")
        app.screen.query_one("#range-to", Input).value = "-190s"
        await pilot.press("enter")
        await wait_until(pilot, lambda: app.screen is raw and table.row_count == 10, what="the typed range")
        await wait_for_text(pilot, "newest: u")
        await pilot.press("u")
        await wait_until(pilot, lambda: table.row_count == 100, what="the newest readings")
        await wait_for_text(pilot, "last 1h")
        assert raw.range.to_ms > BASE_MS  # ends now


async def test_exports_go_to_the_downloads_folder_and_the_screen_says_where(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    downloads = tmp_path / "data" / "tasker" / "downloads"
    app, client = fake_app()
    async with app.run_test(size=(160, 30)) as pilot:
        await fleet_ready(pilot, client)
        await open_raw_readings(pilot)
        await wait_for_text(pilot, f"x exports this range as CSV to {downloads}")
        await pilot.press("x")
        await wait_for_text(pilot, f"Exported 300 readings to {downloads}/")
        files = list(downloads.glob("tasker-*.csv"))
        assert len(files) == 1 and len(files[0].read_text().splitlines()) == 301


async def test_toasts_stay_clear_of_the_open_chat_pane():
    app, client = fake_app()
    async with app.run_test(size=(80, 24), notifications=True) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.focused is not None and app.focused.id == "chat-input", what="chat")
        app.notify("eve: is web-dub-1 down?", title="Support chat")
        await wait_until(pilot, lambda: app.screen.query("Toast"), what="the toast")
        await pilot.pause(0.2)
        pane = app.screen.query_one("#chat-pane").region
        for toast in app.screen.query("Toast"):
            assert not toast.region.overlaps(pane), (toast.region, pane)


async def test_help_explains_the_markers_and_units():
    app, client = fake_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("question_mark")
        await wait_for_text(pilot, "Signs and units")
        for sign in ("● live", "○ stale", "g/h CO2 emitted now", "PUE site overhead", "g/kWh carbon intensity"):
            assert sign in screen_words(app), sign
