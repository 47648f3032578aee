"""The tasks table: one row per task with its state, server, start, progress and CO2 figures.

Built on the line API like `FleetTable` (and sharing its `fit`), for the same reasons: rows are
plain cells drawn as segments, sorting and filtering happen over the screen's data, and a
progress column that moves every second repaints cheaply. It filters and sorts with
`table_query`, as the fleet does (shift+letter sorts, `state:running owner:bob` filters). It
does no I/O: the screen hands it the tasks and the server names, and hears back `TaskSelected`
and `SortChanged`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tasker.models import Task
from tasker_tui import format as fmt
from tasker_tui.literal import one_line
from tasker_tui.table_query import Filter, SortColumn, SortOrder, ordered, parse_filter
from tasker_tui.widgets.fleet_table import CURSOR_BINDINGS, sort_bindings
from tasker_tui.widgets.table_row import cell, header_row, table_row

WIDE_AT = 120

STATE_STYLES = {
    "queued": "dim",
    "planned": "cyan",
    "running": "bold green",
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "unschedulable": "yellow",
}
STATE_ORDER = {
    s: i for i, s in enumerate(("running", "planned", "queued", "unschedulable", "failed", "done", "cancelled"))
}


@dataclass(frozen=True, slots=True)
class TaskColumn(SortColumn):
    narrow: int = 8
    wide: int = 8
    right: bool = False


TASK_COLUMNS = (
    TaskColumn("name", "Task", "t", narrow=11, wide=24),
    TaskColumn("state", "State", "s", narrow=9, wide=13),
    TaskColumn("server", "Server", "v", narrow=10, wide=16),
    TaskColumn("start", "Start", "a", narrow=10, wide=10),
    TaskColumn("progress", "Done", "d", True, narrow=4, wide=5, right=True),
    TaskColumn("planned", "Plan g", "p", True, narrow=6, wide=9, right=True),
    TaskColumn("measured", "Meas g", "m", True, narrow=6, wide=9, right=True),
    TaskColumn("run_now", "Now g", "n", True, narrow=6, wide=9, right=True),
    TaskColumn("saving", "Saved", "e", True, narrow=6, wide=9, right=True),
)
TASK_FIELDS = ("name", "state", "server", "owner", "tag", "region")
"""What the tasks' filter can name: `state:running owner:bob` (see `table_query`)."""


class TaskCells(NamedTuple):
    """What one row shows."""

    name: str
    state: str
    server: str
    start: str
    progress: str
    planned: str
    measured: str
    run_now: str
    saving: str


def task_cells(task: Task, server_name: str, now_ms: int) -> TaskCells:
    """The row of one task (paused running tasks say so)."""
    plan = task.plan
    state = "paused" if task.state == "running" and task.run.activity == "paused" else task.state
    saving = None
    if plan is not None:
        saving = plan.measured_saving_g if plan.measured_saving_g is not None else plan.saving_g
    return TaskCells(
        one_line(task.name),
        state,
        one_line(server_name) if plan else "—",
        _start(task, now_ms),
        fmt.share(task.progress(now_ms)) if task.state not in ("queued", "unschedulable") else "—",
        fmt.grams(plan.co2_g if plan else None),
        fmt.grams(plan.measured_co2_g if plan else None),
        fmt.grams(plan.run_now_co2_g if plan else None),
        fmt.grams(saving),
    )


def _start(task: Task, now_ms: int) -> str:
    """When the task starts as planned; a queued task that may not start yet shows when it may
    (`≥Thu 06:00`): it waits for that, not for room."""
    if task.plan is not None:
        return fmt.clock(task.plan.start_ms, now_ms)
    not_before = _not_before(task, now_ms)
    return "—" if not_before is None else "≥" + fmt.clock(not_before, now_ms)


def _not_before(task: Task, now_ms: int) -> int | None:
    """The earliest start of a queued task that is still to come."""
    earliest = task.earliest_start_ms
    return earliest if task.state == "queued" and earliest is not None and earliest > now_ms else None


def filter_fields(task: Task, server_name: str) -> dict[str, list[str]]:
    """A task as the tasks' filter sees it."""
    return {
        "name": [task.name],
        "state": [task.state],
        "server": [server_name],
        "owner": [task.owner],
        "tag": list(task.tags),
        "region": list(task.regions),
    }


def task_matches(task: Task, server_name: str, query: str) -> bool:
    """True when the task matches every word of `query`, in any field or in the one named."""
    return parse_filter(query, TASK_FIELDS).matches(filter_fields(task, server_name))


def _figure(value: float | None) -> float | None:
    return value if fmt.is_number(value) else None


def sort_value(key: str, task: Task, server_name: str, now_ms: int) -> Any:
    """What a column sorts by: numbers as numbers, None when the task has no value there."""
    plan = task.plan
    if key == "name":
        return task.name.casefold()
    if key == "state":
        return STATE_ORDER.get(task.state, 99)
    if key == "server":
        return server_name.casefold() if plan else None
    if key == "start":
        return plan.start_ms if plan else _not_before(task, now_ms)
    if key == "progress":
        return _figure(task.progress(now_ms))
    if plan is None:
        return None
    return _figure(
        {
            "planned": plan.co2_g,
            "measured": plan.measured_co2_g,
            "run_now": plan.run_now_co2_g,
            "saving": plan.saving_g,
        }[key]
    )


