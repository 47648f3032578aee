"""Login: username and password against the backend, or a saved session the user chose to
continue; and the new password a user must choose before anything else.

A saved session is never used silently: the screen says whose it is and where (user, role,
backend URL), and the user continues with it (enter on the empty form) or switches user by
typing another username and password (ctrl+l logs the saved session out and forgets it). So
what the user types at this screen always goes to this screen, never to the fleet behind it.

When the backend says the password must be changed (`must_change_password`: the first admin's
one-time password, a generated one, an admin's reset, a password the policy now refuses), the
same screen asks for the new password twice before the fleet opens.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Input, Static

from tasker.session import StoredSession, forget_session, load_session, save_session
from tasker_tui.literal import literal
from tasker_tui.screens.base import TaskerScreen

NEW_PASSWORD_RULES = (
    "At least 10 characters; not your username, not a common password (even "
    "with digits or symbols added), not a keyboard run."
)
LOGIN_FIELDS = ("#username", "#password")
CHANGE_FIELDS = ("#change-intro", "#current-password", "#new-password", "#new-password-again")


@dataclass
class PasswordChange:
    """The user logged in and must choose a new password before the fleet opens."""

    user: dict[str, Any]
    current: str | None
    """The password just typed to log in; None when continuing a saved session (then asked)."""


def _until(expires_at_ms: int | None) -> str:
    if expires_at_ms is None:
        return ""
    moment = datetime.fromtimestamp(expires_at_ms / 1000, tz=timezone.utc)
    return f", valid until {moment:%Y-%m-%d %H:%M} UTC"


class LoginScreen(TaskerScreen):
    """Asks for credentials; a wrong password or an unreachable backend is said on the screen."""

    SCREEN_TITLE = "Log in"
    HAS_CHAT = False
    AUTO_FOCUS = "#username"
    BINDINGS = [
        # Priority: the fields would take enter (and q) for themselves and hide these keys.
        Binding("enter", "submit", "Log in", priority=True, tooltip="Log in with these credentials"),
        Binding("ctrl+r", "retry_session", "Retry", tooltip="Try the saved session again"),
        Binding(
            "ctrl+l",
            "log_out_here",
            "Log out",
            tooltip="Log the saved session out and forget it, or give up changing the password",
        ),
        Binding("ctrl+q", "app.quit", "Quit", priority=True, tooltip="Quit Tasker"),
    ]

    def __init__(self, message: str = "") -> None:
        super().__init__()
        self.initial_message = message
        # ctrl+r is offered only after a saved session could not be checked.
        self.can_retry = False
        # Said "Starting the embedded backend…" while the app prepared it.
        self.waiting = False
        # The saved session offered (not used until the user says so), if any.
        self.saved: StoredSession | None = None
        # Set while the user must choose a new password.
        self.changing: PasswordChange | None = None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry_session":
            return self.can_retry
        if action == "log_out_here":
            return self.saved is not None or self.changing is not None
        return True

    def compose_body(self) -> ComposeResult:
        with Center(id="login-center"):
            with Vertical(id="login-box"):
                yield Static("Tasker", id="login-title")
                yield Static(literal(f"Backend: {self.tasker.url or 'starting…'}"), id="login-url")
                yield self._hidden(Static("", id="login-saved"))
                yield Input(placeholder="username", id="username")
                yield Input(placeholder="password", password=True, id="password")
                yield self._hidden(Static("", id="change-intro"))
                yield self._hidden(Input(placeholder="current password", password=True, id="current-password"))
                yield self._hidden(Input(placeholder="new password", password=True, id="new-password"))
                yield self._hidden(Input(placeholder="new password again", password=True, id="new-password-again"))
                yield Static(
                    literal(self.initial_message), id="login-message", classes="-error" if self.initial_message else ""
                )

    @staticmethod
    def _hidden(widget: Any) -> Any:
        widget.display = False
        return widget

    def _show(self, selectors: tuple[str, ...], shown: bool) -> None:
        for selector in selectors:
            self.query_one(selector).display = shown

    def _become_ready(self) -> None:
        super()._become_ready()
        if self.tasker.preparing:
            self.waiting = True
            self.say("Starting the embedded backend…")
            return  # the app calls backend_ready when it runs
        self.backend_ready()

    def backend_ready(self) -> None:
        """The backend is there (at once, or once the app has prepared it): show where, log in."""
        self.query_one("#login-url", Static).update(literal(f"Backend: {self.tasker.url}"))
        if self.waiting:
            self.waiting = False
            self.say("")
        self._begin()

    def _begin(self) -> None:
        app = self.tasker
        if app.auto_login:
            username, password = app.auto_login
            app.auto_login = None
            self.query_one("#username", Input).value = username
            self.query_one("#password", Input).value = password
            self.login(username, password)
        elif app.remember_session and not self.initial_message:
            self.offer_saved_session()

    def say(self, text: str, *, error: bool = False) -> None:
        """Show `text` (often the backend's own words) under the form, literally."""
        message = self.query_one("#login-message", Static)
        message.update(literal(text))
        message.set_class(error, "-error")

    # --- a saved session: offered, never used unasked ------------------------------------------

    def offer_saved_session(self) -> None:
        """Say whose session is saved for this backend; enter on the empty form continues it."""
        stored = load_session(self.tasker.url)
        self._offer(stored)
        if stored is not None:
            self.say(
                f"Press enter to continue as {stored.username}, or type another username and "
                "password to switch user (ctrl+l logs the saved session out)."
            )

    def _offer(self, stored: StoredSession | None) -> None:
        self.saved = stored
        saved = self.query_one("#login-saved", Static)
        if stored is not None:
            role = f" ({stored.role})" if stored.role else ""
            saved.update(
                literal(
                    f"Saved session: {stored.username or '?'}{role} on {self.tasker.url}{_until(stored.expires_at_ms)}"
                )
            )
        saved.display = stored is not None
        self.refresh_bindings()

    def action_submit(self) -> None:
        if self.tasker.preparing:
            return  # nothing to log in to yet
        if self.changing is not None:
            self._submit_change()
            return
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
        if self.saved is not None and not username and not password:
            self.continue_saved_session()
            return
        if not username:
            self.query_one("#username", Input).focus()
            self.say("Enter your username.", error=True)
            return
        if not password:
            box = self.query_one("#password", Input)
            if self.focused is box:
                self.say("Enter your password.", error=True)
            box.focus()  # enter after the username goes on to the password
            return
        self.login(username, password)

    def action_retry_session(self) -> None:
        self.can_retry = False
        self.refresh_bindings()
        self.continue_saved_session()

    def action_log_out_here(self) -> None:
        if self.changing is not None:
            self.give_up_change()
        elif self.saved is not None:
            self.log_out_saved_session()

    @work(exclusive=True, group="login", exit_on_error=False)
    async def log_out_saved_session(self) -> None:
        """End the saved session on the backend (best effort) and forget it here."""
        from tasker.client import ApiError

        app, stored = self.tasker, self.saved
        if stored is None:
            return
        self._offer(None)
        app.client.token = stored.token
        try:
            await app.client.logout()
        except ApiError:
            pass  # expired, or the backend is away: forgetting it here is what matters
        app.client.token = None
        forget_session(app.url)
        self.say(f"Logged out the saved session of {stored.username}. Log in.")
        self.query_one("#username", Input).focus()

    @work(exclusive=True, group="login", exit_on_error=False)
    async def continue_saved_session(self) -> None:
        from tasker.client import ApiError, Unauthorized

        app, stored = self.tasker, self.saved
        if stored is None:
            return
        self.say(f"Resuming the saved session of {stored.username}…")
        app.client.token = stored.token
        try:
            me = await app.client.me()
        except Unauthorized as exc:
            forget_session(app.url)
            app.client.token = None
            self._offer(None)
            self.say(
                f"The saved session of {stored.username} no longer holds ({exc.message}); log in again.", error=True
            )
            self.query_one("#username", Input).focus()
            return
        except ApiError as exc:
            app.client.token = None
            self.say(f"{exc.message}. Press ctrl+r to retry, or log in.", error=True)
            self.can_retry = True
            self.refresh_bindings()
            return
        user = {"username": me.username, "role": me.role}
        self._offer(None)
        if me.must_change_password:
            self.begin_change(user, None, "")
            return
        app.logged_in(user)

    # --- logging in --------------------------------------------------------------------------

    @work(exclusive=True, group="login", exit_on_error=False)
    async def login(self, username: str, password: str) -> None:
        from tasker.client import ApiError, BackendUnavailable, Forbidden, Unauthorized

        app = self.tasker
        self.say("Logging in…")
        try:
            answer = await app.client.login(username, password)
        except (Unauthorized, Forbidden) as exc:
            self.say(f"Login refused: {exc.message}", error=True)
            self.query_one("#password", Input).value = ""
            self.query_one("#password", Input).focus()
            return
        except BackendUnavailable as exc:
            hint = " Is the backend running? (tasker backend, or tasker demo)" if exc.unreachable else ""
            self.say(exc.message + "." + hint, error=True)
            return
        except ApiError as exc:
            self.say(exc.describe(), error=True)
            return
        if app.remember_session:
            save_session(app.url, answer)  # replaces the saved session offered, if any
        self._offer(None)
        user = {"username": answer.get("username") or username, "role": answer.get("role", "")}
        if answer.get("must_change_password"):
            self.begin_change(user, password, str(answer.get("password_change_reason") or ""))
            return
        app.logged_in(user)

    # --- a new password before anything else ----------------------------------------------------

    def begin_change(self, user: dict[str, Any], current: str | None, reason: str) -> None:
        """Swap the form for the new-password fields."""
        self.changing = PasswordChange(user, current)
        self._show(LOGIN_FIELDS, False)
        self._show(CHANGE_FIELDS, True)
        self.query_one("#current-password").display = current is None
        why = f" ({reason})" if reason else ""
        self.query_one("#change-intro", Static).update(
            literal(f"{user['username']} must choose a new password before using Tasker{why}. {NEW_PASSWORD_RULES}")
        )
        self.say("Type the new password twice, then press enter.")
        self.query_one("#current-password" if current is None else "#new-password", Input).focus()
        self.refresh_bindings()

    def _end_change(self) -> None:
        self.changing = None
        for selector in CHANGE_FIELDS[1:] + LOGIN_FIELDS[1:]:
            self.query_one(selector, Input).value = ""
        self._show(CHANGE_FIELDS, False)
        self._show(LOGIN_FIELDS, True)
        self.refresh_bindings()

    def _submit_change(self) -> None:
        assert self.changing is not None
        current_box = self.query_one("#current-password", Input)
        new_box = self.query_one("#new-password", Input)
        again_box = self.query_one("#new-password-again", Input)
        current = self.changing.current if self.changing.current is not None else current_box.value
        if not current:
            current_box.focus()
            self.say("Enter your current password.", error=True)
            return
        if not new_box.value:
            if self.focused is new_box:
                self.say("Enter the new password.", error=True)
            new_box.focus()  # enter after the current password goes on to the new one
            return
        if not again_box.value:
            if self.focused is again_box:
                self.say("Type the new password again.", error=True)
            again_box.focus()  # enter after the new password goes on to the second one
            return
        if new_box.value != again_box.value:
            new_box.value = again_box.value = ""
            new_box.focus()
            self.say("The two new passwords differ; type them again.", error=True)
            return
        self.change_password(current, new_box.value)

    @work(exclusive=True, group="login", exit_on_error=False)
    async def change_password(self, current: str, new: str) -> None:
        from tasker.client import ApiError, Unauthorized, ValidationFailed

        app, changing = self.tasker, self.changing
        if changing is None:
            return
        self.say("Changing the password…")
        try:
            await app.client.change_password(current, new)
        except ValidationFailed as exc:
            reasons = {str(d.get("field")): str(d.get("reason", "")) for d in exc.details}
            new_box = self.query_one("#new-password", Input)
            if "current_password" in reasons:
                changing.current = None
                box = self.query_one("#current-password", Input)
                box.display, box.value = True, ""
                box.focus()
                self.say("The current password is wrong; type it again.", error=True)
            elif "new_password" in reasons:
                new_box.value = self.query_one("#new-password-again", Input).value = ""
                new_box.focus()
                self.say(f"Refused: the new password {reasons['new_password']}.", error=True)
            else:
                self.say(exc.describe(), error=True)
            return
        except Unauthorized as exc:
            self._end_change()
            app.session_refused(exc.message)
            return
        except ApiError as exc:
            self.say(exc.describe(), error=True)
            return
        self._end_change()
        app.notify("Password changed.", title="Tasker")
        app.logged_in(changing.user)

    @work(exclusive=True, group="login", exit_on_error=False)
    async def give_up_change(self) -> None:
        """Log out instead of changing the password: back to the login form."""
        from tasker.client import ApiError

        app = self.tasker
        self._end_change()
        try:
            await app.client.logout()
        except ApiError:
            pass  # the session dies locally either way
        app.client.token = None
        if app.remember_session:
            forget_session(app.url)
        self.say("Logged out without changing the password; log in again.")
        self.query_one("#username", Input).focus()
