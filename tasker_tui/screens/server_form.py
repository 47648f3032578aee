"""Register or edit a server, from the keyboard only; the backend's objections appear by their field."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from tasker.client import ApiError, BackendUnavailable, Conflict, ValidationFailed
from tasker.domain import DEFAULT_PUE, ENERGY_SOURCES, REGIONS, default_carbon_intensity
from tasker.models import Server
from tasker_tui.literal import literal
from tasker_tui.screens.base import FORM_CSS, TaskerScreen
from tasker_tui.screens.confirm import ask


@dataclass(frozen=True, slots=True)
class Field:
    key: str
    label: str
    kind: str  # text | number | integer | region | source | tags
    placeholder: str = ""
    optional: bool = False


# The backend's rules for a server (API.md), checked here too so that one save names every
# mistake, and a field says what is wrong with it as it is typed.
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
TAG = re.compile(r"[A-Za-z0-9._:/=-]{1,64}")
MAX_TAGS = 32
MAX_SITE = 100
LIMITS = {
    "carbon_intensity_g_per_kwh": (0, 5000),
    "pue": (1, 5),
    "idle_watts": (0, 1_000_000),
    "max_watts": (0, 1_000_000),
    "cores": (1, 1_000_000),
}

FIELDS = (
    Field("name", "Name", "text", "web-1 (letters, digits, . _ -)"),
    Field("region", "Region", "region"),
    Field("site", "Site", "text", "city or data centre (optional)", optional=True),
    Field("energy_source", "Energy source", "source"),
    Field("carbon_intensity_g_per_kwh", "gCO2/kWh", "number", "default from source and region", optional=True),
    Field("pue", "PUE", "number", f"{DEFAULT_PUE} (>= 1)"),
    Field("idle_watts", "Idle W", "number", "e.g. 80"),
    Field("max_watts", "Max W", "number", "e.g. 350"),
    Field("cores", "Cores", "integer", "e.g. 32"),
    Field("tags", "Tags", "tags", "comma separated, e.g. prod, web", optional=True),
)


def field_for(detail_field: str) -> str | None:
    """Which form field a backend detail's `field` (e.g. `location.region`) belongs to."""
    keys = {f.key for f in FIELDS}
    cleaned = detail_field.replace("[", ".").replace("]", "")
    parts = [p for p in cleaned.split(".") if p and not p.isdigit()]
    for candidate in (cleaned, *reversed(parts)):
        if candidate in keys:
            return candidate
    if parts and parts[0] == "location":
        return "region"
    return None


def with_labels(text: str) -> str:
    """The backend's wording with its field names (`idle_watts`) as the form labels them (`Idle W`).
    Only names with an underscore: `name` or `tags` are ordinary words in a sentence too."""
    for field in sorted((f for f in FIELDS if "_" in f.key), key=lambda f: -len(f.key)):
        text = re.sub(rf"\b{field.key}\b", field.label, text)
    return text


def initial_values(server: Server | None) -> dict[str, str]:
    """What each field shows when the form opens (blank form or the server being edited)."""
    if server is None:
        return {"pue": str(DEFAULT_PUE), "region": "eu-west", "energy_source": "grid-mix"}
    number = lambda v: "" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))  # noqa: E731
    return {
        "name": server.name,
        "region": server.location.region,
        "site": server.location.site,
        "energy_source": server.energy_source,
        "carbon_intensity_g_per_kwh": number(server.carbon_intensity_g_per_kwh) if server.intensity_set_by_user else "",
        "pue": number(server.pue),
        "idle_watts": number(server.idle_watts),
        "max_watts": number(server.max_watts),
        "cores": number(server.cores),
        "tags": ", ".join(server.tags),
    }


