"""Screen behaviour over the in-memory fake client with a frozen clock: fast, deterministic.

The must-hold flows run against a real backend in `test_backend_*.py`; these cover the rest of
what a user notices: sorting from the keyboard, stale marking and totals, the help screen, the
command palette, the chat toggle, and reconnection with resubscription.
"""

from __future__ import annotations

import pytest

from tasker_tui import format as fmt
from tasker_tui.app import TaskerApp
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.help import HelpScreen
from tasker_tui.screens.login import LoginScreen
from tasker_tui.screens.raw_readings import RawReadingsScreen
from tasker_tui.widgets.fleet_table import FleetTable
from tests.tui.conftest import type_text, wait_for_text, wait_until
from tests.tui.fakes import SAMPLE, FakeClient, demo_fleet_client
from tests.tui.helpers_fake import BASE_MS, fake_app, fleet_ready
from tests.tui.screen_text import screen_text, widget_text


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


async def open_help(pilot) -> None:
    await pilot.press("question_mark")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, HelpScreen), what="help")


def names(app) -> list[str]:
    table = app.screen.query_one(FleetTable)
    return [app.fleet.servers[sid].name for sid in table.shown_ids]


async def test_sort_by_power_from_the_keyboard_keeps_the_selection():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        assert names(app) == sorted(names(app))
        table = app.screen.query_one(FleetTable)
        await pilot.press("down", "down")
        chosen = table.selected_server_id
        await pilot.press("W")  # shift+w: by power, the largest first
        assert table.sort_key == "power"
        watts = [app.fleet.latest(sid, "power") for sid in table.shown_ids]
        assert watts == sorted(watts, reverse=True)
        assert table.selected_server_id == chosen  # the cursor followed its server
        await wait_for_text(pilot, "W ▼")  # the totals line says how it is sorted
        await pilot.press("W")  # the same key again: the smallest first
        watts = [app.fleet.latest(sid, "power") for sid in table.shown_ids]
        assert watts == sorted(watts)
        assert table.selected_server_id == chosen
        await wait_for_text(pilot, "W ▲")


async def test_stale_server_is_marked_and_left_out_of_the_totals():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        text = screen_text(app)
        assert "○ cache-sin-1" in text and "● web-dub-1" in text
        totals = widget_text(app, "#totals")
        assert "11 live · 1 stale" in totals and "kg CO2/h" in totals
        fresh = [sid for sid in app.fleet.servers if not app.fleet.is_stale(sid, BASE_MS)]
        expected_w = sum(app.fleet.latest(sid, "power") for sid in fresh)
        assert fmt.fleet_power(expected_w) in totals


async def test_help_lists_every_key_of_the_screen_with_what_it_does():
    app, client = fake_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await fleet_ready(pilot, client)
        await open_help(pilot)
        text = widget_text(app, "#help-keys")
        for key, description in (
            ("a", "Add"),
            ("e", "Edit"),
            ("d", "Delete"),
            ("/", "Filter"),
            ("N", "Sort"),
            ("r", "Raw"),
            ("^t", "Chat"),
            ("^g", "Go to server"),
            ("q", "Quit"),
        ):
            assert f"{key}  {description}" in text, (key, description, text)
        lines = text.splitlines()
        # One line per action: q and Textual's ctrl+q share one; enter (open) is listed too.
        assert [line.split() for line in lines if "Quit" in line] == [["q", "^q", "Quit", "Quit", "Tasker"]]
        assert any(line.split()[:2] == ["⏎", "Open"] for line in lines), lines
        assert "Focus Next" not in text  # Textual's own plumbing is not listed
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="help closed")


async def test_go_to_server_by_name_from_the_palette():
    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("ctrl+g")
        await type_text(pilot, "ml-par")
        await wait_for_text(pilot, "Go to server ml-par-1")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the detail screen")
        assert app.fleet.servers[app.screen.server_id].name == "ml-par-1"


async def test_palette_lists_the_screens_actions():
    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        commands = {c.title for c in app.get_system_commands(app.screen)}
        assert {"Add", "Edit", "Delete", "Filter", "Sort", "Raw", "Chat", "Help", "Go to server"} <= commands


