"""The Tasks screen: every task the user may see, its state, placement, progress and CO2."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from tasker.models import Task
from tasker_tui import format as fmt
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.widgets.task_table import TASK_COLUMNS, TASK_FIELDS, TaskTable

COUNTED = ("running", "planned", "queued", "unschedulable", "failed", "done", "cancelled")


class TasksScreen(TaskerScreen):
    """Tasks at a glance; submit, open and cancel start here."""

    SCREEN_TITLE = "Tasks"
    AUTO_FOCUS = "#tasks"
    BINDINGS = [
        Binding("enter", "open", "Open", tooltip="The selected task's plan, explanation and CO2"),
        Binding("n", "new", "New", tooltip="Submit a new task"),
        Binding("c", "cancel_task", "Cancel task", tooltip="Cancel the selected task (asks first)"),
        Binding("p", "plan", "Plan", tooltip="Each server's timeline under its grid intensity"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter by name, state, server, tag or region"),
        Binding("escape", "back", "Back", tooltip="Clear the filter, or back to the fleet"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._drawn: tuple = ()
        self._first_filter = ""  # asked for before the screen was mounted

    def compose_body(self) -> ComposeResult:
        yield Static(id="task-totals")
        yield TaskTable(id="tasks")
        yield Static("", id="tasks-empty")
        yield Input(
            placeholder=f"filter: word or field:value ({' '.join(TASK_FIELDS)}), * any, ! not, := exact",
            id="task-filter",
            compact=True,
        )

    def on_mount(self) -> None:
        super().on_mount()
        if self._first_filter:
            self._apply_filter(self._first_filter)

    @property
    def table(self) -> TaskTable:
        return self.query_one(TaskTable)

    def show_filter(self, text: str) -> None:
        """Filter the table by `text` (`server:=web-1`), shown in the filter box as if typed."""
        if self.is_mounted:
            self._apply_filter(text)
        else:  # just pushed: on_mount applies it
            self._first_filter = text

    def _apply_filter(self, text: str) -> None:
        box = self.query_one("#task-filter", Input)
        box.value = text
        box.add_class("-visible")
        self.table.set_filter(text)
        self.table.focus()
        self._show_totals()

    def refresh_live(self) -> None:
        board = self.tasker.board
        # Progress moves with the clock: redraw each second even when no frame came.
        signature = (board.version, self.tasker.fleet.registry_version, fmt.now_ms() // 1000)
        if signature != self._drawn:
            self._drawn = signature
            names = {sid: s.name for sid, s in self.tasker.fleet.servers.items()}
            self.table.show(board.tasks, names)
            self._show_totals()
        empty = self.query_one("#tasks-empty", Static)
        empty.update("Loading tasks…" if not board.loaded else "No tasks yet. Press n to submit one.")
        empty.set_class(bool(board.tasks), "-hidden")

    def _show_totals(self) -> None:
        board = self.tasker.board
        table = self.table
        counts: dict[str, int] = {}
        for task in board.tasks.values():
            counts[task.state] = counts.get(task.state, 0) + 1
        text = Text()
        if table.filter.error:  # alone on the line, so 80 columns show it whole (as the fleet does)
            text.append(f"/{table.filter_text}", "bold yellow")
            text.append(": ", "dim")
            text.append(table.filter.error, "bold red")
            self.query_one("#task-totals", Static).update(text)
            return
        count = len(board.tasks)
        text.append(f"{count:,} task{'' if count == 1 else 's'}", "bold")
        parts = [f"{counts[s]:,} {s}" for s in COUNTED if counts.get(s)]
        if parts:
            text.append(": " + " · ".join(parts[:3]))
        if table.filter_text:  # before the savings: 80 columns cut the line's end
            text.append(" │ ", "dim")
            text.append(f"/{table.filter_text}: {len(table.shown_ids):,} shown", "bold yellow")
        totals = board.savings.totals if board.savings else None
        if totals is not None and totals.compared:
            text.append(" │ ", "dim")
            text.append(f"plan saves {fmt.co2_mass(totals.saving_g)}", "bold green")
            if fmt.is_number(totals.saving_pct):
                text.append(f" ({totals.saving_pct:.0f}%)", "green")
        label = next(c.label for c in TASK_COLUMNS if c.key == table.sort_key)
        text.append(" │ ", "dim")
        text.append(f"{label} {'▼' if table.sort_reverse else '▲'}")
        self.query_one("#task-totals", Static).update(text)

    def _selected(self) -> Task | None:
        task = self.tasker.board.tasks.get(self.table.selected_task_id or "")
        if task is None:
            self.notify("No task selected.", severity="warning")
        return task

    @on(TaskTable.TaskSelected, "#tasks")
    def _row_chosen(self, event: TaskTable.TaskSelected) -> None:
        self.tasker.open_task(event.task_id)

    def action_open(self) -> None:
        if task := self._selected():
            self.tasker.open_task(task.id)

    def action_new(self) -> None:
        self.tasker.request_submit()

    def action_cancel_task(self) -> None:
        if task := self._selected():
            self.tasker.request_cancel_task(task)

    def action_plan(self) -> None:
        self.tasker.open_plan()

    # --- sort and filter -----------------------------------------------------------------

    @on(TaskTable.SortChanged, "#tasks")
    def _sort_changed(self) -> None:
        self._show_totals()

    def action_filter(self) -> None:
        box = self.query_one("#task-filter", Input)
        box.add_class("-visible")
        box.focus()

    def action_back(self) -> None:
        box = self.query_one("#task-filter", Input)
        if self.table.filter_text or box.has_class("-visible"):
            box.value = ""
            box.remove_class("-visible")
            self.table.set_filter("")
            self.table.focus()
            self._show_totals()
            return
        self.app.pop_screen()

    @on(Input.Changed, "#task-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value.strip())
        self._show_totals()

    @on(Input.Submitted, "#task-filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_back()
            return
        self.table.focus()
