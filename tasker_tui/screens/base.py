"""What every Tasker screen has: top bar, connection banner, chat pane, footer, error handling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import ActiveBinding, Binding
from textual.keys import key_to_character
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState

from tasker_tui.screens.host import ScreenHost
from tasker_tui.widgets.chrome import ConnectionBanner, TopBar

if TYPE_CHECKING:
    from tasker_tui.chat.pane import ChatPane

# Styles shared by the forms (the focused field stands out); a screen loads them with CSS_PATH.
FORM_CSS = Path(__file__).parent / "forms.tcss"

# Actions that change the fleet or the tasks: the backend refuses them to roles that only read
# (engineers), so those roles are not offered them.
WRITER_ACTIONS = frozenset({"add", "edit", "delete", "new", "cancel_task"})


def typed_character(binding: Binding) -> str | None:
    """The character a binding's key types in a text field (`slash` is `/`), or None."""
    character = key_to_character(binding.key)
    if character is None and binding.key_display and len(binding.key_display) == 1:
        character = binding.key_display
    return character


class TaskerScreen(Screen):
    """Base screen. Subclasses yield their body from `compose_body` and draw live data in
    `refresh_live`, which the app calls on its refresh tick only for the screen on top."""

    SCREEN_TITLE = ""
    # Screens after login dock the chat pane; the login screen has nobody to chat as yet.
    HAS_CHAT = True
    # No blanket auto-focus ("" turns it off; None would mean the app's "*"): it would land in
    # the hidden chat pane and shadow the screen's keys. Screens with a main widget name it.
    AUTO_FOCUS = ""
    # Set once the screen's widgets exist; until then the app's tick leaves the screen alone.
    ready = False

    @property
    def tasker(self) -> ScreenHost:
        """The app running this screen, as what a screen may ask of it (see `ScreenHost`)."""
        return cast(ScreenHost, self.app)

    def compose(self) -> ComposeResult:
        yield TopBar(id="topbar")
        yield ConnectionBanner(id="banner")
        yield from self.compose_body()
        if self.HAS_CHAT:
            from tasker_tui.chat import ChatPane

            yield ChatPane(self.tasker.chat, id="chat-pane")
        yield Footer(compact=True)

    def compose_body(self) -> ComposeResult:
        yield from ()

    @property
    def title_text(self) -> str:
        return self.SCREEN_TITLE

    # --- what is offered ------------------------------------------------------------------

    def may(self, action: str) -> bool:
        """Whether the logged-in user's role may run `action` (a writer action needs a writer)."""
        return action.removeprefix("app.") not in WRITER_ACTIONS or self.tasker.can_write

    def offers(self, binding: Binding, *, focus_matters: bool = True) -> bool:
        """Whether the footer, help and palette offer this key: the role may use it, and (with
        `focus_matters`) the focused text field would not type it instead."""
        if not self.may(binding.action):
            return False
        focused = self.focused
        if focus_matters and focused is not None:
            return not focused.check_consume_key(binding.key, typed_character(binding))
        return True

    @property
    def active_bindings(self) -> dict[str, ActiveBinding]:
        """Textual's active keys, less those this user or focus cannot use (see `offers`)."""
        return {key: active for key, active in super().active_bindings.items() if self.offers(active.binding)}

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.may(action)

    def on_mount(self) -> None:
        # Nested widgets (the chat pane's own children) finish mounting before the first
        # refresh; only then is the screen handed to the app's tick.
        self.call_after_refresh(self._become_ready)

    def _become_ready(self) -> None:
        self.ready = True
        self.sync_chrome()
        self.refresh_live()

    def on_screen_resume(self) -> None:
        # The resume of a screen closed meanwhile (a delete from it) arrives late: nothing to draw.
        if self.ready and self.is_current:
            self.sync_chrome()
            self.refresh_live()

    def on_resize(self) -> None:
        self.sync_chrome()

    def sync_chrome(self) -> None:
        """Repaint the top bar, banner and chat pane from the app's state."""
        app = self.tasker
        if not self.ready:
            return
        user = app.user.get("username", "") if app.user else ""
        role = app.user.get("role", "") if app.user else ""
        self.query_one(TopBar).show(
            self.title_text,
            app.link_status,
            app.chat_unread,
            f"{user} ({role})" if role else user,
            app.chat_key if self.HAS_CHAT else "",
            saved=app.saved_today if self.HAS_CHAT else "",
        )
        self.query_one(ConnectionBanner).show(app.link_status)
        self.set_class(app.chat_open and self.HAS_CHAT, "-chat-open")  # toasts move aside (chat.tcss)
        for pane in self.query("#chat-pane"):
            pane.set_class(app.chat_open, "-open")
            cast("ChatPane", pane).sync()

    def refresh_live(self) -> None:
        """Draw what changed in the app's live state; cheap when nothing did."""

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.tasker.report_error(event.worker.error)
