"""How chat is written on screen: the message log, the conversation list, who is online.

Pure functions from the chat model to Rich `Text` (never markup strings, so nothing in a
message can style or link anything); no Textual, no I/O.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

from rich.style import Style
from rich.text import Text

from tasker.models import OnlineUser, ServerLink
from tasker_tui.chat.model import Conversation, OutboxEntry
from tasker_tui.literal import printable

MESSAGES_SHOWN = 300
"""Newest messages drawn in the log (older ones stay one page-up away)."""
_SERVER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def clock(ts_ms: int, now: float | None = None) -> str:
    """HH:MM for today, else "Mon 12 HH:MM" (local time)."""
    when = datetime.fromtimestamp(ts_ms / 1000)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    return when.strftime("%H:%M") if when.date() == today else when.strftime("%b %d %H:%M")


def server_link(server: ServerLink | None) -> Text | None:
    """ "↗ web-1" that opens the server's detail when clicked (ctrl+o opens the newest)."""
    if server is None:
        return None
    server_id, name = server.id, printable(server.name)
    if not _SERVER_ID.fullmatch(server_id):
        return None
    style = Style(color="cyan", underline=True, meta={"@click": f"app.open_server('{server_id}')"})
    return Text.assemble(("↗ ", "cyan"), (name, style))


def message_log(conversation: Conversation | None, me: str, pending: list[OutboxEntry]) -> Text:
    """The conversation's messages oldest first, then what is still on its way."""
    out = Text()
    if conversation is None:
        return Text("No conversation yet.", style="dim")
    messages = conversation.ordered()[-MESSAGES_SHOWN:]
    if conversation.more_before and messages:
        out.append("pgup: older messages\n", style="dim")
    if not messages and not pending:
        out.append("No messages yet. Type below and press enter.\n", style="dim")
    for message in messages:
        mine = message.sender == me
        who = "you" if mine else printable(message.sender or "?")
        role = message.sender_role
        out.append(f"{clock(message.ts_ms)} ", style="dim")
        out.append(who, style="bold green" if mine else "bold magenta" if role == "sysadmin" else "bold cyan")
        if role in ("engineer", "admin") and not mine:
            out.append(" (support)", style="dim")
        out.append("\n")
        out.append(printable(message.text))
        out.append("\n")
        link = server_link(message.server)
        if link is not None:
            out.append("  ")
            out.append_text(link)
            out.append("\n")
    seen = seen_line(conversation, me)
    if seen:
        out.append(seen + "\n", style="dim italic")
    for entry in pending:
        if entry.error:
            out.append(f"✗ not sent: {printable(entry.text)[:80]}\n  {printable(entry.error)}\n", style="bold red")
        else:
            note = entry.waiting or "sending…"
            out.append(f"⧗ you ({note})\n", style="yellow")
            out.append(printable(entry.text) + "\n", style="dim")
    return out


def seen_line(conversation: Conversation, me: str) -> str:
    """ "seen by eve" when others have read up to the last message."""
    if not conversation.messages:
        return ""
    newest = max(conversation.messages)
    if conversation.messages[newest].sender != me:
        return ""
    readers = sorted(name for name, read in conversation.seen_by.items() if read >= newest and name != me)
    return printable(f"✓ seen by {', '.join(readers)}") if readers else ""


def typing_line(conversation: Conversation | None) -> Text:
    if conversation is None:
        return Text()
    typists = conversation.typists()
    if not typists:
        return Text()
    return Text(printable(f"{', '.join(typists)} {'is' if len(typists) == 1 else 'are'} typing…"))


def online_line(online: list[OnlineUser], me: str, support: bool) -> Text:
    """Who is around: for a sysadmin, the support staff who can answer; for support, the
    sysadmins online and the other support staff."""
    staff = [u.username for u in online if u.role in ("engineer", "admin") and u.username != me]
    text = Text()
    if support:
        sysadmins = [u.username for u in online if u.role == "sysadmin"]
        text.append("● " if sysadmins else "○ ", style="green" if sysadmins else "dim")
        text.append(
            printable(f"sysadmins online: {', '.join(sysadmins)}") if sysadmins else "no sysadmin online",
            style="" if sysadmins else "dim",
        )
        if staff:
            text.append(printable(f"\n● other support online: {', '.join(staff)}"), style="dim")
        return text
    if staff:
        text.append("● ", style="green")
        text.append(printable(f"support online: {', '.join(staff)}"))
    else:
        text.append("○ ", style="red")
        text.append("no support engineer online", style="dim")
    return text


def conversation_label(conversation: Conversation, online: set[str]) -> Text:
    """A row of the support list: presence dot, name, unread count."""
    label = Text()
    label.append("● " if conversation.name in online else "  ", style="green")
    label.append(printable(conversation.name), style="bold" if conversation.unread else "")
    if conversation.unread:
        label.append(f" ({conversation.unread})", style="bold magenta")
    return label
