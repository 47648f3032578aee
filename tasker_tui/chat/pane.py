"""The docked chat pane. A placeholder until chat lands: it says so, and shows no conversation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from tasker_tui.chat.state import ChatState


class ChatPane(Vertical):
    """Side pane for the support conversation; visibility is set by the screen that docks it."""

    DEFAULT_CSS = """
    ChatPane {
        dock: right;
        width: 36;
        border-left: tall $accent;
        background: $surface;
        padding: 0 1;
        display: none;
    }
    ChatPane.-open { display: block; }
    ChatPane #chat-title { text-style: bold; color: $accent; }
    ChatPane #chat-status { color: $text-muted; margin-top: 1; }
    """

    def __init__(self, state: ChatState, **kwargs) -> None:
        super().__init__(**kwargs)
        self.state = state

    def compose(self) -> ComposeResult:
        yield Static("Support chat", id="chat-title")
        yield Static(self.state.status, id="chat-status")

    def sync(self) -> None:
        """Repaint from the chat state (attributes down)."""
        for status in self.query("#chat-status").results(Static):
            status.update(self.state.status)
