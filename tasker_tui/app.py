"""The Tasker TUI application: owns the API client, the live link and the state screens draw.

Screens never talk to the backend themselves except through `app.client` inside their workers;
widgets never do I/O at all. `TaskerApp(url)` starts at the login screen, which offers a saved
session that is still valid (enter continues it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import CommandPalette
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from tasker.models import RECENT_FINISHED, RECENT_FINISHED_H
from tasker_tui import format as fmt
from tasker_tui.commands import ServerCommands
from tasker_tui.crash_report import crash_line, write_crash_report
from tasker_tui.fleet_state import FleetState
from tasker_tui.literal import printable
from tasker_tui.live_link import LinkStatus, LiveLink
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.task_board import TaskBoard
from tasker_tui.type_ahead import OrderedKeys

if TYPE_CHECKING:
    from tasker.client import TaskerClient
    from tasker.models import Server, Task
    from tasker_tui.chat import ChatState

CHAT_KEY = "ctrl+t"
QUIT_AGAIN_S = 5.0  # how long a second quit key confirms dropping unsent chat messages
SPARK_POINTS = 60  # history buckets fetched to fill a sparkline (5 s each over 5 minutes)
PLAN_SETTLE_S = 0.5  # a burst of plan frames is one re-read of the plan and savings, this long after
WRITER_ROLES = frozenset({"sysadmin", "admin"})  # the backend's roles that may change servers and tasks


def downloads_dir() -> Path:
    """`$XDG_DATA_HOME/tasker/downloads` (`~/.local/share/tasker/downloads` by default): exports
    land in one known place, not wherever the TUI happened to be started."""
    import os

    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data) / "tasker" / "downloads"


class TaskerApp(OrderedKeys, App[None]):
    """Tasker's terminal UI for one backend at `url`."""

    # Absolute, so subclasses elsewhere find them.
    CSS_PATH = [Path(__file__).parent / "tasker.tcss", Path(__file__).parent / "chat" / "chat.tcss"]
    TITLE = "Tasker"
    COMMANDS = App.COMMANDS | {ServerCommands}
    ENABLE_COMMAND_PALETTE = True

    BINDINGS = [
        # Not in the footer: the top bar always shows the chat key (with the unread badge), and
        # 80 columns need the room for the keys of the screen.
        Binding(
            CHAT_KEY, "toggle_chat", "Chat", priority=True, show=False, tooltip="Show or hide the support chat pane"
        ),
        Binding("question_mark", "help", "Help", key_display="?", tooltip="Every key of this screen"),
        Binding("ctrl+g", "go_to_server", "Go to server", show=False, tooltip="Go to a server by name"),
        Binding(
            "colon",
            "command_line",
            "Command",
            key_display=":",
            show=False,
            tooltip="Commands by name: :tasks :server <name> :chat …",
        ),
        Binding("q", "quit", "Quit", tooltip="Quit Tasker"),
        # Textual's own quit key, said the same way (it also works while typing in a field).
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="Quit Tasker"),
        Binding("ctrl+l", "logout", "Log out", show=False, tooltip="Forget the saved session and log in again"),
    ]

    def __init__(
        self,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        remember_session: bool = True,
        refresh_interval: float = 1.0,
        export_dir: Path | None = None,
        client: TaskerClient | None = None,
        notice: str = "",
        prepare: Callable[[], tuple[str, str]] | None = None,
    ) -> None:
        super().__init__()
        self.url = url.rstrip("/")
        # Blocking set-up run in a thread once the first frame is up (the demo starts its backend
        # there); returns (url, notice). Until it has, the login screen waits and says so.
        self.prepare = prepare
        self.prepare_error: BaseException | None = None
        # Made on first use: importing the HTTP client (aiohttp) waits until the first frame is up.
        self._client = client
        self.fleet = FleetState()
        self.board = TaskBoard()
        self._chat: ChatState | None = None
        self.chat_open = False
        self.chat_key = CHAT_KEY
        self.link_status = LinkStatus("idle")
        self.user: dict[str, Any] = {}
        self._quit_warned_at = float("-inf")
        self.auto_login = (username, password) if username and password else None
        self.remember_session = remember_session
        self.refresh_interval = refresh_interval
        # Where CSV exports go (the raw readings screen says so before and after).
        self.export_dir = export_dir or downloads_dir()
        # Said once after login (the demo uses it to tell how to connect a second TUI).
        self.notice = notice
        self.link: LiveLink | None = None
        # The server the fleet table should put its cursor on after a save.
        self.selected_after_save: str | None = None
        self._chrome_signature: tuple = ()
        # Frame timings (seconds spent in each refresh tick), read by the benchmark.
        self.tick_durations: list[float] = []
        # Set when an unexpected error stopped the app: the one line to say on stderr.
        self.crash_line: str | None = None

    @property
    def client(self) -> TaskerClient:
        """The API client every screen's workers use (one connection pool for the app)."""
        if self._client is None:
            from tasker.client import TaskerClient

            self._client = TaskerClient(self.url)
        return self._client

    @property
    def chat(self) -> ChatState:
        """The support chat's state. Made on first use (after login): chat and the HTTP client it
        brings along stay out of the way of the first frame."""
        if self._chat is None:
            from tasker_tui.chat import ChatState

            self._chat = ChatState()
        return self._chat

    @property
    def can_write(self) -> bool:
        """Whether the logged-in role may change servers and tasks (engineers only read)."""
        return self.user.get("role") in WRITER_ROLES

    def refuse_reader(self, what: str) -> bool:
        """True (and says why) when the logged-in role may not `what` ("delete servers")."""
        if self.can_write:
            return False
        role = self.user.get("role") or "this role"
        self.notify(f"{role.capitalize()}s may not {what}; a sysadmin or an admin may.", severity="warning")
        return True

    @property
    def chat_unread(self) -> int:
        return self._chat.unread if self._chat is not None else 0

    # --- lifecycle ------------------------------------------------------------------------

    def on_mount(self) -> None:
        from tasker_tui.screens.login import LoginScreen

        self.push_screen(LoginScreen())
        self.set_interval(self.refresh_interval, self.tick)
        if self.prepare is not None:
            self.call_after_refresh(self.run_prepare)  # after the first frame

    @property
    def preparing(self) -> bool:
        return self.prepare is not None

    @work(thread=True, exclusive=True, group="prepare", exit_on_error=False)
    def run_prepare(self) -> None:
        assert self.prepare is not None
        try:
            try:
                url, notice = self.prepare()
            except Exception as exc:  # noqa: BLE001 - whatever failed is told after the TUI closes
                self.call_from_thread(self._prepare_failed, exc)
            else:
                self.call_from_thread(self._prepared, url, notice)
        except RuntimeError:
            pass  # the app closed meanwhile (quit while starting): nobody to tell

    def _prepared(self, url: str, notice: str) -> None:
        from tasker_tui.screens.login import LoginScreen

        self.url, self.notice, self.prepare = url.rstrip("/"), notice, None
        if isinstance(self.screen, LoginScreen) and self.screen.ready:
            self.screen.backend_ready()  # else it begins by itself once ready

    def _prepare_failed(self, error: BaseException) -> None:
        self.prepare_error = error
        self.exit(return_code=1)

    async def on_unmount(self) -> None:
        if self._client is not None:
            await self._client.close()

    def logged_in(self, user: dict[str, Any]) -> None:
        """Called by the login screen once the backend accepted us: open the fleet, go live."""
        from tasker_tui.screens.fleet import FleetScreen

        self.user = user
        self.switch_screen(FleetScreen())
        self.start_live_link()
        if self.notice:
            self.notify(self.notice, title="Tasker demo", timeout=12)
            self.notice = ""

    def start_live_link(self) -> None:
        self.link = LiveLink(
            self.client, self.fleet, self.chat, self._link_status_changed, self._registry_changed, self._plan_frame
        )
        self.run_live_link()

    @work(exclusive=True, group="live", exit_on_error=False)
    async def run_live_link(self) -> None:
        assert self.link is not None
        await self.link.run()

    @work(group="backfill", exit_on_error=False)
    async def backfill_sparklines(self, server_ids: list[str]) -> None:
        """Fill the sparklines of these servers with the last minutes of history."""
        import asyncio

        from tasker_tui.format import now_ms
        from tasker_tui.widgets.fleet_table import SPARK_SPAN_S

        end = now_ms()
        limit = asyncio.Semaphore(4)  # a few requests at a time: the backend serves others too

        async def one(server_id: str, metric: str) -> None:
            async with limit:
                answer = await self.client.history(
                    server_id, metric, start=end - SPARK_SPAN_S * 1000, end=end, points=SPARK_POINTS
                )
            self.fleet.apply_history(server_id, metric, answer.get("points") or [])

        await asyncio.gather(*(one(sid, metric) for sid in server_ids for metric in ("power", "co2")))
        self.tick()

    def _link_status_changed(self, status: LinkStatus) -> None:
        self.link_status = status
        if status.state == "unauthorized":
            self.session_refused(status.message)
            return
        self.tick()

    def _registry_changed(self) -> None:
        self.call_later(self.tick)

    # --- tasks and the plan -------------------------------------------------------------------

    def _plan_frame(self, frame: Any) -> None:
        """A `plan` frame (applied at once, the plan re-read once the burst settles), or None
        after a (re)connect: everything is read again."""
        if frame is None:
            self.call_later(self.reload_tasks)
        elif self.board.apply_frame(frame):
            self.call_later(self.refresh_plan)

    @work(exclusive=True, group="tasks", exit_on_error=False)
    async def reload_tasks(self) -> None:
        """Read the task list, then the plan and the savings."""
        self.board.set_tasks(await self.client.read_tasks(finished_since=RECENT_FINISHED))
        self.refresh_plan(delay=0)

    @work(exclusive=True, group="plan", exit_on_error=False)
    async def refresh_plan(self, delay: float = PLAN_SETTLE_S) -> None:
        """Re-read the plan and the savings; a newer call replaces a waiting one (bursts merge)."""
        import asyncio

        await asyncio.sleep(delay)
        # what finished before the window the savings cover leaves the list too
        self.board.forget_finished(fmt.now_ms() - RECENT_FINISHED_H * 3_600_000)
        self.board.set_plan(await self.client.read_plan())
        self.board.set_savings(await self.client.read_savings(RECENT_FINISHED))

    @property
    def saved_today(self) -> str:
        """`saved today: 1.2 kg CO2e` for the top bar; empty until the savings are known."""
        savings = self.board.savings
        if savings is None or savings.today is None:
            return ""
        from tasker_tui.format import co2_mass

        return f"saved today: {co2_mass(savings.today.saved_g)}"

    def open_tasks(self, filter_text: str = "") -> None:
        """Show the Tasks screen (once on the stack), filtered by `filter_text` when given."""
        from tasker_tui.screens.tasks import TasksScreen

        self._show_once(TasksScreen)
        if filter_text and isinstance(self.screen, TasksScreen):
            self.screen.show_filter(filter_text)

    def open_plan(self) -> None:
        """Show the plan view (once on the stack)."""
        from tasker_tui.screens.plan import PlanScreen

        self._show_once(PlanScreen)

    def _show_once(self, kind: type[Screen]) -> None:
        if isinstance(self.screen, kind):
            return
        if any(isinstance(s, kind) for s in self.screen_stack):
            while not isinstance(self.screen, kind):
                self.pop_screen()
            return
        self.push_screen(kind())

    def open_task(self, task_id: str) -> None:
        """Show one task's detail."""
        from tasker_tui.screens.task_detail import TaskDetailScreen

        self.push_screen(TaskDetailScreen(task_id))

    def request_submit(self) -> None:
        """Open the submit form; the task shows at once, before the scheduler's frame."""
        from tasker_tui.screens.task_form import TaskFormScreen

        if self.refuse_reader("submit tasks"):
            return

        def submitted(task: Task | None) -> None:
            if task is not None:
                self.board.upsert(task)
                self.tick()

        self.push_screen(TaskFormScreen(), submitted)

    def request_cancel_task(self, task: Task) -> None:
        """Ask (only a key pressed after the question counts), then cancel."""
        from tasker_tui.literal import one_line
        from tasker_tui.screens.confirm import ask

        if self.refuse_reader("cancel tasks"):
            return
        if task.state in ("done", "failed", "cancelled"):
            self.notify(f"{task.name} is already {task.state}.", severity="warning")
            return
        detail = "It is taken off the plan; a running task is stopped (SIGTERM, then SIGKILL)."
        ask(
            self,
            f"Cancel task {one_line(task.name)}?",
            detail,
            "Cancel task",
            lambda yes: self.cancel_task(task.id) if yes else None,
            no_label="Keep it",
        )

    @work(exclusive=True, group="cancel", exit_on_error=False)
    async def cancel_task(self, task_id: str) -> None:
        from tasker.models import Task

        task = Task.from_json(await self.client.cancel_task(task_id))
        self.board.upsert(task)
        self.tick()
        self.notify(f"Cancelled {task.name}.", title="Task cancelled")
        self.refresh_plan()

    def tick(self) -> None:
        """The refresh tick: repaint the chrome when it changed, and the top screen's live data."""
        if not self.is_running:
            return  # shutting down: screens are losing their widgets
        screen = self.screen
        if not isinstance(screen, TaskerScreen) or not screen.ready:
            return
        started = time.perf_counter()
        status = self.link_status
        countdown = round(status.retry_at - time.monotonic()) if status.retry_at else None
        chat_version = self._chat.version if self._chat is not None else 0
        signature = (id(screen), status, countdown, chat_version, self.chat_open, screen.size, self.saved_today)
        if signature != self._chrome_signature:
            self._chrome_signature = signature
            screen.sync_chrome()
        screen.refresh_live()
        self.tick_durations.append(time.perf_counter() - started)
        if len(self.tick_durations) > 10_000:
            del self.tick_durations[:5_000]

    # --- errors and sessions ----------------------------------------------------------------

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None:
        """A toast, always drawn as plain text: toasts carry server names and the backend's
        messages, and Textual would otherwise parse them as markup (`[@click=app.quit]`)."""
        super().notify(printable(message), title=printable(title), severity=severity, timeout=timeout, markup=False)

    def _handle_exception(self, error: Exception) -> None:
        # Textual exits with return code 1 and prints a traceback with locals (secrets among
        # them) once the terminal is restored; Tasker writes the traceback to a file instead,
        # and the command prints `crash_line` (unwrapped, unlike Textual's console) after run().
        super()._handle_exception(error)
        if self.crash_line is None:
            self.crash_line = crash_line(error, write_crash_report(error))
        self._exit_renderables.clear()

    def report_error(self, error: BaseException) -> None:
        """The one place a failed worker becomes something the user sees."""
        from tasker.client import ApiError, BackendUnavailable, Unauthorized
        from tasker.models import ModelError

        if isinstance(error, Unauthorized):
            self.session_refused(error.message)
        elif isinstance(error, BackendUnavailable):
            self.notify(error.message, title="Backend unavailable", severity="error")
        elif isinstance(error, ApiError):
            self.notify(error.describe(), title="Refused", severity="error")
        elif isinstance(error, ModelError):
            self.notify(str(error), title="Answer not understood", severity="error")
        else:
            self.log.error(repr(error))
            self.notify(f"{type(error).__name__}: {error}", title="Unexpected error", severity="error")

    def session_refused(self, message: str) -> None:
        """The backend no longer accepts our token: back to the login screen."""
        from tasker.session import forget_session
        from tasker_tui.screens.login import LoginScreen

        self.workers.cancel_group(self, "live")
        self.fleet.connected = False
        self.link_status = LinkStatus("idle")
        if self.remember_session:
            forget_session(self.url)
        self.client.token = None
        self.user = {}
        while len(self.screen_stack) > 2:
            self.pop_screen()
        login = LoginScreen(message=f"{message}. Please log in again.")
        if len(self.screen_stack) > 1:
            self.switch_screen(login)
        else:  # only Textual's default screen is left: nothing to replace
            self.push_screen(login)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.report_error(event.worker.error)

    # --- actions ----------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit; chat messages typed while offline and not yet sent need the quit key twice, so
        they are never dropped without the user knowing."""
        unsent = len(self._chat.outbox) if self._chat is not None else 0
        now = time.monotonic()
        if unsent and now - self._quit_warned_at > QUIT_AGAIN_S:
            self._quit_warned_at = now
            noun = "message is" if unsent == 1 else "messages are"
            self.notify(
                f"{unsent} chat {noun} not sent yet (the backend is away); quitting drops "
                f"{'it' if unsent == 1 else 'them'}. Press the quit key again to quit anyway.",
                title="Unsent chat",
                severity="warning",
                timeout=QUIT_AGAIN_S,
            )
            return
        self.exit()

    def action_toggle_chat(self) -> None:
        """Show or hide the chat pane on every screen."""
        if not self.user:
            self.notify("Log in to use the support chat.", severity="warning")
            return
        self.chat_open = not self.chat_open
        if self.chat_open:
            self.chat.mark_read()
        self.tick()

    def action_help(self) -> None:
        from tasker_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    def action_go_to_server(self) -> None:
        if self.user and not CommandPalette.is_open(self):
            self.push_screen(CommandPalette(providers=[ServerCommands], placeholder="Go to server…"))

    def action_command_line(self) -> None:
        from tasker_tui.command_line import CommandLineScreen

        if not self.user or not isinstance(self.screen, TaskerScreen):
            return  # logging in, or over a modal: nothing to command yet

        def names() -> list[str]:
            return [s.name for s in self.fleet.servers.values()]

        self.push_screen(CommandLineScreen(names), self.run_command)

    def run_command(self, parsed: Any) -> None:
        """Do what the `:` command line asked (see `tasker_tui.command_line.COMMANDS`)."""
        if parsed is None:
            return
        command, server_name = parsed
        server_id = next((sid for sid, s in self.fleet.servers.items() if s.name == server_name), None)
        match command.name:
            case "servers":
                self.open_fleet()
            case "server" if server_id:
                self.open_server(server_id)
            case "raw" if server_id:
                from tasker_tui.screens.raw_readings import RawReadingsScreen

                self.push_screen(RawReadingsScreen(server_id))
            case "tasks":
                self.open_tasks()
            case "plan":
                self.open_plan()
            case "chat":
                self.action_toggle_chat()
            case "add":
                self.request_edit(None)
            case "submit":
                self.request_submit()
            case "help":
                self.action_help()
            case "logout":
                self.call_later(self.action_logout)
            case "quit":
                self.call_later(self.action_quit)

    def open_fleet(self) -> None:
        """Back to the fleet table, closing what is above it."""
        from tasker_tui.screens.fleet import FleetScreen

        self._show_once(FleetScreen)

    def open_server(self, server_id: str) -> None:
        """Show a server's detail screen (from the palette, the fleet table or a chat link)."""
        from tasker_tui.screens.detail import DetailScreen

        if server_id not in self.fleet.servers:
            self.notify("That server is no longer registered.", severity="warning")
            return
        current = self.screen
        if isinstance(current, DetailScreen) and current.server_id == server_id:
            return
        self.push_screen(DetailScreen(server_id))

    def request_edit(self, server: Server | None) -> None:
        """Open the register form (None) or the edit form; what the backend stored is shown at once."""
        from tasker_tui.screens.server_form import ServerFormScreen

        if self.refuse_reader("register or edit servers"):
            return

        def saved(stored: Server | None) -> None:
            if stored:
                self.fleet.upsert_server(stored)
                self.selected_after_save = stored.id
                self.tick()

        self.push_screen(ServerFormScreen(server), saved)

    def request_delete(self, server: Server) -> None:
        """Ask, then delete; screens showing that server close."""
        from tasker_tui.screens.confirm import confirm_delete

        if self.refuse_reader("delete servers"):
            return
        confirm_delete(self, server, lambda server_id: self.delete_server(server_id) if server_id else None)

    @work(exclusive=True, group="delete", exit_on_error=False)
    async def delete_server(self, server_id: str) -> None:
        name = self.fleet.name_of(server_id)
        await self.client.delete_server(server_id)
        while getattr(self.screen, "server_id", None) == server_id and len(self.screen_stack) > 2:
            self.pop_screen()
        self.fleet.remove_server(server_id)
        self.tick()
        self.notify(f"Deleted {name}. Its history is kept.", title="Server deleted")

    async def action_logout(self) -> None:
        from tasker.client import ApiError

        if not self.user:
            return
        try:
            await self.client.logout()
        except ApiError:
            pass  # the session dies locally either way
        self.session_refused("Logged out")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette lists every key-bound action of the current screen as well."""
        yield from super().get_system_commands(screen)
        seen: set[str] = {"quit"}
        # Every node from the focused widget up, unfiltered: Textual drops the keys a focused text
        # field would type (the chat input), but from the palette those actions work all the same.
        focused = screen.focused
        nodes = [*focused.ancestors_with_self] if focused is not None else [screen, self]
        for node in nodes:
            for _key, binding in node._bindings:
                if not binding.description or not binding.tooltip or binding.action in seen:
                    continue  # Tasker's keys all have a tooltip; focus and cursor moves are not commands
                if isinstance(screen, TaskerScreen) and not screen.offers(binding, focus_matters=False):
                    continue
                if not self._check_action_state(binding.action, node):
                    continue
                seen.add(binding.action)
                key = binding.key_display or self.get_key_display(binding)
                yield SystemCommand(
                    binding.description,
                    f"{binding.tooltip or binding.description} (key: {key})",
                    partial(self.run_action, binding.action, node),
                )
