"""The login screen with a saved session (issue 15 item 4) and with a password that must change
(issue 14 item 7), driven with Pilot; each test is the slip or attack it stops.

The first tests run over a fake client that tells users apart by token; the last one over a
real `tasker backend` child process.
"""

from __future__ import annotations

from typing import Any

from tasker.client import Unauthorized, ValidationFailed
from tasker.models import Me
from tasker.session import load_session, save_session
from tasker_tui.app import TaskerApp
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.login import LoginScreen
from tests.tui.conftest import SIZE, login, type_text, wait_until
from tests.tui.fakes import FakeClient, demo_fleet_client
from tests.tui.screen_text import screen_words, widget_text

FAR = "2099-01-01T00:00:00Z"
NEW_PASSWORD = "mauve kettle orbit"


class AccountsFake(FakeClient):
    """A fake backend whose tokens name their user, with users who must change their password,
    and a record of which token every fleet read was made with."""

    def __init__(self) -> None:
        base = demo_fleet_client()
        super().__init__(list(base.servers.values()))
        self.must_change: set[str] = set()
        self.revoked: set[str] = set()
        self.fleet_reads_by: list[str | None] = []
        self.changes: list[tuple[str, str]] = []

    async def login(self, username: str, password: str) -> dict[str, Any]:
        self._check()
        if password != self.password:
            raise Unauthorized(401, "unknown user or wrong password")
        self.token = f"tok-{username}"
        answer = {
            "token": self.token,
            "expires_at": FAR,
            "role": "sysadmin",
            "username": username,
            "must_change_password": username in self.must_change,
        }
        if username in self.must_change:
            answer["password_change_reason"] = "the password was set to be used once; choose your own"
        return answer

    async def logout(self) -> None:
        self.revoked.add(str(self.token))
        self.token = None

    def _user(self) -> str:
        if not self.token or not self.token.startswith("tok-") or self.token in self.revoked:
            raise Unauthorized(401, "invalid or expired token")
        return self.token.removeprefix("tok-")

    async def me(self) -> Me:
        self._check()
        user = self._user()
        return Me(username=user, role="sysadmin", must_change_password=user in self.must_change)

    async def list_servers(self) -> dict[str, Any]:
        self.fleet_reads_by.append(self.token)
        return await super().list_servers()

    async def change_password(self, current: str, new: str) -> dict[str, Any]:
        user = self._user()
        if current != self.password:
            raise ValidationFailed(
                400,
                "current_password is not the current password",
                [{"field": "current_password", "reason": "is not the current password"}],
            )
        if len(new) < 10 or new.startswith("password"):
            raise ValidationFailed(
                400,
                "new_password is one of the most common passwords",
                [{"field": "new_password", "reason": "is one of the most common passwords"}],
            )
        self.changes.append((user, new))
        self.must_change.discard(user)
        return {"username": user, "must_change_password": False, "other_sessions_ended": 0}


def saved(client: AccountsFake, username: str = "alice") -> None:
    save_session(
        client.base_url, {"token": f"tok-{username}", "username": username, "role": "sysadmin", "expires_at": FAR}
    )


def app_for(client: AccountsFake, **kwargs: Any) -> TaskerApp:
    return TaskerApp(client.base_url, client=client, refresh_interval=0.05, **kwargs)


async def shows(pilot, selector: str, text: str, timeout: float = 10.0) -> None:
    """Wait until the widget `selector` of the screen holds `text` (whitespace-insensitive)."""
    wanted = " ".join(text.split())

    def holds() -> bool:
        nodes = pilot.app.screen.query(selector)
        return bool(nodes) and wanted in " ".join(widget_text(pilot.app, selector).split())

    await wait_until(pilot, holds, timeout, f"{selector} to show {text!r}")


async def login_form(pilot) -> None:
    await wait_until(
        pilot,
        lambda: (
            isinstance(pilot.app.screen, LoginScreen) and pilot.app.screen.ready and pilot.app.screen.query("#username")
        ),
        what="the login form",
    )


# --- a saved session is offered, never used silently ---------------------------------------------------


async def test_credentials_typed_at_start_go_to_the_login_form_not_to_the_saved_sessions_fleet():
    """Before: the saved session of alice logged in silently and the fleet took `bob`, tab, the
    password and enter as commands. Now the screen says whose session it is and what is typed
    logs bob in."""
    client = AccountsFake()
    saved(client, "alice")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await shows(pilot, "#login-saved", f"Saved session: alice (sysadmin) on {client.base_url}")
        await shows(pilot, "#login-message", "Press enter to continue as alice, or type another username and password")
        await pilot.pause(0.3)  # the saved session is not used on its own meanwhile
        assert isinstance(app.screen, LoginScreen) and client.fleet_reads_by == []
        await login(pilot, "bob", client.password)
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert app.user["username"] == "bob"
        await wait_until(pilot, lambda: client.fleet_reads_by, what="the fleet read")
        assert set(client.fleet_reads_by) == {"tok-bob"}  # alice's session was never used
    assert load_session(client.base_url).username == "bob"  # the switch is remembered


async def test_enter_on_the_empty_form_continues_the_saved_session_it_names():
    client = AccountsFake()
    saved(client, "alice")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await shows(pilot, "#login-saved", "Saved session: alice (sysadmin)")
        await wait_until(pilot, lambda: "^l Log out" in screen_words(app), what="ctrl+l in the footer")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert app.user["username"] == "alice"