async def test_chat_pane_toggles_from_every_screen():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        assert not app.screen.query_one("#chat-pane").display
        await pilot.press("ctrl+t")
        assert app.screen.query_one("#chat-pane").display
        await pilot.press("ctrl+t")
        assert not app.screen.query_one("#chat-pane").display
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.screen.query_one("#chat-pane").display, what="pane on detail")
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: not app.screen.query_one("#chat-pane").display, what="pane closed")


async def test_dropped_connection_marks_stale_then_reconnects_and_resubscribes():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        assert len(client.subscriptions) == 1
        client.drop()
        await wait_for_text(pilot, "Backend connection lost")
        assert "● web-dub-1" not in screen_text(app) and "○ web-dub-1" in screen_text(app)
        client.down = False
        await wait_until(pilot, lambda: app.link_status.live, timeout=15, what="reconnect")
        assert client.subscriptions[-1] == ("*", ["power", "co2"]) and len(client.subscriptions) == 2
        await wait_until(pilot, lambda: "Backend connection lost" not in screen_text(app), what="banner gone")


async def test_refused_session_returns_to_login():
    from tasker.client import Unauthorized

    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        app.report_error(Unauthorized(401, "session expired"))
        await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen), what="login")
        await wait_for_text(pilot, "session expired. Please log in again.")
        assert not app.user and app.client.token is None


async def test_server_form_blocks_non_numbers_before_asking_the_backend():
    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("a")
        await wait_until(pilot, lambda: app.screen.query("#field-name"), what="form")
        await type_text(pilot, "x-1")
        app.screen.query_one("#field-idle_watts").focus()
        await type_text(pilot, "lots")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "must be a number" in widget_text(app, "#error-idle_watts"), what="error")
        assert "required" in widget_text(app, "#error-max_watts")
        assert "create" not in client.calls
        await pilot.press("escape")
        await wait_for_text(pilot, "Discard your changes?")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="cancelled")
        assert "create" not in client.calls


async def test_raw_readings_in_a_typed_time_range():
    from textual.widgets import DataTable

    from tasker_tui.screens.raw_readings import RawReadingsScreen

    app, client = fake_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen) and app.screen.page_rows, what="rows")
        table = app.screen.query_one("#raw", DataTable)
        await pilot.press("T")
        await wait_until(pilot, lambda: app.screen.query("#range-from"), what="the range form")
        await type_text(pilot, "-10s")
        await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, RawReadingsScreen) and table.row_count == 10, what="10 rows"
        )
        await wait_for_text(pilot, "oldest reached")
        await pilot.press("u")  # latest: back to the last preset (the hour it opened on), ending now
        await wait_until(pilot, lambda: table.row_count == 100, what="a full page")
        await wait_for_text(pilot, "last 1h")
        await pilot.press("t")  # the next preset: the last 24 hours
        await wait_for_text(pilot, "last 24h")
        await wait_until(pilot, lambda: table.row_count == 100, what="a full page")


async def test_footer_at_80_columns_keeps_open_help_and_quit_in_view():
    app, client = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet_ready(pilot, client)
        footer = screen_text(app).splitlines()[-1]
        for item in ("⏎ Open", "a Add", "/ Filter", "? Help", "q Quit", "^p palette"):
            assert item in footer, (item, footer)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen) and app.screen.page_rows, what="rows")
        footer = screen_text(app).splitlines()[-1]
        for item in ("n Older", "x Export", "esc Back", "? Help", "q Quit"):
            assert item in footer, (item, footer)
        await pilot.press("n")
        await wait_for_text(pilot, "newest: u")  # off the footer, so said where paging shows


async def test_a_hidden_chat_pane_does_not_redraw_every_second():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        typing = app.screen.query_one("#chat-typing")
        redraws = []
        original = typing.update
        typing.update = lambda *args, **kwargs: (redraws.append(args), original(*args, **kwargs))
        await pilot.pause(2.5)  # the pane's typing tick runs each second
        assert redraws == []
        await pilot.press("ctrl+t")
        await wait_until(pilot, lambda: app.screen.query_one("#chat-pane").display, what="pane open")
        await pilot.pause(2.5)
        assert len(redraws) <= 1  # drawn when shown, then only when who-is-typing changes


