"""The docked chat pane: a sysadmin's conversation, or support's list of conversations and the
one selected; an input line; presence and typing; toasts for messages that arrive unseen.

It draws from the app's `ChatState` and does no I/O: what the user types goes to the state's
outbox, which the live link's connection sends.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widget import Widget
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from tasker.models import ServerLink
from tasker_tui.chat.render import conversation_label, message_log, online_line, typing_line
from tasker_tui.chat.state import ChatState
from tasker_tui.literal import literal, printable


class ChatPane(Vertical):
    """Side pane for the support chat; visibility is set by the screen that docks it."""

    DEFAULT_CSS = """
    ChatPane {
        dock: right;
        width: 44;
        max-width: 45%;
        border-left: tall $accent;
        background: $surface;
        padding: 0 1;
        display: none;
    }
    ChatPane.-open { display: block; }
    ChatPane #chat-title { text-style: bold; color: $accent; height: 1; }
    ChatPane #chat-online { height: auto; max-height: 3; }
    ChatPane #chat-conversations { height: auto; max-height: 7; border: none; padding: 0; display: none; }
    ChatPane.-support #chat-conversations { display: block; }
    ChatPane #chat-head { height: auto; text-style: bold; border-top: hkey $panel; }
    ChatPane #chat-log { height: 1fr; scrollbar-size-vertical: 1; }
    ChatPane #chat-typing { height: 1; color: $text-muted; text-style: italic; }
    ChatPane #chat-attachment { height: auto; color: $accent; display: none; }
    ChatPane #chat-attachment.-visible { display: block; }
    ChatPane #chat-input { margin: 0; }
    ChatPane #chat-notice { height: auto; color: $error; }
    """

    BINDINGS = [
        Binding("escape", "close", "Close chat", tooltip="Hide the chat pane"),
        Binding(
            "ctrl+b",
            "attach",
            "Attach server",
            tooltip="Attach the server selected on this screen to your next message",
        ),
        Binding(
            "ctrl+o",
            "open_link",
            "Open linked server",
            tooltip="Open the newest server referenced in this conversation",
        ),
        Binding(
            "ctrl+down", "next_conversation(1)", "Next chat", show=False, tooltip="Show the next conversation (support)"
        ),
        Binding(
            "ctrl+up",
            "next_conversation(-1)",
            "Previous chat",
            show=False,
            tooltip="Show the previous conversation (support)",
        ),
        Binding("pageup", "older", "Older", show=False, tooltip="Scroll up; at the top, load older messages"),
        Binding("pagedown", "newer", "Newer", show=False, tooltip="Scroll down"),
    ]

    def __init__(self, state: ChatState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.attachment: ServerLink | None = None
        self._was_open = False
        self._focus_before: Widget | None = None
        self._syncing = False
        self._labels: list[tuple[str, str]] = []
        self._drawn: tuple[Any, ...] = ()
        self._typing_drawn: str | None = None

    def compose(self) -> ComposeResult:
        yield Static("Support chat", id="chat-title")
        yield Static("", id="chat-online")
        yield OptionList(id="chat-conversations")
        yield Static("", id="chat-head")
        log = VerticalScroll(id="chat-log")
        log.can_focus = False  # scrolled with pgup/pgdn from the input; tab goes to the input
        with log:
            yield Static("", id="chat-messages")
        yield Static("", id="chat-typing")
        yield Static("", id="chat-attachment")
        # Above the input: below it, the line would fall under the footer and never be seen.
        yield Static("", id="chat-notice")
        yield Input(placeholder="Message… (enter sends)", id="chat-input")

    def on_mount(self) -> None:
        self.state.subscribe(self._state_changed)
        self.set_interval(1.0, self._tick_typing)
        self.sync()

    def on_unmount(self) -> None:
        self.state.unsubscribe(self._state_changed)

    def _state_changed(self) -> None:
        # Only the pane of the screen on top draws now; the others catch up when shown.
        if self.is_mounted and self.screen is self.app.screen:
            self.sync()

    # --- drawing -------------------------------------------------------------------------------

    def sync(self) -> None:
        """Repaint from the chat state (attributes down)."""
        if self._syncing or not self.is_mounted:
            return
        self._syncing = True
        try:
            self._sync()
        finally:
            self._syncing = False

    def _sync(self) -> None:
        state = self.state
        is_open = self.has_class("-open")
        if is_open != self._was_open:
            self._was_open = is_open
            self._pane_opened() if is_open else self._pane_closed()
        state.set_viewing(is_open)
        self.set_class(state.is_support, "-support")
        self._announce(is_open)

        title = Text("Support chat", style="bold")
        title.append("" if state.connected else "  (offline)", style="red")
        self.query_one("#chat-title", Static).update(title)
        self.query_one("#chat-online", Static).update(
            online_line(state.online, state.me, state.is_support) if state.connected else literal(state.status, "dim")
        )
        if state.is_support:
            self._sync_list()
        shown = state.shown()
        head = Text()
        if state.is_support:
            head.append(printable(shown.name) if shown else "no conversations yet")
        else:
            head.append("Your conversation with support")
        self.query_one("#chat-head", Static).update(head)
        self._show_typing()
        signature = (state.version, shown.name if shown else None)
        if signature != self._drawn:
            self._drawn = signature
            log = self.query_one("#chat-log", VerticalScroll)
            at_end = log.scroll_offset.y >= log.max_scroll_y - 1
            pending = state.pending_for(shown.name if shown else None)
            self.query_one("#chat-messages", Static).update(message_log(shown, state.me, pending))
            if at_end:
                log.call_after_refresh(log.scroll_end, animate=False)
        attachment = self.query_one("#chat-attachment", Static)
        attachment.set_class(self.attachment is not None, "-visible")
        if self.attachment is not None:
            attachment.update(Text(f"📎 {printable(self.attachment.name)} (ctrl+b removes)"))
        self.query_one("#chat-notice", Static).update(literal(state.notice))

    def _sync_list(self) -> None:
        state = self.state
        online = {u.username for u in state.online}
        rows = [(c.name, conversation_label(c, online)) for c in state.ordered_conversations()]
        labels = [(name, label.plain) for name, label in rows]
        if labels == self._labels:
            return
        self._labels = labels
        options = self.query_one("#chat-conversations", OptionList)
        options.clear_options()
        options.add_options([Option(label, id=name) for name, label in rows])
        names = [name for name, _ in rows]
        if state.selected in names:
            options.highlighted = names.index(state.selected)

    def _tick_typing(self) -> None:
        # "… is typing" fades with time, but only a pane on view needs redrawing for it.
        if self.has_class("-open") and self.screen is self.app.screen:
            self._show_typing()

    def _show_typing(self) -> None:
        if not self.is_mounted:
            return
        line = typing_line(self.state.shown())
        if line.plain != self._typing_drawn:
            self._typing_drawn = line.plain
            self.query_one("#chat-typing", Static).update(line)

    def _announce(self, is_open: bool) -> None:
        """A toast (and the terminal bell) for each message that arrived unseen."""
        alerts = self.state.take_alerts()
        for title, text in alerts:
            hint = "" if is_open else f"  ({getattr(self.app, 'chat_key', 'ctrl+t')} opens the chat)"
            self.app.notify(printable(text) + hint, title=printable(title), timeout=8)
        if alerts:
            self.app.bell()

    def _pane_opened(self) -> None:
        focused = self.app.focused
        self._focus_before = focused if focused is not None and self not in focused.ancestors else None
        self.call_after_refresh(self.query_one("#chat-input", Input).focus)

    def _pane_closed(self) -> None:
        """Give the keys back to what had them before the pane opened."""
        focused = self.app.focused
        if focused is not None and self in focused.ancestors:
            before = self._focus_before
            if before is not None and before.is_attached and before.screen is self.screen:
                before.focus()
            else:
                self.screen.set_focus(None)
                self.screen.focus_next()

    # --- input -----------------------------------------------------------------------------------

    @on(Input.Submitted, "#chat-input")
    def _submit(self, event: Input.Submitted) -> None:
        problem = self.state.submit(event.value, self.attachment)
        if problem:
            self.state.notice = problem
        else:
            event.input.value = ""
            self.attachment = None
            self.state.notice = ""
            self.state.dismiss_refused()
        self.sync()

    @on(Input.Changed, "#chat-input")
    def _typing(self, event: Input.Changed) -> None:
        if event.value:
            self.state.typing()

    @on(OptionList.OptionHighlighted, "#chat-conversations")
    def _choose(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_id is not None:
            self.state.select(event.option_id)

    # --- actions ---------------------------------------------------------------------------------

    async def action_close(self) -> None:
        await self.app.run_action("app.toggle_chat")

    def action_attach(self) -> None:
        """Attach (or detach) the server selected on the screen under the pane."""
        if self.attachment is not None:
            self.attachment = None
        else:
            screen = self.screen
            server_id = getattr(screen, "server_id", None) or getattr(
                getattr(screen, "table", None), "selected_server_id", None
            )
            server = getattr(self.app, "fleet").servers.get(server_id or "")
            if server is None:
                self.state.notice = "select a server on the screen first (fleet row or detail)"
            else:
                self.attachment = ServerLink(server.id, server.name)
                self.state.notice = ""
        self.sync()

    def action_open_link(self) -> None:
        shown = self.state.shown()
        linked = [m.server for m in (shown.ordered() if shown else []) if m.server is not None]
        if not linked:
            self.state.notice = "no server is referenced in this conversation"
            self.sync()
            return
        getattr(self.app, "open_server")(linked[-1].id)

    def action_next_conversation(self, step: int) -> None:
        names = [c.name for c in self.state.ordered_conversations()]
        if not names:
            return
        current = names.index(self.state.selected) if self.state.selected in names else -step
        self.state.select(names[(current + step) % len(names)])

    def action_older(self) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        if log.scroll_offset.y <= 0:
            self.state.load_older()
        else:
            log.scroll_page_up(animate=False)

    def action_newer(self) -> None:
        self.query_one("#chat-log", VerticalScroll).scroll_page_down(animate=False)
