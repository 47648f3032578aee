"""The fleet table: one row per server, live power/CO2 and their recent sparklines.

A Line API widget rather than a DataTable: every visible row changes every second, and building
rows straight from segments (cached per row content) costs a fraction of DataTable's per-cell
rendering, which the 500-server benchmark showed to dominate. It draws from a `FleetState` the
screen hands it, repaints only visible rows whose text changed, and sorts and filters over the
state (with `table_query`), so a sort by a live column follows the data.

Figures are drawn so they compare across rows: W is coloured by its share of the server's
maximum power, g/h by the carbon intensity of the power drawn, the power sparkline runs from 0 to
the server's maximum and the CO2 sparkline from 0 to one scale shared by the fleet (named in its
header).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tasker.models import Server
from tasker_tui import format as fmt
from tasker_tui.fleet_state import FLEET_FIELDS, FleetState, filter_fields, placeholder
from tasker_tui.literal import one_line
from tasker_tui.table_query import Filter, SortColumn, SortOrder, ordered, parse_filter
from tasker_tui.task_board import ServerLoad

# fit and header_label are imported from here too (plan_gantt, tests): they lived here first.
from tasker_tui.widgets.table_row import cell, fit, header_label, header_row, table_row  # noqa: F401

SPARK_SPAN_S = 300  # the sparklines show the last five minutes
WIDE_AT = 120  # table width from which the wide layout (site, longer names) is used
PADDING = 1  # blank cells each side of a column

SOURCE_COLORS = {
    "coal": "#d05050",
    "oil": "#c87050",
    "gas": "#e0a040",
    "grid-mix": "#d8c050",
    "nuclear": "#40b0d0",
    "hydro": "#50a0f0",
    "wind": "#60c060",
    "solar": "#a0d040",
}
POWER_SPARK = "#e0a040"
CO2_SPARK = "#60c0a0"
# Share of its maximum power from which a server's W turns yellow, then red.
POWER_THRESHOLDS = ((0.85, "red"), (0.6, "yellow"))
# Carbon intensity (g CO2e per kWh drawn) from which g/h turns yellow, then red: below the first
# is wind, hydro, nuclear and solar; above the second, gas, oil and coal.
INTENSITY_THRESHOLDS = ((400.0, "red"), (100.0, "yellow"))
LOW_CARBON = "green"


@dataclass(frozen=True, slots=True)
class Column(SortColumn):
    right: bool = False


COLUMNS = (
    Column("name", "Name", "n"),
    Column("location", "Location", "l"),
    Column("source", "Source", "s"),
    Column("power", "W", "w", descending_first=True, right=True),
    Column("co2", "g/h", "c", descending_first=True, right=True),
    Column("tasks", "Tasks", "t", descending_first=True),
    Column("power_spark", "Power 5m", "p", descending_first=True),
    Column("co2_spark", "CO2 5m", "o", descending_first=True),
)
LIVE_COLUMNS = {"power", "co2", "power_spark", "co2_spark"}


def column_widths(table_width: int) -> dict[str, int]:
    """Widths of each column's text for a table this wide (each column adds 2 of padding)."""
    wide = table_width >= WIDE_AT
    widths = {
        "name": 22 if wide else 14,
        "location": 24 if wide else 10,
        "source": 8,
        "power": 7 if wide else 6,
        "co2": 8 if wide else 7,
        "tasks": 6 if wide else 5,
    }
    # What is left (minus the padding and a scrollbar) goes to the two sparklines.
    spare = table_width - 2 - sum(widths.values()) - 2 * PADDING * len(COLUMNS)
    spark = max(4, min(40, spare // 2))
    widths["power_spark"] = widths["co2_spark"] = spark
    return widths


class RowCells(NamedTuple):
    """What one row shows; rows are repainted only when this changes."""

    stale: bool
    name: str
    location: str
    source: str
    power: str
    co2: str
    tasks: str
    power_spark: str
    co2_spark: str
    power_color: str  # "" for the table's own colour
    co2_color: str


CURSOR_BINDINGS = [
    Binding("up,k", "cursor(-1)", "Up", show=False),
    Binding("down,j", "cursor(1)", "Down", show=False),
    Binding("pageup", "page(-1)", "Page up", show=False),
    Binding("pagedown", "page(1)", "Page down", show=False),
    Binding("home,g", "edge(0)", "First", show=False),
    Binding("end,G", "edge(1)", "Last", show=False),
]
"""The cursor keys of Tasker's tables, vi-style too (the widget implements cursor, page and edge)."""


def sort_bindings(columns: Iterable[SortColumn]) -> list[Binding]:
    """Shift and a column's letter sorts by it; again reverses (the widget implements sort). The
    first key stands for all of them in the help and the palette: one line, not one per column."""
    columns = list(columns)
    letters = " ".join(c.letter.upper() for c in columns)
    first, *rest = columns
    return [
        Binding(
            first.letter.upper(),
            f"sort('{first.key}')",
            "Sort",
            show=False,
            tooltip=f"Shift+{letters} sort by column; again reverses",
        ),
        *(Binding(c.letter.upper(), f"sort('{c.key}')", f"Sort by {c.label}", show=False) for c in rest),
    ]


def tasks_cell(load: ServerLoad | None) -> str:
    """`▶2+1`: two tasks running, one more planned there; blank when none."""
    if load is None:
        return ""
    return (f"▶{load.running}" if load.running else "") + (f"+{load.planned}" if load.planned else "")


def _number(value: object) -> float | None:
    return (
        float(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and fmt.is_number(float(value))
        else None
    )


def power_color(server: Server, watts: float | None) -> str:
    """Yellow, then red, as the server nears its registered maximum power."""
    top = _number(server.max_watts)
    if watts is None or not fmt.is_number(watts) or not top or top <= 0:
        return ""
    share = watts / top
    return next((color for threshold, color in POWER_THRESHOLDS if share >= threshold), "")


def intensity_color(server: Server, watts: float | None, grams_per_h: float | None) -> str:
    """Green, yellow or red by the carbon intensity of what the server draws: measured from its
    live power and CO2 (grid-mix intensity moves through the day), else as registered."""
    intensity = None
    if (
        watts is not None
        and grams_per_h is not None
        and fmt.is_number(watts)
        and fmt.is_number(grams_per_h)
        and watts > 0
    ):
        intensity = grams_per_h / (watts / 1000) / (_number(server.pue) or 1.0)
    else:
        intensity = _number(server.carbon_intensity_g_per_kwh)
    if intensity is None or not fmt.is_number(intensity):
        return ""
    return next((color for threshold, color in INTENSITY_THRESHOLDS if intensity >= threshold), LOW_CARBON)


def co2_ceiling(servers: Iterable[Server]) -> float | None:
    """The fleet's shared CO2 sparkline scale: the highest CO2 rate (g/h) any server reaches at its
    maximum power, as registered."""
    ceiling = None
    for server in servers:
        top, pue, intensity = (_number(v) for v in (server.max_watts, server.pue, server.carbon_intensity_g_per_kwh))
        if top and intensity is not None:
            rate = top / 1000 * (pue or 1.0) * intensity
            if fmt.is_number(rate) and rate > 0 and (ceiling is None or rate > ceiling):
                ceiling = rate
    return ceiling


class FleetTable(ScrollView, can_focus=True):
    """Servers as rows; `refresh_live` brings what is on screen up to date with the state."""

    DEFAULT_CSS = """
    FleetTable {
        background: $surface;
        color: $foreground;
        height: 1fr;
        & > .fleet-table--header { text-style: bold; background: $panel; color: $foreground; }
        & > .fleet-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
        }
        &:focus > .fleet-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
        & > .fleet-table--stale { color: $text-muted; }
        & > .fleet-table--fresh-mark { color: $success; text-style: bold; }
    }
    """
    COMPONENT_CLASSES = {"fleet-table--header", "fleet-table--cursor", "fleet-table--stale", "fleet-table--fresh-mark"}

    BINDINGS = [
        *CURSOR_BINDINGS,
        *sort_bindings(COLUMNS),
        Binding("enter", "select", "Open", tooltip="Open the selected server's charts and spec"),
    ]

    class ServerSelected(Message):
        """Enter (or a click on the selected row) on a server."""

        def __init__(self, table: FleetTable, server_id: str) -> None:
            super().__init__()
            self.table = table
            self.server_id = server_id

        @property
        def control(self) -> FleetTable:
            return self.table

    class SortChanged(Message):
        """The user chose another sort (a key or a click on a header)."""

        def __init__(self, table: FleetTable) -> None:
            super().__init__()
            self.table = table

        @property
        def control(self) -> FleetTable:
            return self.table

    class HistoryWanted(Message):
        """Rows on screen whose recent past the state has not been filled with yet."""

        def __init__(self, server_ids: list[str]) -> None:
            super().__init__()
            self.server_ids = server_ids

    def __init__(self, state: FleetState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.filter = Filter()
        self.order = SortOrder("name")
        self.cursor_row = 0
        self.now_ms: Callable[[], int] = fmt.now_ms
        self._widths: dict[str, int] = {}
        self._order: list[str] = []
        self._cells: dict[str, RowCells] = {}
        self._strips: LRUCache[tuple, Strip] = LRUCache(1024)
        self._synced_registry = -1
        self._synced_filter: Filter | None = None
        self._styles: dict[str, Style] = {}
        self._co2_ceiling: float | None = None
        # Running and planned tasks per server, set by the screen (attributes down).
        self.loads: dict[str, ServerLoad] = {}
        self._loads_version = -1

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
    def selected_server_id(self) -> str | None:
        if not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def shown_ids(self) -> list[str]:
        """Server ids in the order the table shows them (after filter and sort)."""
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    def set_loads(self, loads: dict[str, ServerLoad], version: int) -> None:
        """Tasks per server for the Tasks column; repaints only when `version` moved."""
        if version == self._loads_version:
            return
        self._loads_version = version
        self.loads = loads
        self._cells.clear()
        self.refresh_live(force=True)

    def set_filter(self, text: str) -> None:
        """Show the rows `text` matches (see `table_query` for the syntax)."""
        self.filter = parse_filter(text, FLEET_FIELDS)
        self.refresh_live(force=True)

    def set_sort(self, key: str, reverse: bool = False) -> None:
        self.order = SortOrder(key, reverse)
        self.refresh_live(force=True)

    def action_sort(self, key: str) -> None:
        column = next(c for c in COLUMNS if c.key == key)
        self.order = self.order.pressed(column)
        self.refresh_live(force=True)
        self.post_message(self.SortChanged(self))

    def move_cursor(self, row: int, animate: bool = False) -> None:
        """Put the cursor on `row` (clamped) and scroll it into view."""
        if not self._order:
            self.cursor_row = 0
            return
        previous = self.cursor_row
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        self._scroll_cursor_into_view()
        self._refresh_row(previous)
        self._refresh_row(self.cursor_row)

    # --- keyboard and mouse --------------------------------------------------------------

    @property
    def _page(self) -> int:
        return max(1, self.size.height - 2)

    def action_cursor(self, delta: int) -> None:
        self.move_cursor(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * self._page)

    def action_edge(self, end: int) -> None:
        self.move_cursor(len(self._order) - 1 if end else 0)

    def action_select(self) -> None:
        if server_id := self.selected_server_id:
            self.post_message(self.ServerSelected(self, server_id))

    def on_click(self, event: events.Click) -> None:
        if event.y == 0:
            self._sort_by_header(event.x)
            return
        row = int(self.scroll_y) + event.y - 1
        if 0 <= row < len(self._order):
            if row == self.cursor_row:
                self.action_select()
            else:
                self.move_cursor(row)

    def _sort_by_header(self, x: int) -> None:
        left = 0
        for column in COLUMNS:
            right = left + self._widths.get(column.key, 0) + 2 * PADDING
            if left <= x + int(self.scroll_x) < right:
                self.action_sort(column.key)
                return
            left = right

    def _scroll_cursor_into_view(self) -> None:
        top = int(self.scroll_y)
        visible = max(1, self.size.height - 1)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False, immediate=True)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False, immediate=True)

    # --- keeping rows in step with the state -----------------------------------------------

    def on_resize(self) -> None:
        widths = column_widths(self.size.width)
        if widths != self._widths:
            self._widths = widths
            self._strips.clear()
            self._cells.clear()
        self.refresh_live(force=True)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def refresh_live(self, force: bool = False) -> None:
        """Sync rows with the registry and filter, re-sort, and repaint what changed on screen."""
        if not self._widths:
            return
        rows_changed = (
            force or self._synced_registry != self.state.registry_version or self._synced_filter != self.filter
        )
        if rows_changed:
            first = not self._order
            self._sync_rows()
            self._apply_order()
            if first:
                self.move_cursor(0)  # a table just filled starts at its top row
        elif self.order.key in LIVE_COLUMNS:
            self._apply_order()
        self._paint_visible(full=rows_changed)

    def _sync_rows(self) -> None:
        keep = self.selected_server_id
        wanted = [sid for sid, server in self.state.servers.items() if self.filter.matches(filter_fields(server))]
        kept = set(wanted)
        self._order = [sid for sid in self._order if sid in kept]
        known = set(self._order)
        self._order += [sid for sid in wanted if sid not in known]
        for server_id in list(self._cells):
            if server_id not in kept:
                del self._cells[server_id]
        if self._synced_registry != self.state.registry_version:
            self._co2_ceiling = co2_ceiling(self.state.servers.values())
        self._synced_registry = self.state.registry_version
        self._synced_filter = self.filter
        self.virtual_size = Size(sum(self._widths.values()) + 2 * PADDING * len(COLUMNS), len(self._order) + 1)
        # The cursor stays on its server when that is still shown, else on a row that is (a filter
        # that leaves one row leaves it selected).
        if keep in kept:
            self.cursor_row = self._order.index(keep)
        else:
            self.cursor_row = max(0, min(self.cursor_row, len(self._order) - 1))
        # Registry edits change what the static cells say: forget what was painted.
        self._cells.clear()

    def _sort_value(self, server_id: str) -> Any:
        """What a server sorts by in the current column; None when it has no value there."""
        server = self._server(server_id)
        key = self.order.key
        if key == "name":
            return server.name.casefold()
        if key == "location":
            return server.location.text(with_site=True).casefold()
        if key == "source":
            return server.energy_source
        if key == "tasks":
            load = self.loads.get(server_id, ServerLoad())
            return (load.running, load.planned)
        if key in ("power", "co2"):
            value = self.state.latest(server_id, key)
            return value if fmt.is_number(value) else None
        series = self.state.series.get(server_id)
        metric = "power" if key == "power_spark" else "co2"
        return fmt.mean_since(series.samples(metric), self.now_ms() - SPARK_SPAN_S * 1000) if series else None

    def _apply_order(self) -> None:
        keep = self.selected_server_id
        names = {sid: self._server(sid).name for sid in self._order}
        ordered_ids = ordered(self._order, self._sort_value, lambda sid: (names[sid], sid), self.order.reverse)
        if ordered_ids == self._order:
            return
        self._order = ordered_ids
        if keep is not None:
            self.cursor_row = ordered_ids.index(keep)
            self._scroll_cursor_into_view()
        self.refresh()

    def visible_rows(self) -> range:
        """Indices of the rows on screen now."""
        top = int(self.scroll_y)
        return range(top, min(len(self._order), top + max(0, self.size.height - 1)))

    def _server(self, server_id: str) -> Server:
        """The row's server; a row whose server just left the registry shows its id until redrawn."""
        server = self.state.servers.get(server_id)
        return server if server is not None else placeholder(server_id)

    def _row_cells(self, server_id: str, now_ms: int) -> RowCells:
        state = self.state
        server = self._server(server_id)
        series = state.series.get(server_id)
        stale = state.is_stale(server_id, now_ms)
        wide = self._widths.get("location", 0) > 12
        spark_width = self._widths.get("power_spark", 8)
        power_level = co2_level = ""
        if series is None:
            power = co2 = "—"
            power_spark = co2_spark = ""
        else:
            latest_w, latest_co2 = series.latest("power"), series.latest("co2")
            power = fmt.watts(latest_w)
            co2 = fmt.grams_per_hour(latest_co2)
            power_spark = fmt.sparkline(
                series.power, now_ms, spark_width, SPARK_SPAN_S, ceiling=_number(server.max_watts)
            )
            co2_spark = fmt.sparkline(series.co2, now_ms, spark_width, SPARK_SPAN_S, ceiling=self._co2_ceiling)
            power_level = power_color(server, latest_w)
            co2_level = intensity_color(server, latest_w, latest_co2) if latest_co2 is not None else ""
        return RowCells(
            stale,
            one_line(server.name),
            one_line(server.location.text(with_site=wide)),
            one_line(server.energy_source),
            power,
            co2,
            tasks_cell(self.loads.get(server_id)),
            power_spark,
            co2_spark,
            power_level,
            co2_level,
        )

    def _refresh_row(self, index: int) -> None:
        line = index - int(self.scroll_y) + 1
        if 1 <= line < self.size.height:
            self.refresh(Region(0, line, self.size.width, 1))

    def _paint_visible(self, full: bool = False) -> None:
        now = self.now_ms()
        visible = self.visible_rows()
        wanted = [self._order[i] for i in visible if self._order[i] not in self.state.backfilled]
        if wanted and self.state.connected:
            self.state.backfilled.update(wanted)
            self.post_message(self.HistoryWanted(wanted))
        for index in visible:
            server_id = self._order[index]
            cells = self._row_cells(server_id, now)
            if self._cells.get(server_id) != cells:
                self._cells[server_id] = cells
                if not full:
                    self._refresh_row(index)
        if full:
            self.refresh()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if round(old) != round(new):
            self._paint_visible(full=True)  # rows scrolled into view get their live values now

    # --- drawing -------------------------------------------------------------------------

    def _style(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name, partial=True)
        return style

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if not self._widths:
            return Strip.blank(width, base)
        if y == 0:
            strip = self._header_strip(base + self._style("fleet-table--header"))
        else:
            index = int(self.scroll_y) + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            server_id = self._order[index]
            cells = self._cells.get(server_id) or self._row_cells(server_id, self.now_ms())
            self._cells[server_id] = cells
            selected = index == self.cursor_row
            key = (cells, selected, self.has_focus, width)
            cached = self._strips.get(key)
            if cached is None:
                cached = self._strips[key] = self._row_strip(cells, selected, base)
            strip = cached
        return strip.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, base)

    def header_labels(self) -> dict[str, str]:
        """Column headers for the current widths; the sparklines name their scale where it fits."""
        labels = {c.key: c.label for c in COLUMNS}
        ceiling = self._co2_ceiling
        scale = f"0–{fmt.grams_per_hour(ceiling)} g/h" if ceiling else ""
        options = {
            "power_spark": ["Power 5m, 0–max W", "Power 5m", "W 5m"],
            "co2_spark": [f"CO2 5m, {scale}" if scale else "CO2 5m", f"CO2 {scale}" if scale else "CO2 5m", "CO2 5m"],
        }
        for key, candidates in options.items():
            room = self._widths.get(key, 0) - (2 if key == self.order.key else 0)
            labels[key] = next((c for c in candidates if cell_len(c) <= room), candidates[-1])
        return labels

    def _header_strip(self, style: Style) -> Strip:
        return header_row(
            COLUMNS, self._widths, self.order, style, labels=self.header_labels(), gap=2 * PADDING, edge=PADDING
        )

    def _row_strip(self, cells: RowCells, selected: bool, base: Style) -> Strip:
        row = base + self._style("fleet-table--cursor") if selected else base
        muted = row + self._style("fleet-table--stale") if cells.stale else row
        widths = self._widths
        mark = (muted, "○ ") if cells.stale else (row + self._style("fleet-table--fresh-mark"), "● ")
        source_style = muted if cells.stale else row + Style(color=SOURCE_COLORS.get(cells.source))
        name_style = muted if cells.stale else row + Style(bold=True)
        power_style = muted if cells.stale or not cells.power_color else row + Style(color=cells.power_color)
        co2_style = muted if cells.stale or not cells.co2_color else row + Style(color=cells.co2_color)
        drawn = [
            [Segment(mark[1], mark[0]), *cell(cells.name, widths["name"] - 2, name_style)],
            cell(cells.location, widths["location"], row),
            cell(cells.source, widths["source"], source_style),
            cell(cells.power, widths["power"], power_style, right=True),
            cell(cells.co2, widths["co2"], co2_style, right=True),
            cell(cells.tasks, widths["tasks"], row + Style(color="green", bold=True)),
            cell(cells.power_spark, widths["power_spark"], muted if cells.stale else row + Style(color=POWER_SPARK)),
            cell(cells.co2_spark, widths["co2_spark"], muted if cells.stale else row + Style(color=CO2_SPARK)),
        ]
        return table_row(drawn, row, gap=2 * PADDING, edge=PADDING)