async def test_login_screen_offers_its_keys_and_enter_goes_from_username_to_password():
    app, client = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")
        lines = screen_text(app).splitlines()
        assert "⏎ Log in" in lines[-1] and "^q Quit" in lines[-1], lines[-1]
        assert "^r" not in lines[-1]  # retrying a saved session is offered only when one failed
        assert "chat" not in lines[0]  # no chat before login, so none offered
        await type_text(pilot, "alice")
        await pilot.press("enter")
        assert app.focused is app.screen.query_one("#password")
        assert "Enter your password" not in screen_text(app)  # moving on is not a mistake
        await type_text(pilot, client.password)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert "chat" in screen_text(app).splitlines()[0]  # logged in: the top bar names the chat key


async def test_one_server_is_not_counted_in_the_plural():
    app, client = fake_app(FakeClient(servers=SAMPLE[:1]))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")
        app.screen.query_one("#username").value = "alice"
        app.screen.query_one("#password").value = client.password
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen) and app.screen.ready, what="the fleet")
        await wait_until(pilot, lambda: widget_text(app, "#totals").startswith("1 server,"), what="the singular")


async def test_narrow_detail_figures_break_between_figures_not_inside_one():
    from tests.tui.test_snapshots import detail

    app, client = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await detail(pilot, app, client)
        await pilot.press("i")  # the spec takes half the width: the figures must wrap
        lines = []

        def wrapped() -> bool:
            lines[:] = [line.strip() for line in screen_text(app).splitlines() if "max" in line or "emitted" in line]
            return any(line.startswith("max") for line in lines)

        await wait_until(pilot, wrapped, what="figures on two lines")
        for line in lines:
            figures = line.split("▏")[0].split()
            for word, after in zip(figures, figures[1:] + [""]):
                if word.replace(".", "").isdigit():
                    assert after in ("W", "g/h", "kWh", "kg"), (word, after, lines)


async def test_the_first_frame_comes_before_a_prepared_backend_then_logs_in_by_itself():
    import threading

    release = threading.Event()
    client = demo_fleet_client()

    def prepare() -> tuple[str, str]:
        release.wait(10)  # the demo starts its backend here
        app.auto_login = ("alice", client.password)
        return client.base_url, "Backend ready."

    app = TaskerApp("", client=client, remember_session=False, refresh_interval=0.05, prepare=prepare)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for_text(pilot, "Starting the embedded backend…")
        assert "Backend: starting…" in screen_text(app) and isinstance(app.screen, LoginScreen)
        await pilot.press("enter")  # nothing to log in to yet: ignored
        assert "Enter your username" not in screen_text(app)
        release.set()
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="logged in by itself")
        await wait_until(
            pilot,
            lambda: "Backend ready." in [n.message for n in app._notifications],
            what="the prepared notice, said once logged in",
        )


async def test_a_failed_preparation_closes_the_tui_with_the_reason():
    def prepare() -> tuple[str, str]:
        raise RuntimeError("the backend did not start")

    app = TaskerApp("", client=demo_fleet_client(), remember_session=False, prepare=prepare)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: not app.is_running, what="the TUI closing")
    assert app.return_code == 1 and str(app.prepare_error) == "the backend did not start"


async def test_help_at_80x24_shows_the_fleet_keys_whole_and_scrolls_to_the_end_elsewhere():
    app, client = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet_ready(pilot, client)
        await open_help(pilot)
        text = screen_text(app)
        assert "Keys: Fleet" in text and "Every action is also in the command palette (ctrl+p)." in text
        await pilot.press("escape", "enter")  # the detail screen has the most keys
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="detail")
        await open_help(pilot)
        await pilot.press("end")
        await wait_for_text(pilot, "Every action is also in the command palette (ctrl+p).")
        assert "Keys: Fleet ▸ api-fra-1" in screen_text(app)  # the title stays in view
