"""The `:` command line, as in k9s: `:tasks`, `:server web-1`, `:chat`; tab completes, a mistake is
said on the line and the line stays open to fix it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Input, Static

from tasker_tui.literal import literal


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    aliases: tuple[str, ...]
    help: str
    takes_server: bool = False


COMMANDS = (
    Command("servers", ("fleet", "srv"), "the fleet table"),
    Command("server", ("s",), "one server's charts: :server <name>", takes_server=True),
    Command("raw", (), "one server's raw readings: :raw <name>", takes_server=True),
    Command("tasks", ("t",), "the tasks table"),
    Command("plan", (), "each server's timeline under its grid intensity"),
    Command("chat", (), "show or hide the support chat"),
    Command("add", (), "register a server"),
    Command("submit", ("new",), "submit a task"),
    Command("help", ("?",), "the keys of the screen below"),
    Command("logout", (), "forget the session and log in again"),
    Command("quit", ("q",), "quit Tasker"),
)
BY_NAME = {alias: c for c in COMMANDS for alias in (c.name, *c.aliases)}


class CommandError(ValueError):
    """A command line that does not name a command (the message says what would)."""


def parse_command(line: str, server_names: Iterable[str]) -> tuple[Command, str]:
    """(command, server name or "") for a typed line; CommandError saying why not otherwise.
    A server name may be given by a unique prefix (case-insensitive)."""
    words = line.strip().removeprefix(":").split(maxsplit=1)
    if not words:
        raise CommandError("type a command, e.g. :tasks (tab completes)")
    name, argument = words[0].casefold(), (words[1].strip() if len(words) > 1 else "")
    command = BY_NAME.get(name)
    if command is None:
        starting = sorted({c.name for alias, c in BY_NAME.items() if alias.startswith(name)})
        if len(starting) != 1:
            known = " ".join(f":{c.name}" for c in COMMANDS)
            raise CommandError(
                f"no command {name!r}"
                + (f" (did you mean :{' or :'.join(starting)}?)" if starting else f"; commands: {known}")
            )
        command = BY_NAME[starting[0]]
    if not command.takes_server:
        if argument:
            raise CommandError(f":{command.name} takes no argument")
        return command, ""
    if not argument:
        raise CommandError(f":{command.name} needs a server name, e.g. :{command.name} web-1")
    names = list(server_names)
    exact = [n for n in names if n.casefold() == argument.casefold()]
    matches = exact or [n for n in names if n.casefold().startswith(argument.casefold())]
    if len(matches) != 1:
        if not matches:
            raise CommandError(f"no server named {argument!r}")
        raise CommandError(f"{argument!r} could be {', '.join(sorted(matches)[:4])}{'…' if len(matches) > 4 else ''}")
    return command, matches[0]


def completions(line: str, server_names: Iterable[str]) -> list[str]:
    """Whole lines the typed `line` may complete to, best first."""
    text = line.lstrip(":")
    words = text.split(" ", 1)
    if len(words) == 1:
        lowered = words[0].casefold()
        return [c.name + (" " if c.takes_server else "") for c in COMMANDS if c.name.startswith(lowered)]
    command = BY_NAME.get(words[0].casefold())
    if command is None or not command.takes_server:
        return []
    prefix = words[1].casefold()
    return [f"{words[0]} {n}" for n in sorted(server_names, key=str.casefold) if n.casefold().startswith(prefix)]


class CommandSuggester(Suggester):
    """Suggests the first completion in grey; tab (or →) takes it."""

    def __init__(self, server_names) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.server_names = server_names

    async def get_suggestion(self, value: str) -> str | None:
        found = completions(value, self.server_names())
        return found[0] if found else None


class CommandLineScreen(ModalScreen[tuple[Command, str] | None]):
    """One line at the bottom; dismisses with the parsed command, or None on escape."""

    CSS_PATH = Path(__file__).parent / "command_line.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close", tooltip="Close the command line"),
        Binding("tab", "complete", "Complete", priority=True, tooltip="Complete the command or server name"),
    ]

    def __init__(self, server_names) -> None:
        super().__init__()
        self.server_names = server_names
        # Keys typed right after `:` wait for this (see tasker_tui.type_ahead).
        self.ready = False

    def compose(self) -> ComposeResult:
        with Vertical(id="command-box"):
            yield Static(self._help_line(), id="command-message")
            yield Input(
                placeholder="servers, tasks, plan, chat, server <name>, help, quit",
                suggester=CommandSuggester(self.server_names),
                id="command-input",
                compact=True,
            )

    @staticmethod
    def _help_line() -> Text:
        return Text("  ".join(f":{c.name}" for c in COMMANDS) + "   tab completes · enter runs · esc closes", "dim")

    def on_mount(self) -> None:
        self.query_one(Input).focus()
        self.call_after_refresh(self._ready)

    def _ready(self) -> None:
        self.ready = True

    def action_close(self) -> None:
        self.dismiss(None)

    def action_complete(self) -> None:
        box = self.query_one(Input)
        found = completions(box.value, self.server_names())
        if not found:
            self._say(Text("nothing to complete", "bold yellow"))
            return
        common = found[0]
        for other in found[1:]:  # the part every completion shares, as a shell does
            while not other.startswith(common):
                common = common[:-1]
        if common.strip() == box.value.strip() and len(found) > 1:
            self._say(literal("  ".join(found[:8]) + ("  …" if len(found) > 8 else "")))
        box.value = common if len(common) >= len(box.value) else box.value
        box.cursor_position = len(box.value)

    def _say(self, message: Text) -> None:
        self.query_one("#command-message", Static).update(message)

    @on(Input.Submitted)
    def _run(self, event: Input.Submitted) -> None:
        try:
            parsed = parse_command(event.value, self.server_names())
        except CommandError as exc:
            self._say(literal(str(exc), "bold red"))
            return
        self.dismiss(parsed)