async def test_ctrl_l_logs_the_saved_session_out_and_forgets_it():
    client = AccountsFake()
    saved(client, "alice")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await shows(pilot, "#login-saved", "Saved session: alice")
        await pilot.press("ctrl+l")
        await shows(pilot, "#login-message", "Logged out the saved session of alice. Log in.")
        assert "Saved session" not in screen_words(app)
        assert "tok-alice" in client.revoked and load_session(client.base_url) is None
        await pilot.press("enter")  # the empty form no longer means anything
        await shows(pilot, "#login-message", "Enter your username.")
        assert isinstance(app.screen, LoginScreen)


async def test_a_saved_session_ended_on_the_backend_says_so_and_asks_to_log_in():
    client = AccountsFake()
    saved(client, "alice")
    client.revoked.add("tok-alice")  # e.g. `tasker users disable alice`
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await shows(pilot, "#login-saved", "Saved session: alice")
        await pilot.press("enter")
        await shows(pilot, "#login-message", "The saved session of alice no longer holds (invalid or expired token)")
        assert isinstance(app.screen, LoginScreen) and load_session(client.base_url) is None
        assert "Saved session" not in screen_words(app)


async def test_without_a_saved_session_the_form_is_as_before():
    client = AccountsFake()
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await pilot.pause(0.2)
        assert "Saved session" not in screen_words(app) and "Log out" not in screen_words(app)
        await login(pilot, "alice", client.password)
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")


# --- a password that must change -----------------------------------------------------------------------


async def test_a_one_time_password_asks_for_a_new_one_before_the_fleet_opens():
    client = AccountsFake()
    client.must_change.add("admin")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "admin", client.password)
        await shows(pilot, "#change-intro", "admin must choose a new password before using Tasker")
        assert not app.screen.query_one("#username").display
        assert not app.screen.query_one("#current-password").display  # just typed: not asked again
        assert app.screen.focused is app.screen.query_one("#new-password")
        await type_text(pilot, "password-1234")
        await pilot.press("enter")  # on to the second field
        await type_text(pilot, "password-1234")
        await pilot.press("enter")
        await shows(pilot, "#login-message", "Refused: the new password is one of the most common passwords.")
        await type_text(pilot, NEW_PASSWORD)
        await pilot.press("enter")
        await type_text(pilot, NEW_PASSWORD + "x")
        await pilot.press("enter")
        await shows(pilot, "#login-message", "The two new passwords differ; type them again.")
        assert client.changes == [] and isinstance(app.screen, LoginScreen)
        await type_text(pilot, NEW_PASSWORD)
        await pilot.press("enter")
        await type_text(pilot, NEW_PASSWORD)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert client.changes == [("admin", NEW_PASSWORD)] and app.user["username"] == "admin"


async def test_a_saved_session_that_must_change_asks_for_the_current_password_too():
    client = AccountsFake()
    client.must_change.add("admin")
    saved(client, "admin")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login_form(pilot)
        await shows(pilot, "#login-saved", "Saved session: admin")
        await pilot.press("enter")
        await shows(pilot, "#change-intro", "admin must choose a new password")
        assert app.screen.focused is app.screen.query_one("#current-password")
        for text in ("not the password", NEW_PASSWORD, NEW_PASSWORD):
            await type_text(pilot, text)
            await pilot.press("enter")
        await shows(pilot, "#login-message", "The current password is wrong; type it again.")
        await type_text(pilot, client.password)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="the fleet")
        assert client.changes == [("admin", NEW_PASSWORD)]


async def test_ctrl_l_gives_up_the_change_and_logs_out():
    client = AccountsFake()
    client.must_change.add("admin")
    app = app_for(client)
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "admin", client.password)
        await shows(pilot, "#change-intro", "admin must choose a new password")
        await pilot.press("ctrl+l")
        await shows(pilot, "#login-message", "Logged out without changing the password; log in again.")
        assert app.screen.query_one("#username").display and "tok-admin" in client.revoked
        assert load_session(client.base_url) is None


# --- over a real backend ------------------------------------------------------------------------------


async def test_a_generated_password_is_changed_in_the_tui_over_a_real_backend(backend):
    import re

    made = backend.stack.run("users", "add", "tui-fresh", "--role", "sysadmin")
    one_time = re.search(r"Password, shown only now: (\S+)", made).group(1)
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=SIZE) as pilot:
        await login(pilot, "tui-fresh", one_time)
        await shows(pilot, "#change-intro", "tui-fresh must choose a new password before using Tasker")
        await type_text(pilot, "tui-fresh2024")
        await pilot.press("enter")
        await type_text(pilot, "tui-fresh2024")
        await pilot.press("enter")
        await wait_until(pilot, lambda: "username" in widget_text(app, "#login-message"), what="the refusal")
        assert "Refused: the new password is the username with digits or symbols added" in widget_text(
            app, "#login-message"
        )
        for _ in range(2):
            await type_text(pilot, NEW_PASSWORD)
            await pilot.press("enter")
        await wait_until(
            pilot, lambda: isinstance(app.screen, FleetScreen) and app.link_status.live, what="the live fleet"
        )
    async with backend.client() as api:
        assert (await api.login("tui-fresh", NEW_PASSWORD))["must_change_password"] is False
