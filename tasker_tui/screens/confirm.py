"""A yes/no modal. Deleting a server or cancelling a task goes through it; No has the focus.

It answers only keys pressed after it was drawn: a key typed ahead (say `c` then `y` in one
burst) reached the terminal before the question did, so it cannot be an answer to it. The app
drops such keys (`refuses_type_ahead`, see `tasker_tui.type_ahead`); the screen checks again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tasker.models import Server
from tasker_tui.literal import literal


class ConfirmScreen(ModalScreen[bool]):
    """Asks one question; dismisses with True only on an explicit yes."""

    AUTO_FOCUS = "#no"
    BINDINGS = [
        Binding("y", "answer(True)", "Yes", tooltip="Confirm"),
        Binding("n,escape", "answer(False)", "No", tooltip="Cancel"),
    ]

    def __init__(self, question: str, detail: str, yes_label: str = "Yes", no_label: str = "Cancel") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes_label = yes_label
        self.no_label = no_label
        # None until the question has been drawn: a key typed before then was typed ahead.
        self.shown_at: float | None = None

    refuses_type_ahead = True

    @property
    def shown(self) -> bool:
        return self.shown_at is not None

    @property
    def ready(self) -> bool:
        return self.shown

    def on_mount(self) -> None:
        self.call_after_refresh(self._show)

    def _show(self) -> None:
        self.shown_at = time.monotonic()

    def _typed_ahead(self) -> bool:
        typed_before = getattr(self.app, "typed_before", None)
        return not self.shown or (typed_before is not None and typed_before(self.shown_at))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # The answer keys count only when pressed after the question was drawn.
        return action != "answer" or not self._typed_ahead()

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(literal(self.question), id="confirm-question")
            yield Static(literal(self.detail), id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes_label} (y)", variant="error", id="yes", compact=True)
                yield Button(f"{self.no_label} (n)", id="no", compact=True)

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if not self._typed_ahead():
            self.dismiss(event.button.id == "yes")


def confirm_delete(app: App, server: Server, then: Callable[[str | None], object]) -> None:
    """Ask before deleting `server`; `then` gets its id when confirmed, None otherwise."""
    question = f"Delete server {server.name}?"
    detail = "It leaves the fleet and stops being watched. Its readings are kept until they expire."

    def answered(yes: bool | None) -> None:
        then(server.id if yes else None)

    app.push_screen(ConfirmScreen(question, detail, yes_label="Delete"), answered)


def ask(
    app: App, question: str, detail: str, yes_label: str, then: Callable[[bool], object], no_label: str = "Cancel"
) -> None:
    """Ask `question`; `then(True)` only on an explicit yes pressed after it was shown."""

    def answered(yes: bool | None) -> None:
        then(bool(yes))

    app.push_screen(ConfirmScreen(question, detail, yes_label, no_label), answered)
