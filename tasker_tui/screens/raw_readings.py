"""The raw readings screen: one server's readings of one metric, newest first, paged back
through all of them; the dialog for typing a time range; CSV export of the range (written by
`tasker_tui.readings_export`)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Static

from tasker.domain import METRICS
from tasker.models import Server
from tasker_tui import format as fmt
from tasker_tui.fleet_state import placeholder
from tasker_tui.literal import literal
from tasker_tui.readings_export import EXPORT_PAGE_SIZE, export_path, home_relative, write_readings_csv
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.time_range import PRESETS, TimeRange, preset_range, typed_range

PAGE_SIZE = 100


class RangeScreen(ModalScreen[TimeRange | None]):
    """Type a custom time range; enter applies, escape cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Keep the current range")]

    def compose(self) -> ComposeResult:
        with Vertical(id="range-box"):
            yield Static("Time range (UTC)", id="range-title")
            yield Input(placeholder="from: -2h, 2026-11-28T03:00, epoch ms", id="range-from")
            yield Input(placeholder="to: now, -1h, 2026-11-28T04:00", value="now", id="range-to")
            yield Static("enter apply · esc cancel", id="range-message")

    @on(Input.Submitted)
    def _apply(self) -> None:
        raw_from = self.query_one("#range-from", Input).value
        raw_to = self.query_one("#range-to", Input).value
        try:
            chosen = typed_range(raw_from, raw_to, fmt.now_ms())
        except ValueError as exc:
            self.query_one("#range-message", Static).update(literal(exc, "bold red"))
            return
        self.dismiss(chosen)

    def action_cancel(self) -> None:
        self.dismiss(None)


