"""The plan view: each server's timeline over the horizon under its grid's carbon intensity."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tasker_tui import format as fmt
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.widgets.plan_gantt import PlanGantt


class PlanScreen(TaskerScreen):
    """Why a task waits: its server's row shows where the intensity dips and the task sits there."""

    SCREEN_TITLE = "Plan"
    AUTO_FOCUS = "#plan-scroll"
    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        Binding("t", "tasks", "Tasks", tooltip="The tasks table"),
        Binding("n", "new", "New", tooltip="Submit a new task"),
        Binding("r", "reload", "Reload", tooltip="Read the plan again now"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._drawn = -1

    def compose_body(self) -> ComposeResult:
        yield Static(id="plan-head")
        with VerticalScroll(id="plan-scroll"):
            yield PlanGantt(id="gantt")

    def on_mount(self) -> None:
        super().on_mount()
        self.tasker.refresh_plan(delay=0)

    def refresh_live(self) -> None:
        board = self.tasker.board
        if board.version == self._drawn:
            return
        self._drawn = board.version
        self.query_one(PlanGantt).show(board.plan)
        self._show_head()

    def _show_head(self) -> None:
        plan = self.tasker.board.plan
        text = Text()
        if plan is None:
            text.append("Reading the plan…")
        else:
            placed = sum(len(s.placements) for s in plan.servers)
            values = [v for curve in plan.curves.values() for v in curve if fmt.is_number(v)]
            hours = (plan.end_ms - plan.start_ms) // 3_600_000
            text.append(f"{hours}h from {fmt.timestamp(plan.start_ms)[5:16]} UTC", "bold")
            text.append(f" │ {plan.slot_s // 60}m slots │ {placed:,} placed │ g/kWh ")
            if values:
                text.append(f"▁{min(values):.0f}", "green")
                text.append("…", "dim")
                text.append(f"█{max(values):.0f}", "red")
        self.query_one("#plan-head", Static).update(text)

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_tasks(self) -> None:
        self.tasker.open_tasks()

    def action_new(self) -> None:
        self.tasker.request_submit()

    def action_reload(self) -> None:
        self.tasker.refresh_plan(delay=0)
