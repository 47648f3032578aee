"""Login, saved sessions, and the connection banner, against a real `tasker backend` child process.

Nothing is mocked: everything goes through HTTP and the websocket of an embedded backend over
temporary SQLite files (see the `backend` fixture).
"""

from __future__ import annotations

import stat

from tasker.session import load_session, session_file
from tasker_tui import format as fmt
from tasker_tui.app import TaskerApp
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.login import LoginScreen
from tasker_tui.widgets.fleet_table import FleetTable
from tests.tui.conftest import SIZE, SYSADMIN, logged_in_app, login, register, type_text, wait_for_text, wait_until
from tests.tui.screen_text import screen_text, widget_text


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

    # The saved session is offered, never used silently (issue 15): enter on the empty form
    # continues it (tests/tui/test_login_accounts.py has the rest).
    again = TaskerApp(backend.url)
    async with again.run_test(size=SIZE) as pilot:
        await wait_until(
            pilot,
            lambda: isinstance(again.screen, LoginScreen) and again.screen.saved is not None,
            what="the saved session offered",
        )
        assert "alice" in widget_text(again, "#login-saved")
        await pilot.press("enter")
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
            await sensor.post_readings(
                [{"server_id": server["id"], "metric": "power", "ts": fmt.now_ms(), "value": 77.0}]
            )
        await wait_until(pilot, lambda: app.fleet.latest(server["id"], "power") == 77.0, what="live after reconnect")