class RawReadingsScreen(TaskerScreen):
    """The raw readings of one server and metric in a time range, one page at a time."""

    AUTO_FOCUS = "#raw"
    BINDINGS = [
        Binding("n", "older", "Older", tooltip="Next page: older readings"),
        Binding("p", "newer", "Newer", tooltip="Previous page: newer readings"),
        # Off the footer (80 columns are full); the head line says it when paged back.
        Binding("u", "latest", "Latest", show=False, tooltip="Back to the newest readings, with the range ending now"),
        Binding("m", "metric", "Metric", tooltip="Switch between power and CO2"),
        Binding("t", "preset", "Range", tooltip="Next preset time range"),
        Binding("T", "custom_range", "Custom range", show=False, tooltip="Type a time range"),
        Binding(
            "x", "export", "Export", tooltip="Write every reading of the range to a CSV file (the foot line says where)"
        ),
        Binding("escape", "back", "Back", tooltip="Back to the previous screen"),
    ]

    def __init__(self, server_id: str) -> None:
        super().__init__()
        self.server_id = server_id
        self.metric = "power"
        self.preset: int | None = 1
        # The preset `u` goes back to after a typed range (which stays as typed until then).
        self.last_preset = 1
        self.range = preset_range(self.preset, fmt.now_ms())
        # cursors[i] opens page i; page 0 starts at the newest reading.
        self.cursors: list[str | None] = [None]
        self.next_cursor: str | None = None
        self.page_rows = 0
        self.export_note = ""

    @property
    def server(self) -> Server:
        return self.tasker.fleet.servers.get(self.server_id) or placeholder(self.server_id)

    @property
    def title_text(self) -> str:
        return f"{self.server.name} ▸ Raw readings"

    def compose_body(self) -> ComposeResult:
        yield Static(id="status-head")
        table: DataTable[str] = DataTable(id="raw", cursor_type="row", zebra_stripes=True)
        table.add_column("Time (UTC)", key="ts", width=24)
        table.add_column("Value", key="value", width=12)
        table.add_column("Epoch ms", key="ms", width=14)
        yield table
        yield Static(id="status-foot")

    def on_mount(self) -> None:
        super().on_mount()
        self.load_page()

    def _show_head(self, loading: bool = False) -> None:
        metric = METRICS[self.metric]
        page = len(self.cursors)
        first = (page - 1) * PAGE_SIZE + 1
        text = Text()
        text.append(f"{metric.name} ({metric.unit})", "bold")
        text.append(f"  {self.range.label}", "")
        text.append("  newest first", "dim")
        text.append(f"  page {page}", "bold")
        if loading:
            text.append("  loading…", "italic")
        elif self.page_rows:
            text.append(f"  rows {first}–{first + self.page_rows - 1}", "")
            text.append("  more older: n" if self.next_cursor else "  oldest reached", "dim")
            if page > 1 or self.preset is None:
                text.append("  newest: u", "dim")
        else:
            text.append("  no readings in this range", "yellow")
        self.query_one("#status-head", Static).update(text)

    def _show_foot(self) -> None:
        note = self.export_note or f"x exports this range as CSV to {home_relative(self.tasker.export_dir)}"
        self.query_one("#status-foot", Static).update(literal(note))

    @work(exclusive=True, group="page", exit_on_error=False)
    async def load_page(self) -> None:
        self._show_head(loading=True)
        page = await self.tasker.client.readings(
            self.server_id,
            self.metric,
            start=self.range.from_ms,
            end=self.range.to_ms,
            limit=PAGE_SIZE,
            cursor=self.cursors[-1],
        )
        readings = page.get("readings") or []
        table = self.query_one("#raw", DataTable)
        table.clear()
        for item in readings:
            ts = int(item["ts"])
            value = fmt.reading(fmt.as_value(item.get("value")))
            table.add_row(Text(fmt.timestamp(ts, with_ms=True)), Text(value, justify="right"), Text(str(ts)))
        self.page_rows = len(readings)
        self.next_cursor = page.get("next_cursor")
        self._show_head()
        self._show_foot()

    def action_older(self) -> None:
        if not self.next_cursor:
            self.notify("This is the oldest page of the range.", severity="information")
            return
        self.cursors.append(self.next_cursor)
        self.load_page()

    def action_newer(self) -> None:
        if len(self.cursors) == 1:
            self.notify("This is the newest page.", severity="information")
            return
        self.cursors.pop()
        self.load_page()

    def _restart(self) -> None:
        self.cursors = [None]
        self.next_cursor = None
        self.load_page()

    def action_latest(self) -> None:
        if self.preset is None:
            self.preset = self.last_preset  # a typed range ends where it was typed to end: leave it
        self.range = preset_range(self.preset, fmt.now_ms())
        self._restart()

    def action_metric(self) -> None:
        self.metric = "co2" if self.metric == "power" else "power"
        self._restart()

    def action_preset(self) -> None:
        self.preset = 0 if self.preset is None else (self.preset + 1) % len(PRESETS)
        self.range = preset_range(self.preset, fmt.now_ms())
        self._restart()

    def action_custom_range(self) -> None:
        self.app.push_screen(RangeScreen(), self._custom_chosen)

    def _custom_chosen(self, chosen: TimeRange | None) -> None:
        if chosen is not None:
            self.range = chosen
            if self.preset is not None:
                self.last_preset = self.preset
            self.preset = None  # a typed range stays as typed
            self._restart()

    def action_back(self) -> None:
        self.dismiss()

    def action_export(self) -> None:
        self.export_csv()

    def _export_progress(self, path: Path, rows: int) -> None:
        self.export_note = f"Exporting to {home_relative(path)}… {rows:,} rows"
        self._show_foot()

    @work(exclusive=True, group="export", exit_on_error=False)
    async def export_csv(self) -> None:
        path = export_path(self.tasker.export_dir, self.server.name, self.metric)
        self.export_note = f"Exporting to {home_relative(path)}…"
        self._show_foot()
        readings = self.tasker.client.iter_readings(
            self.server_id,
            self.metric,
            start=self.range.from_ms,
            end=self.range.to_ms,
            limit=EXPORT_PAGE_SIZE,
        )
        try:
            rows = await write_readings_csv(
                path,
                readings,
                server_id=self.server_id,
                server_name=self.server.name,
                metric=self.metric,
                progress=lambda rows: self._export_progress(path, rows),
            )
        except OSError as exc:
            self.export_note = f"Export failed: {exc.strerror or exc} ({path})"
            self._show_foot()
            self.notify(self.export_note, severity="error")
            return
        self.export_note = f"Exported {rows:,} readings to {home_relative(path)}"
        self._show_foot()
        self.notify(self.export_note, title="CSV written", timeout=8)
