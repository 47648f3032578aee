"""The `?` screen: every key of the screen it was opened from, with what it does."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


def binding_rows(screen: Screen) -> list[tuple[str, str, str]]:
    """(key, description, explanation) of every described binding active on `screen`."""
    rows: list[tuple[str, str, str]] = []
    seen: set[tuple[str, str]] = set()
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description:
            continue
        display = binding.key_display or screen.app.get_key_display(binding)
        if (display, binding.description) in seen:
            continue
        seen.add((display, binding.description))
        rows.append((display, binding.description, binding.tooltip or ""))
    return rows


class HelpScreen(ModalScreen[None]):
    """Keys of the screen below; escape, q or ? closes it."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", tooltip="Close the help")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.rows = binding_rows(under)
        self.under_title = getattr(under, "SCREEN_TITLE", "") or "Tasker"

    def compose(self) -> ComposeResult:
        text = Text()
        width = max((len(k) for k, _, _ in self.rows), default=4) + 2
        for key, description, explanation in self.rows:
            text.append(f"{key:>{width}}  ", "bold cyan")
            text.append(description, "bold")
            if explanation and explanation != description:
                text.append(f"  {explanation}", "dim")
            text.append("\n")
        text.append("\nEvery action is also in the command palette (ctrl+p).", "italic")
        with Vertical(id="help-box"):
            yield Static(f"Keys: {self.under_title}", id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(text, id="help-keys")