class TaskTable(ScrollView, can_focus=True):
    """Tasks as rows; the screen calls `show` with what to draw."""

    DEFAULT_CSS = """
    TaskTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .task-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .task-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .task-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    COMPONENT_CLASSES = {"task-table--header", "task-table--cursor"}

    BINDINGS = [
        *CURSOR_BINDINGS,
        *sort_bindings(TASK_COLUMNS),
        Binding("enter", "select", "Open", tooltip="Open the selected task"),
    ]

    class TaskSelected(Message):
        """Enter (or a click on the selected row) on a task."""

        def __init__(self, table: TaskTable, task_id: str) -> None:
            super().__init__()
            self.table = table
            self.task_id = task_id

        @property
        def control(self) -> TaskTable:
            return self.table

    class SortChanged(Message):
        """The user chose another sort (shift and a column's letter)."""

        def __init__(self, table: TaskTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> TaskTable:
            return self.table

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tasks: Mapping[str, Task] = {}
        self.server_names: Mapping[str, str] = {}
        self.filter = Filter()
        self.order = SortOrder("start")
        self.cursor_row = 0
        self.now_ms: Callable[[], int] = fmt.now_ms
        self._order: list[str] = []
        self._rows: dict[str, TaskCells] = {}

    # --- what the screen asks for -------------------------------------------------------

    @property
    def filter_text(self) -> str:
        return self.filter.text

    @property
    def sort_key(self) -> str:
        return self.order.key

    @property
    def sort_reverse(self) -> bool:
        return self.order.reverse

    @property
    def selected_task_id(self) -> str | None:
        return self._order[self.cursor_row] if 0 <= self.cursor_row < len(self._order) else None

    @property
    def shown_ids(self) -> list[str]:
        """Task ids in the order shown (after filter and sort)."""
        return list(self._order)

    def server_name(self, task: Task) -> str:
        if task.plan is None:
            return ""
        return self.server_names.get(task.plan.server_id, task.plan.server_id)

    def show(self, tasks: Mapping[str, Task], server_names: Mapping[str, str]) -> None:
        """Draw these tasks (the cursor stays on its task when it is still shown)."""
        self.tasks = tasks
        self.server_names = server_names
        self._rebuild()

    def set_filter(self, text: str) -> None:
        """Show the tasks `text` matches (see `table_query` for the syntax)."""
        self.filter = parse_filter(text, TASK_FIELDS)
        self._rebuild()

    def action_sort(self, key: str) -> None:
        self.order = self.order.pressed(next(c for c in TASK_COLUMNS if c.key == key))
        self._rebuild()
        self.post_message(self.SortChanged(self))

    def move_cursor(self, row: int) -> None:
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        top, visible = int(self.scroll_y), max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)
        self.refresh()

    def _rebuild(self) -> None:
        keep = self.selected_task_id
        now = self.now_ms()
        shown = [t for t in self.tasks.values() if self.filter.matches(filter_fields(t, self.server_name(t)))]
        shown = ordered(
            shown,
            lambda t: sort_value(self.order.key, t, self.server_name(t), now),
            lambda t: (t.name.casefold(), t.id),
            self.order.reverse,
        )
        self._order = [t.id for t in shown]
        self._rows = {t.id: task_cells(t, self.server_name(t), now) for t in shown}
        self.virtual_size = Size(sum(self._widths().values()) + len(TASK_COLUMNS) + 1, len(self._order) + 1)
        if keep in self._rows:
            self.cursor_row = self._order.index(keep)
        self.move_cursor(self.cursor_row)

    # --- keyboard and mouse --------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        self.move_cursor(len(self._order) - 1 if end else 0)

    def action_select(self) -> None:
        if task_id := self.selected_task_id:
            self.post_message(self.TaskSelected(self, task_id))

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y > 0 and 0 <= row < len(self._order):
            if row == self.cursor_row:
                self.action_select()
            else:
                self.move_cursor(row)

    def on_resize(self) -> None:
        self._rebuild()

    # --- drawing -------------------------------------------------------------------------

    def _widths(self) -> dict[str, int]:
        wide = self.size.width >= WIDE_AT
        return {c.key: c.wide if wide else c.narrow for c in TASK_COLUMNS}

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        widths = self._widths()
        if y == 0:
            style = base + self.get_component_rich_style("task-table--header", partial=True)
            header = header_row(TASK_COLUMNS, widths, self.order, style)
            return header.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, style)
        index = int(self.scroll_y) + y - 1
        if index >= len(self._order):
            return Strip.blank(width, base)
        cells = self._rows[self._order[index]]
        row = (
            base + self.get_component_rich_style("task-table--cursor", partial=True)
            if index == self.cursor_row
            else base
        )
        drawn = []
        for column, value in zip(TASK_COLUMNS, cells, strict=True):
            style = row
            if column.key == "state":
                style = row + Style.parse(STATE_STYLES.get(cells.state, "yellow" if value == "paused" else ""))
            elif column.key == "name":
                style = row + Style(bold=True)
            elif column.key == "saving" and value not in ("—", fmt.NOT_A_NUMBER):
                style = row + Style(color="green" if not value.startswith("-") else "red")
            drawn.append(cell(value, widths[column.key], style, column.right))
        return table_row(drawn, row).crop_extend(int(self.scroll_x), int(self.scroll_x) + width, base)
