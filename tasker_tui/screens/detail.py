"""One server: power and CO2 charts over a chosen range (live at the right edge), figures, spec."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from tasker.domain import REGIONS
from tasker.models import Server
from tasker_tui import format as fmt
from tasker_tui.fleet_state import placeholder
from tasker_tui.literal import literal, one_line
from tasker_tui.range_stats import LiveSeries
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.widgets.fleet_table import tasks_cell
from tasker_tui.widgets.metric_chart import MetricChart


def fit_parts(parts: list[Text], width: int) -> Text:
    """Parts side by side, a part that would not fit starting a new line: a narrow terminal
    breaks between figures, never between a value and its unit."""
    text = Text()
    line = 0
    for part in parts:
        if line and width and line + 2 + part.cell_len > width:
            text.append("\n")
            line = 0
        elif line:
            text.append("  ")
            line += 2
        text.append_text(part)
        line += part.cell_len
    return text


@dataclass(frozen=True, slots=True)
class ChartRange:
    key: str
    label: str
    span_s: int


RANGES = (
    ChartRange("1", "5m", 300),
    ChartRange("2", "1h", 3600),
    ChartRange("3", "24h", 86400),
    ChartRange("4", "7d", 7 * 86400),
    ChartRange("5", "30d", 30 * 86400),
)
HISTORY_POINTS = 300
FINE_RESOLUTION_S = 60  # the backend's minute rollups: how finely the start of data is located
SPEC_WIDE_AT = 110


def _short_time(ts_ms: int | None) -> str:
    """An instant as `2026-11-28 04:47Z` (UTC, to the minute)."""
    if ts_ms is None:
        return "—"
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%MZ")


def spec_table(server: Server) -> Table:
    """The server's registered spec as a two-column table; every value a literal `Text` (a Rich
    table would parse a str cell as markup)."""
    region = server.location.region
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column()

    def row(label: str, value: object, style: str = "") -> None:
        table.add_row(label, literal(value, style))

    row("Id", server.id)
    row("Region", f"{region} ({REGIONS.get(region, ('?',))[0]})")
    row("Site", server.location.site or "—")
    row("Source", server.energy_source)
    intensity = server.carbon_intensity_g_per_kwh
    row("Intensity", f"{fmt.number(intensity)} g/kWh" if intensity is not None else "—")
    row("", server.carbon_intensity_source, "dim italic")
    number = lambda value: fmt.number(value) if value is not None else "—"  # noqa: E731
    row("PUE", number(server.pue))
    row("Idle/max", f"{number(server.idle_watts)} / {number(server.max_watts)} W")
    row("Cores", "—" if server.cores is None else server.cores)
    row("Tags", ", ".join(server.tags) or "—")
    row("Created", f"{_short_time(server.created_at_ms)} by {server.created_by}")
    if server.updated_at_ms is not None and server.updated_at_ms != server.created_at_ms:
        row("Updated", _short_time(server.updated_at_ms))
    return table


class DetailScreen(TaskerScreen):
    """Charts of one server; keys 1-5 choose the range, which always ends now."""

    BINDINGS = [
        *(
            Binding(r.key, f"range('{r.key}')", f"Range {r.label}", show=False, tooltip=f"Show the last {r.label}")
            for r in RANGES
        ),
        Binding("escape", "back", "Back", tooltip="Back to the fleet"),
        Binding("e", "edit", "Edit", tooltip="Edit this server"),
        Binding("d", "delete", "Delete", tooltip="Delete this server (asks first)"),
        Binding("r", "readings", "Raw", tooltip="This server's raw readings"),
        Binding("i", "toggle_spec", "Spec", tooltip="Show or hide the server's spec"),
        Binding("t", "tasks", "Tasks", tooltip="The tasks placed on this server: planned, running or run there"),
    ]

    def __init__(self, server_id: str) -> None:
        super().__init__()
        self.server_id = server_id
        self.range = RANGES[0]
        self.series: dict[str, LiveSeries] = {}
        self.spec_forced: bool | None = None
        self._loaded_for: tuple = ()
        self._drawn: tuple = ()
        self._last_known = placeholder(server_id)

    @property
    def server(self) -> Server:
        server = self.tasker.fleet.servers.get(self.server_id)
        if server is not None:
            self._last_known = server
        return self._last_known

    @property
    def title_text(self) -> str:
        return f"Fleet ▸ {self.server.name}"

    def compose_body(self) -> ComposeResult:
        yield Static(id="detail-head")
        yield Static(id="range-tabs")
        with Horizontal(id="detail-body"):
            with Vertical(id="charts"):
                yield MetricChart("Power", "W", "orange", id="power-chart")
                yield Static(id="power-figures", classes="figures")
                yield MetricChart("CO2", "g/h", "green", id="co2-chart")
                yield Static(id="co2-figures", classes="figures")
            yield Static(id="spec")

    def on_mount(self) -> None:
        super().on_mount()
        self._show_tabs()
        self._show_spec()
        self.load_history()

    def on_screen_resume(self) -> None:
        super().on_screen_resume()
        if not self.is_current:
            return  # closed meanwhile (see TaskerScreen.on_screen_resume)
        self._show_spec()
        if self._loaded_for:  # coming back from another screen: fill what happened meanwhile
            self.load_history()

    def on_resize(self) -> None:
        super().on_resize()
        self._show_spec()

    # --- history and live ---------------------------------------------------------------

    @work(exclusive=True, group="history", exit_on_error=False)
    async def load_history(self) -> None:
        client = self.tasker.client
        chosen = self.range
        end = fmt.now_ms()
        start = end - chosen.span_s * 1000
        loaded: dict[str, LiveSeries] = {}
        for metric in ("power", "co2"):
            answer = await client.read_history(self.server_id, metric, start=start, end=end, points=HISTORY_POINTS)
            resolution = answer.resolution_s
            series = LiveSeries(answer.points, resolution, chosen.span_s * 1000)
            if series.buckets and resolution > FINE_RESOLUTION_S:
                # A coarse oldest bucket may hold readings from only its last minutes (a server
                # added recently): find where they start, so energy is not counted before that.
                first = int(series.buckets[0][0])
                fine = await client.read_history(
                    self.server_id,
                    metric,
                    start=first,
                    end=min(end, first + resolution * 1000),
                    points=max(2, min(HISTORY_POINTS, resolution // FINE_RESOLUTION_S)),
                )
                if fine.points:
                    series.data_from_ms = fine.points[0][0]
            loaded[metric] = series
        if chosen is not self.range:
            return
        self.series = loaded
        link = self.tasker.link
        self._loaded_for = (chosen.key, link.epoch if link else 0)
        self._drawn = ()
        self.refresh_live()

    def refresh_live(self) -> None:
        fleet = self.tasker.fleet
        if self.server_id not in fleet.servers and fleet.connected and self._loaded_for:
            # Only from the top: `dismiss` pops whatever is on top, and a delete from this screen
            # has closed it already by the time a late resume gets here.
            if self.is_current:
                self.notify(f"{self.server.name} was deleted.", severity="warning")
                self.dismiss()
            return
        link = self.tasker.link
        if self._loaded_for and link and self._loaded_for[1] != link.epoch:
            self.load_history()  # reconnected: fetch the gap from history
        self._show_head()
        if not self.series:
            return
        live = fleet.series.get(self.server_id)
        if live is not None:
            for metric, series in self.series.items():
                for ts, value in live.samples(metric):
                    if ts > series.last_ts_ms:
                        series.add(ts, value)
        now = fmt.now_ms()
        signature = (
            fleet.readings_version,
            self.range.key,
            now // 1000 if self.range.span_s <= 300 else now // 10_000,
            self.query_one("#power-figures").content_size.width,
        )  # the figures fit the width they have
        if signature == self._drawn:
            return
        self._drawn = signature
        start = now - self.range.span_s * 1000
        # The newest bucket counts only up to the last reading (plus one sensor interval).
        last_reading = live.last_ts_ms + int(live.interval_s * 1000) if live and live.last_ts_ms else None
        for metric, unit, energy_unit in (("power", "W", "kWh"), ("co2", "g/h", "kg CO2")):
            series = self.series[metric]
            self.query_one(f"#{metric}-chart", MetricChart).show_points(series.points(), start, now)
            figures = series.figures(now, last_reading)
            parts = []
            for label, figure in (("min", figures.minimum), ("avg", figures.average), ("max", figures.maximum)):
                parts.append(Text(f"{label} ", "dim").append(fmt.quantity(figure, unit, 0 if metric == "power" else 1)))
            total = figures.value_hours / 1000  # Wh -> kWh, g -> kg
            amount = Text("energy " if metric == "power" else "emitted ", "dim")
            amount.append(fmt.quantity(total, energy_unit, 3), "bold")
            span_s = self.range.span_s
            if figures.covered_s < 0.9 * span_s:
                coverage = Text(f"from {fmt.age(figures.covered_s)} of data in {self.range.label}", "dim")
            else:
                coverage = Text(f"over {self.range.label}", "dim")
            box = self.query_one(f"#{metric}-figures", Static)
            text = fit_parts([*parts, amount, coverage], box.content_size.width)
            box.update(text)

    def _show_head(self) -> None:
        fleet = self.tasker.fleet
        server = self.server
        now = fmt.now_ms()
        stale = fleet.is_stale(self.server_id, now)
        text = Text()
        text.append(one_line(server.name), "bold")
        text.append(one_line(f"  {server.location.region}"))
        if server.location.site:
            text.append(one_line(f"/{server.location.site}"))
        text.append(one_line(f"  {server.energy_source}"))
        text.append("   ")
        series = fleet.series.get(self.server_id)
        last = series.last_ts_ms if series else None
        if stale and not last and fleet.connected:
            text.append("○ no readings yet", "bold yellow")  # registered, no sensor has reported
        elif stale:
            text.append("○ stale", "bold yellow")
            if last:
                text.append(f" (last reading {fmt.age((now - last) / 1000)} ago)", "yellow")
        else:
            text.append("● live ", "bold green")
        text.append(f"  {fmt.watts(fleet.latest(self.server_id, 'power'))} W", "bold")
        text.append(f"  {fmt.grams_per_hour(fleet.latest(self.server_id, 'co2'))} g/h", "bold")
        if tasks := tasks_cell(self.tasker.board.loads().get(self.server_id)):
            text.append(f"  tasks {tasks}", "green")
        self.query_one("#detail-head", Static).update(text)

    def _show_tabs(self) -> None:
        text = Text()
        for chart_range in RANGES:
            chosen = chart_range is self.range
            text.append(f" {chart_range.key} ", "bold reverse" if chosen else "dim")
            text.append(f"{chart_range.label} ", "bold reverse" if chosen else "")
            text.append(" ")
        text.append(" range ends now; live", "dim")
        self.query_one("#range-tabs", Static).update(text)

    def _show_spec(self) -> None:
        if not self.is_mounted:
            return
        spec = self.query_one("#spec", Static)
        visible = self.spec_forced if self.spec_forced is not None else self.size.width >= SPEC_WIDE_AT
        spec.set_class(visible, "-visible")
        spec.update(spec_table(self.server))

    # --- actions ------------------------------------------------------------------------

    def action_range(self, key: str) -> None:
        chosen = next(r for r in RANGES if r.key == key)
        if chosen is self.range:
            return
        self.range = chosen
        self.series = {}
        self._show_tabs()
        for metric in ("power", "co2"):
            self.query_one(f"#{metric}-chart", MetricChart).show_points(
                (), fmt.now_ms() - chosen.span_s * 1000, fmt.now_ms(), "loading…"
            )
            self.query_one(f"#{metric}-figures", Static).update("")
        self.load_history()

    def action_back(self) -> None:
        self.dismiss()

    def action_toggle_spec(self) -> None:
        shown = self.query_one("#spec").has_class("-visible")
        self.spec_forced = not shown
        self._show_spec()

    def action_tasks(self) -> None:
        self.tasker.open_tasks(f"server:={self.server.name}")

    def action_readings(self) -> None:
        from tasker_tui.screens.raw_readings import RawReadingsScreen

        self.app.push_screen(RawReadingsScreen(self.server_id))

    def action_edit(self) -> None:
        self.tasker.request_edit(self.server)

    def action_delete(self) -> None:
        self.tasker.request_delete(self.server)