def parse_form(values: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Turn the form's strings into the API's server JSON; returns (payload, errors by field).

    Every field is checked at once, by the backend's rules (names, ranges, idle below max); the
    backend still judges (a name taken) and its answer is shown as well.
    """
    payload: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in FIELDS:
        raw = (values.get(field.key) or "").strip()
        if not raw:
            if not field.optional:
                errors[field.key] = "required"
            continue
        if field.kind in ("number", "integer"):
            try:
                number = int(raw) if field.kind == "integer" else float(raw)
            except ValueError:
                errors[field.key] = "must be a whole number" if field.kind == "integer" else "must be a number"
                continue
            low, high = LIMITS[field.key]
            if not math.isfinite(number) or not low <= number <= high:
                errors[field.key] = f"must be between {low:g} and {high:g}"
                continue
            payload[field.key] = number
        elif field.kind == "tags":
            tags = [t.strip() for t in raw.split(",") if t.strip()]
            if len(tags) > MAX_TAGS:
                errors[field.key] = f"at most {MAX_TAGS} tags"
            elif not all(TAG.fullmatch(t) for t in tags):
                errors[field.key] = "each tag: letters, digits and . _ : / = - (commas between)"
            else:
                payload[field.key] = tags
        elif field.key == "name" and not NAME.fullmatch(raw):
            errors[field.key] = "1-64 of letters, digits and . _ - (no spaces)"
        elif field.key == "site" and (len(raw) > MAX_SITE or not raw.isprintable()):
            errors[field.key] = f"at most {MAX_SITE} printable characters"
        else:
            payload[field.key] = raw
    if "max_watts" not in errors and payload.get("max_watts", math.inf) < payload.get("idle_watts", 0):
        errors["max_watts"] = f"must be >= Idle W ({payload['idle_watts']:g})"
        payload.pop("max_watts")
    location = {"region": payload.pop("region", ""), "site": payload.pop("site", "")}
    payload["location"] = location
    payload.setdefault("tags", [])
    return payload, errors


def changes_between(server: Server, payload: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `payload` that differ from `server` (what a PATCH sends)."""
    stored = server.to_json()
    return {key: value for key, value in payload.items() if stored.get(key) != value}


class ServerFormScreen(TaskerScreen):
    """Dismisses with the server as the backend stored it, or None when cancelled."""

    CSS_PATH = FORM_CSS
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True, tooltip="Save (enter in a text field does too)"),
        Binding("escape", "cancel", "Cancel", tooltip="Close; asks first when something was changed"),
    ]

    def __init__(self, server: Server | None) -> None:
        super().__init__()
        self.server = server
        # Shown beside a field while it has no error.
        self.hints: dict[str, str] = {}
        self._initial: dict[str, str] = {}  # what the fields held once mounted

    @property
    def title_text(self) -> str:
        return f"Edit {self.server.name}" if self.server else "Register a server"

    def compose_body(self) -> ComposeResult:
        values = initial_values(self.server)
        yield Static(literal(self.title_text), id="form-title")
        with VerticalScroll(id="form"):
            for field in FIELDS:
                with Horizontal(classes="form-row", id=f"row-{field.key}"):
                    yield Label(field.label, classes="form-label")
                    yield self._input_for(field, values.get(field.key, ""))
                    yield Static("", classes="form-error", id=f"error-{field.key}")
        yield Static("", id="form-message")
        yield Static("tab/shift+tab move · enter save · esc cancel · enter on a list opens it", id="form-hint")

    def _input_for(self, field: Field, value: str):
        if field.kind == "region":
            options = [(f"{code}  {name}", code) for code, (name, _) in REGIONS.items()]
            return Select(options, value=value or Select.NULL, allow_blank=False, compact=True, id=f"field-{field.key}")
        if field.kind == "source":
            options = [(source, source) for source in ENERGY_SOURCES]
            return Select(options, value=value or Select.NULL, allow_blank=False, compact=True, id=f"field-{field.key}")
        return Input(value, placeholder=field.placeholder, compact=True, id=f"field-{field.key}")

    def on_mount(self) -> None:
        super().on_mount()
        self.query_one("#field-name", Input).focus()
        self._show_default_intensity()
        self._initial = self.values()

    @property
    def changed(self) -> bool:
        return self.values() != self._initial

    @on(Input.Changed)
    def _check_as_typed(self, event: Input.Changed) -> None:
        """A field typed in says at once what is wrong with it (and Max W when Idle W moves);
        fields not yet touched wait for the save to say they are required."""
        if not self._initial:
            return  # still mounting: the initial values are being set
        values = self.values()
        _, errors = parse_form(values)
        touched = {key for key, value in values.items() if value != self._initial.get(key)}
        for field in FIELDS:
            row = self.query_one(f"#row-{field.key}")
            if field.key in touched or row.has_class("-invalid"):
                self._show_field_error(field.key, errors.get(field.key, ""))

    @on(Select.Changed)
    def _show_default_intensity(self) -> None:
        """The intensity field tells what the default would be, and where it comes from."""
        region = self.query_one("#field-region", Select).value
        source = self.query_one("#field-energy_source", Select).value
        if isinstance(region, str) and isinstance(source, str):
            intensity, origin = default_carbon_intensity(source, region)
            self.query_one("#field-carbon_intensity_g_per_kwh", Input).placeholder = f"default {intensity:g}"
            self.hints["carbon_intensity_g_per_kwh"] = f"blank = {origin.split(' (')[0]}"
            if not self.query_one("#row-carbon_intensity_g_per_kwh").has_class("-invalid"):
                self.query_one("#error-carbon_intensity_g_per_kwh", Static).update(
                    literal(self.hints["carbon_intensity_g_per_kwh"])
                )

    def values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for field in FIELDS:
            value = getattr(self.query_one(f"#field-{field.key}"), "value", None)  # an Input or a Select
            values[field.key] = value if isinstance(value, str) else ""
        return values

    def _show_field_error(self, key: str, reason: str) -> None:
        self.query_one(f"#error-{key}", Static).update(literal(reason or self.hints.get(key, "")))
        self.query_one(f"#row-{key}").set_class(bool(reason), "-invalid")

    def show_errors(self, errors: Mapping[str, str], message: str = "") -> None:
        for field in FIELDS:
            self._show_field_error(field.key, errors.get(field.key, ""))
        note = self.query_one("#form-message", Static)
        note.update(literal(message))
        note.set_class(bool(message), "-error")
        if errors:
            first = next(f.key for f in FIELDS if f.key in errors)
            self.query_one(f"#field-{first}").focus()

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_save()

    def action_cancel(self) -> None:
        if not self.changed:
            self.dismiss(None)
            return
        ask(
            self.app,
            "Discard your changes?",
            "What you typed in the form is lost.",
            "Discard",
            lambda yes: self.dismiss(None) if yes else None,
            no_label="Keep editing",
        )

    def action_save(self) -> None:
        payload, errors = parse_form(self.values())
        if errors:
            count = len(errors)
            self.show_errors(errors, f"Fix the {count} field{'s' if count > 1 else ''} marked in red.")
            return
        if self.server is not None:
            if self.server.intensity_set_by_user and "carbon_intensity_g_per_kwh" not in payload:
                payload["carbon_intensity_g_per_kwh"] = None  # blank: back to the default of source and region
            payload = changes_between(self.server, payload)
            if not payload:
                self.dismiss(None)
                return
        self.show_errors({}, "Saving…")
        self.submit(payload)

    @work(exclusive=True, group="save", exit_on_error=False)
    async def submit(self, payload: dict[str, Any]) -> None:
        client = self.tasker.client
        try:
            if self.server is None:
                saved = await client.register_server(payload)
            else:
                saved = await client.change_server(self.server.id, payload)
        except (ValidationFailed, Conflict) as exc:
            self.show_errors(*self._errors_from(exc))
            return
        except BackendUnavailable as exc:
            self.show_errors({}, exc.message)
            return
        except ApiError as exc:
            self.show_errors({}, exc.describe())
            return
        verb = "Updated" if self.server else "Registered"
        self.notify(f"{verb} {saved.name}.", title="Saved")
        self.dismiss(saved)

    @staticmethod
    def _errors_from(exc: ApiError) -> tuple[dict[str, str], str]:
        errors: dict[str, str] = {}
        unplaced: list[str] = []
        for detail in exc.details:
            key = field_for(str(detail.get("field", "")))
            reason = with_labels(str(detail.get("reason", "")))
            if key and key not in errors:
                errors[key] = reason
            else:
                unplaced.append(f"{detail.get('field', '')}: {reason}")
        if isinstance(exc, Conflict) and not errors:
            errors["name"] = exc.message
        message = with_labels(exc.message if not unplaced else f"{exc.message} ({'; '.join(unplaced)})")
        return errors, message
