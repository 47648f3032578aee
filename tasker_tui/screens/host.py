"""What a Tasker screen may ask of the app that runs it.

Screens reach the app through `TaskerScreen.tasker`, typed as `ScreenHost`, so that no screen
imports `tasker_tui.app` (which imports the screens): the app satisfies this Protocol
structurally, and a test checks that it still does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pathlib import Path

    from textual.notifications import SeverityLevel

    from tasker.client import TaskerClient
    from tasker.models import Task
    from tasker_tui.chat import ChatState
    from tasker_tui.fleet_state import FleetState, Server
    from tasker_tui.live_link import LinkStatus, LiveLink
    from tasker_tui.task_board import TaskBoard


@runtime_checkable
class ScreenHost(Protocol):
    """The app's state screens draw and the requests they make of it."""

    # --- state ------------------------------------------------------------------------------
    url: str
    fleet: FleetState
    board: TaskBoard
    link: LiveLink | None
    link_status: LinkStatus
    user: dict[str, Any]
    chat_open: bool
    chat_key: str
    export_dir: Path
    remember_session: bool
    auto_login: tuple[str, str] | None
    selected_after_save: str | None

    @property
    def client(self) -> TaskerClient: ...

    @property
    def chat(self) -> ChatState: ...

    @property
    def chat_unread(self) -> int: ...

    @property
    def can_write(self) -> bool: ...

    @property
    def preparing(self) -> bool: ...

    @property
    def saved_today(self) -> str: ...

    # --- requests -----------------------------------------------------------------------------
    def logged_in(self, user: dict[str, Any]) -> None: ...

    def session_refused(self, message: str) -> None: ...

    def report_error(self, error: BaseException) -> None: ...

    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = False,
    ) -> None: ...

    def open_server(self, server_id: str) -> None: ...

    def open_tasks(self, filter_text: str = "") -> None: ...

    def open_plan(self) -> None: ...

    def open_task(self, task_id: str) -> None: ...

    def request_edit(self, server: Server | None) -> None: ...

    def request_delete(self, server: Server) -> None: ...

    def request_submit(self) -> None: ...

    def request_cancel_task(self, task: Task) -> None: ...

    # Workers: calling one starts it, and what comes back is Textual's Worker handle.
    def backfill_sparklines(self, server_ids: list[str]) -> object: ...

    def refresh_plan(self, delay: float = ...) -> object: ...
