"""Login: username and password against the backend, or a saved session that is still valid."""

from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Input, Static

from tasker.session import forget_session, load_session, save_session
from tasker_tui.literal import literal
from tasker_tui.screens.base import TaskerScreen


class LoginScreen(TaskerScreen):
    """Asks for credentials; a wrong password or an unreachable backend is said on the screen."""

    SCREEN_TITLE = "Log in"
    HAS_CHAT = False
    AUTO_FOCUS = "#username"
    BINDINGS = [
        # Priority: the fields would take enter (and q) for themselves and hide these keys.
        Binding("enter", "submit", "Log in", priority=True, tooltip="Log in with these credentials"),
        Binding("ctrl+r", "retry_session", "Retry", tooltip="Try the saved session again"),
        Binding("ctrl+q", "app.quit", "Quit", priority=True, tooltip="Quit Tasker"),
    ]

    def __init__(self, message: str = "") -> None:
        super().__init__()
        self.initial_message = message
        # ctrl+r is offered only after a saved session could not be checked.
        self.can_retry = False
        # Said "Starting the embedded backend…" while the app prepared it.
        self.waiting = False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry_session":
            return self.can_retry
        return True

    def compose_body(self) -> ComposeResult:
        with Center(id="login-center"):
            with Vertical(id="login-box"):
                yield Static("Tasker", id="login-title")
                yield Static(literal(f"Backend: {self.tasker.url or 'starting…'}"), id="login-url")
                yield Input(placeholder="username", id="username")
                yield Input(placeholder="password", password=True, id="password")
                yield Static(literal(self.initial_message), id="login-message",
                             classes="-error" if self.initial_message else "")

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
            self.check_saved_session()

    def say(self, text: str, *, error: bool = False) -> None:
        """Show `text` (often the backend's own words) under the form, literally."""
        message = self.query_one("#login-message", Static)
        message.update(literal(text))
        message.set_class(error, "-error")

    def action_submit(self) -> None:
        if self.tasker.preparing:
            return  # nothing to log in to yet
        username = self.query_one("#username", Input).value.strip()
        password = self.query_one("#password", Input).value
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
        self.check_saved_session()

    @work(exclusive=True, group="login", exit_on_error=False)
    async def login(self, username: str, password: str) -> None:
        from tasker.client import ApiError, BackendUnavailable, Unauthorized

        app = self.tasker
        self.say("Logging in…")
        try:
            answer = await app.client.login(username, password)
        except Unauthorized as exc:
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
            save_session(app.url, answer)
        app.logged_in({"username": answer.get("username") or username, "role": answer.get("role", "")})

    @work(exclusive=True, group="login", exit_on_error=False)
    async def check_saved_session(self) -> None:
        from tasker.client import ApiError, Unauthorized

        app = self.tasker
        stored = load_session(app.url)
        if stored is None:
            return
        self.query_one("#username", Input).value = stored.username
        self.say(f"Resuming the saved session of {stored.username}…")
        app.client.token = stored.token
        try:
            me = await app.client.me()
        except Unauthorized:
            forget_session(app.url)
            app.client.token = None
            self.say("The saved session has expired; log in again.", error=True)
            self.query_one("#password", Input).focus()
            return
        except ApiError as exc:
            self.say(f"{exc.message}. Press ctrl+r to retry, or log in.", error=True)
            self.can_retry = True
            self.refresh_bindings()
            return
        app.logged_in({"username": me.get("username", stored.username), "role": me.get("role", stored.role)})
