"""The `?` screen: every key of the screen it was opened from, with what it does."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tasker_tui.literal import literal

MOVING = "↑↓ jk pgup pgdn g G home end move · tab/shift+tab next/previous field"

# What the screens' signs and units mean, after the keys.
LEGEND = (
    ("●", "live: its readings are arriving"),
    ("○", "stale: no reading for several of its intervals (or none yet)"),
    ("W", "power drawn now, in watts (kW for the fleet)"),
    ("g/h", "CO2 emitted now, grams per hour: W × PUE × grid g/kWh"),
    ("g/kWh", "carbon intensity of its electricity (energy source and region)"),
    ("PUE", "site overhead: 1.5 means the site draws 1.5 W per server watt"),
    ("kWh", "energy over a chart's range; kg CO2 (CO2e) emitted over it"),
)


def binding_sections(screen: Screen) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(section title, [(keys, description, explanation)]) for the described keys of `screen`:
    its own first, then those that work everywhere. Cursor keys of widgets are summed up apart;
    two keys for one action (q and Textual's ctrl+q) share a line."""
    own: list[list[str]] = []
    everywhere: list[list[str]] = []
    by_action: dict[tuple[str, str], list[str]] = {}
    for active in screen.active_bindings.values():
        binding, node = active.binding, active.node
        if not binding.description or not binding.tooltip:
            continue  # Tasker's keys all explain themselves; this skips focus and cursor moves
        display = binding.key_display or screen.app.get_key_display(binding)
        action = binding.action.removeprefix("app.")  # a screen may show an app key in its footer
        row = by_action.get((action, binding.description))
        if row is not None:
            keys = row[0].split(" ")
            if display not in keys:
                row[0] = " ".join(sorted([*keys, display], key=len))  # the plain key first
            continue
        row = [display, binding.description, binding.tooltip or ""]
        by_action[(action, binding.description)] = row
        (everywhere if isinstance(node, App) else own).append(row)
    return [
        ("This screen", [(r[0], r[1], r[2]) for r in own]),
        ("Everywhere", [(r[0], r[1], r[2]) for r in everywhere]),
    ]


class HelpScreen(ModalScreen[None]):
    """Keys of the screen below; escape, q or ? closes it."""

    CSS_PATH = Path(__file__).parent / "help.tcss"
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", tooltip="Close the help")]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.sections = binding_sections(under)
        self.under_title = getattr(under, "title_text", "") or "Tasker"

    def compose(self) -> ComposeResult:
        rows = [row for _, section in self.sections for row in section]
        width = max((len(key) for key, _, _ in rows), default=4) + 2
        text = Text()
        for title, section in self.sections:
            if not section:
                continue
            text.append(f"{title}\n", "bold underline")
            for key, description, explanation in section:
                text.append(f"{key:>{width}}  ", "bold cyan")
                text.append(description, "bold")
                if explanation and explanation != description:
                    text.append(f"  {explanation}", "dim")
                text.append("\n")
        text.append(MOVING + "\n", "dim")
        text.append("Every action is also in the command palette (ctrl+p).\n", "italic")
        text.append("Or type : and a command: :tasks, :server web-1, :chat (tab completes).\n", "italic")
        text.append("\nSigns and units\n", "bold underline")
        for sign, meaning in LEGEND:
            text.append(f"{sign:>{width}}  ", "bold")
            text.append(f"{meaning}\n")
        text.rstrip()
        with Vertical(id="help-box"):
            yield Static(literal(f"Keys: {self.under_title}   (esc closes)"), id="help-title")
            with VerticalScroll(id="help-scroll"):
                yield Static(text, id="help-keys")
