"""Submit a task from the keyboard; every field's problem is shown beside it, all at once."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any, cast

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Checkbox, Input, Label, Static

from tasker.client import ApiError, BackendUnavailable, ValidationFailed
from tasker.models import ModelError, Task
from tasker_tui.literal import literal
from tasker_tui.screens.base import FORM_CSS, TaskerScreen
from tasker_tui.screens.confirm import ask
from tasker_tui.task_draft import FIELD_KEYS, FIELDS, read_draft

# Backend field names that belong to a form field of another name.
FIELD_OF = {"earliest_start": "earliest", "duration_s": "duration"}


def errors_from(exc: ApiError) -> tuple[dict[str, str], str]:
    """The backend's 400 details placed by field; what fits no field goes to the message."""
    errors: dict[str, str] = {}
    unplaced: list[str] = []
    for detail in exc.details:
        name = str(detail.get("field", ""))
        key = FIELD_OF.get(name, name)
        reason = str(detail.get("reason", ""))
        if key in FIELD_KEYS and key not in errors:
            errors[key] = reason
        else:
            unplaced.append(f"{name}: {reason}" if name else reason)
    message = "The backend refused the task." if errors else exc.message
    if unplaced:
        message += " " + "; ".join(unplaced)
    return errors, message


class TaskFormScreen(TaskerScreen):
    """Dismisses with the task as the backend stored it, or None when given up."""

    SCREEN_TITLE = "Submit a task"
    CSS_PATH = FORM_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Submit", priority=True, tooltip="Submit (enter in a text field does too)"),
        Binding("escape", "cancel", "Cancel", tooltip="Close; asks first when something was typed"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._initial: dict[str, Any] = {}
        self.hints = {"command": "blank: the task only reserves its cores"}

    def compose_body(self) -> ComposeResult:
        yield Static(literal(self.SCREEN_TITLE), id="form-title")
        with VerticalScroll(id="form"):
            for field in FIELDS:
                with Horizontal(classes="form-row", id=f"row-{field.key}"):
                    yield Label(field.label, classes="form-label")
                    if field.key == "interruptible":
                        yield Checkbox(self._interruptible_label(False), False, compact=True, id="field-interruptible")
                    else:
                        yield Input(placeholder=field.placeholder, compact=True, id=f"field-{field.key}")
                    yield Static(literal(self.hints.get(field.key, "")), classes="form-error", id=f"error-{field.key}")
        yield Static("", id="form-message")
        yield Static("tab/shift+tab move · space ticks · enter/ctrl+s submit · esc cancel", id="form-hint")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#field-name", Input).focus()
        self._initial = self.values()

    def values(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for key in FIELD_KEYS:
            widget = self.query_one(f"#field-{key}")
            values[key] = bool(widget.value) if isinstance(widget, Checkbox) else str(cast(Input, widget).value)
        return values

    @property
    def changed(self) -> bool:
        return self.values() != self._initial

    def show_errors(self, errors: Mapping[str, str], message: str = "", failed: bool = False) -> None:
        for key in FIELD_KEYS:
            reason = errors.get(key, "")
            self.query_one(f"#error-{key}", Static).update(literal(reason or self.hints.get(key, "")))
            self.query_one(f"#row-{key}").set_class(bool(reason), "-invalid")
        note = self.query_one("#form-message", Static)
        note.update(literal(message))
        note.set_class(bool(errors) or failed, "-error")
        if errors:
            self.query_one(f"#field-{next(k for k in FIELD_KEYS if k in errors)}").focus()

    @on(Input.Changed, "#field-command")
    def _show_argv(self, event: Input.Changed) -> None:
        """The command as it will run: the words shlex makes of it, shown back as typed."""
        try:
            argv = shlex.split(event.value)
        except ValueError as exc:
            self.hints["command"] = f"cannot split it yet: {exc}"
        else:
            self.hints["command"] = f"argv: {argv!r}" if argv else "blank: the task only reserves its cores"
        if not self.query_one("#row-command").has_class("-invalid"):
            self.query_one("#error-command", Static).update(literal(self.hints["command"]))

    @staticmethod
    def _interruptible_label(ticked: bool) -> str:
        # The compact checkbox draws the same mark either way but for its colour: say it in words.
        return "yes: may pause and resume (space)" if ticked else "no: runs in one piece (space)"

    @on(Checkbox.Changed, "#field-interruptible")
    def _interruptible_changed(self, event: Checkbox.Changed) -> None:
        event.checkbox.label = self._interruptible_label(event.value)

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_save()

    def action_cancel(self) -> None:
        if not self.changed:
            self.dismiss(None)
            return
        ask(
            self.app,
            "Discard this task?",
            "What you typed in the form is lost.",
            "Discard",
            lambda yes: self.dismiss(None) if yes else None,
            no_label="Keep editing",
        )

    def _draft(self):
        fleet = self.tasker.fleet.servers.values()
        tags = {t for s in fleet for t in s.tags}
        largest = max((s.cores or 0 for s in fleet), default=None) or None
        return read_draft(self.values(), datetime.now(timezone.utc), tags, largest)

    @on(Input.Changed)
    def _check_as_typed(self) -> None:
        """A field typed in says at once what is wrong with it; untouched fields wait for the
        submit to say they are required."""
        if not self._initial:
            return  # still mounting
        values = self.values()
        errors = self._draft().errors
        for key in FIELD_KEYS:
            row = self.query_one(f"#row-{key}")
            if values[key] != self._initial.get(key) or row.has_class("-invalid"):
                reason = errors.get(key, "")
                self.query_one(f"#error-{key}", Static).update(literal(reason or self.hints.get(key, "")))
                row.set_class(bool(reason), "-invalid")

    def action_save(self) -> None:
        draft = self._draft()
        if draft.errors:
            count = len(draft.errors)
            self.show_errors(draft.errors, f"Fix the {count} field{'s' if count > 1 else ''} marked in red.")
            return
        self.show_errors({}, "Submitting…")
        self.submit(draft.payload)

    @work(exclusive=True, group="submit", exit_on_error=False)
    async def submit(self, payload: dict[str, Any]) -> None:
        try:
            task = Task.from_json(await self.tasker.client.submit_task(payload))
        except ValidationFailed as exc:
            self.show_errors(*errors_from(exc), failed=True)
            return
        except BackendUnavailable as exc:
            self.show_errors({}, exc.message, failed=True)
            return
        except ApiError as exc:
            self.show_errors({}, exc.describe(), failed=True)
            return
        except ModelError as exc:
            self.show_errors({}, f"Submitted, but the answer was not understood: {exc}", failed=True)
            return
        self.notify(f"Submitted {task.name}; the scheduler places it shortly.", title="Task submitted")
        self.dismiss(task)
