"""The chrome every screen shares: the top bar and the connection banner."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from tasker_tui.literal import one_line
from tasker_tui.live_link import LinkStatus


class TopBar(Static):
    """One line: where you are, the connection state, the chat badge and who you are."""

    def show(self, title: str, status: LinkStatus, unread: int, user: str, chat_key: str, saved: str = "") -> None:
        """Draw the bar; `saved` ("saved today: 1.2 kg CO2e") goes first on the right. When 80
        columns cannot hold it all, the user goes first, then `saved` shortens to `saved`."""
        width = max(0, self.size.width - 2)
        left = Text.assemble(("Tasker", "bold"), " ▸ ", (one_line(title), "bold"))
        for with_user, saved_text in ((True, saved), (False, saved), (False, saved.replace(" today", ""))):
            right = self._right(status, unread, user if with_user else "", chat_key, saved_text)
            if left.cell_len + 1 + right.cell_len <= width:
                break
        gap = max(1, width - left.cell_len - right.cell_len)
        self.update(Text.assemble(left, " " * gap, right))

    @staticmethod
    def _right(status: LinkStatus, unread: int, user: str, chat_key: str, saved: str) -> Text:
        right = Text()
        if saved:
            right.append(saved + "  ", "bold green")
        if status.state == "idle":
            pass
        elif status.live:
            right.append("● live", "bold green")
        elif status.state == "connecting":
            right.append("◌ connecting", "bold yellow")
        else:
            right.append("○ offline", "bold red")
        if chat_key:  # screens without the chat (login) do not offer it
            right.append("  " if right else "")
            badge = f" chat {unread} " if unread else " chat "
            right.append(badge, "bold reverse magenta" if unread else "dim")
            right.append(f" {chat_key}", "dim")
        if user:
            right.append(f"  {one_line(user)}", "italic")
        return right


class ConnectionBanner(Static):
    """Shown only while the backend or the websocket is away; says what and when it retries."""

    def show(self, status: LinkStatus, stale_hint: bool = True) -> None:
        if status.live or status.state == "idle":
            self.remove_class("-visible")
            return
        self.add_class("-visible")
        if status.state == "connecting":
            text = Text("◌ Connecting to the backend…", "bold")
        elif status.state == "unauthorized":
            text = Text(f"⚠ Session refused: {one_line(status.message)}. Log in again.", "bold")
        else:
            retry = ""
            if status.retry_at is not None:
                seconds = max(0, round(status.retry_at - time.monotonic()))
                retry = f" Reconnecting in {seconds}s (attempt {status.attempt})." if seconds else " Reconnecting…"
            text = Text.assemble(("⚠ Backend connection lost: ", "bold"), one_line(status.message) + ".", retry)
            if stale_hint:
                text.append(" Showing last data, marked stale.")
        self.update(text)
