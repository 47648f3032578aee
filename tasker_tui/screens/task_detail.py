"""One task: where and when it runs and why there, its CO2 planned / run now / measured, its pieces,
command and history."""

from __future__ import annotations

from collections.abc import Mapping

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from tasker.models import Task
from tasker.when import format_duration
from tasker_tui import format as fmt
from tasker_tui.literal import literal, one_line
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.widgets.task_table import STATE_STYLES


def task_text(task: Task, server_names: Mapping[str, str], now_ms: int) -> Text:
    """Everything known about a task, as lines of `label  value` (backend text drawn literally)."""
    text = Text()

    def line(label: str, value: str | Text, style: str = "") -> None:
        text.append(f"{label:<13}", "bold")
        text.append(value if isinstance(value, Text) else literal(value, style))
        text.append("\n")

    plan = task.plan
    state = task.state + (" (paused)" if task.run.activity == "paused" else "")
    line("State", state, STATE_STYLES.get(task.state, ""))
    if task.reason:
        line("Reason", task.reason)
    line("Owner", task.owner)
    line(
        "Needs",
        f"{task.cores} cores for {format_duration(task.duration_s)}"
        + (", interruptible" if task.interruptible else ", in one piece"),
    )
    line(
        "Window",
        f"{fmt.timestamp(task.earliest_start_ms) if task.earliest_start_ms else '—'} → "
        f"{fmt.timestamp(task.deadline_ms) if task.deadline_ms else '—'}",
    )
    if task.regions or task.tags:
        line(
            "Constraints", "regions " + (", ".join(task.regions) or "any") + "; tags " + (", ".join(task.tags) or "any")
        )
    line("Command", " ".join(repr(a) for a in task.command) if task.command else "— (reserves its cores only)")
    if task.cwd:
        line("Directory", task.cwd)
    line("Progress", fmt.share(task.progress(now_ms)))
    text.append("\n")
    if plan is None:
        text.append("Not placed yet.\n", "italic")
    else:
        line("Server", server_names.get(plan.server_id, plan.server_id))
        for index, (start, end) in enumerate(plan.pieces):
            line(
                "Pieces" if index == 0 else "",
                f"{fmt.span_label(start, end)} ({format_duration((end - start) // 1000)})",
            )
        line(
            "Planned",
            fmt.co2_mass(plan.co2_g)
            + (f"  ({fmt.quantity(plan.energy_kwh, 'kWh', 2)})" if plan.energy_kwh is not None else ""),
        )
        run_now_on = server_names.get(plan.run_now_server_id or "", plan.run_now_server_id or "")
        line("Run now", fmt.co2_mass(plan.run_now_co2_g) + (f"  (on {run_now_on}, starting now)" if run_now_on else ""))
        line("Measured", fmt.co2_mass(plan.measured_co2_g) if plan.measured_co2_g is not None else "— (after it ends)")
        saving = plan.measured_saving_g if plan.measured_saving_g is not None else plan.saving_g
        line("Saved", fmt.co2_mass(saving), "bold green" if fmt.is_number(saving) and saving > 0 else "")
        if plan.explanation:
            text.append("\nWhy here and then\n", "bold underline")
            text.append(literal(plan.explanation))
            text.append("\n")
    text.append("\nHistory\n", "bold underline")
    for label, at in (
        ("Submitted", task.created_at_ms),
        ("Started", task.started_at_ms),
        ("Finished", task.finished_at_ms),
        ("Updated", task.updated_at_ms),
    ):
        if at is not None:
            line(label, fmt.timestamp(at))
    for index, (start, end) in enumerate(task.run.runs):
        line("Ran" if index == 0 else "", fmt.span_label(start, end))
    if task.run.exit_code is not None:
        line("Exit code", str(task.run.exit_code))
    if task.run.output_tail:
        text.append("\nOutput (last lines)\n", "bold underline")
        text.append(literal(task.run.output_tail, "dim"))
    return text


class TaskDetailScreen(TaskerScreen):
    """A task's detail; follows the board as frames update it."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
        Binding("c", "cancel_task", "Cancel task", tooltip="Cancel this task (asks first)"),
        Binding("p", "plan", "Plan", tooltip="Each server's timeline under its grid intensity"),
    ]
    AUTO_FOCUS = "#task-scroll"

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self._drawn: tuple = ()

    @property
    def title_text(self) -> str:
        task = self.tasker.board.tasks.get(self.task_id)
        return f"Task {one_line(task.name)}" if task else "Task"

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="task-scroll"):
            yield Static(id="task-body")

    def on_mount(self) -> None:
        super().on_mount()
        self.load()

    @work(exclusive=True, group="task", exit_on_error=False)
    async def load(self) -> None:
        """The latest word on this task (the board may hold an older frame's)."""
        self.tasker.board.upsert(await self.tasker.client.read_task(self.task_id))

    def refresh_live(self) -> None:
        signature = (self.tasker.board.version, fmt.now_ms() // 1000)
        if signature == self._drawn:
            return
        self._drawn = signature
        task = self.tasker.board.tasks.get(self.task_id)
        body = self.query_one("#task-body", Static)
        if task is None:
            body.update("This task is no longer listed.")
            return
        names = {sid: s.name for sid, s in self.tasker.fleet.servers.items()}
        body.update(task_text(task, names, fmt.now_ms()))
        self.sync_chrome()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_cancel_task(self) -> None:
        if task := self.tasker.board.tasks.get(self.task_id):
            self.tasker.request_cancel_task(task)

    def action_plan(self) -> None:
        self.tasker.open_plan()
