"""The fleet table: one row per server, live power/CO2 and their recent sparklines.

A Line API widget rather than a DataTable: every visible row changes every second, and building
rows straight from segments (cached per row content) costs a fraction of DataTable's per-cell
rendering, which the 500-server benchmark showed to dominate. It draws from a `FleetState` the
screen hands it, repaints only visible rows whose text changed, and sorts and filters over the
state, so a sort by a live column follows the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tasker_tui import format as fmt
from tasker_tui.fleet_state import FleetState, Server, location_text, matches_filter
from tasker_tui.literal import one_line
from tasker_tui.task_board import ServerLoad

SPARK_SPAN_S = 300  # the sparklines show the last five minutes
WIDE_AT = 120  # table width from which the wide layout (site, longer names) is used
PADDING = 1  # blank cells each side of a column

SOURCE_COLORS = {
    "coal": "#d05050", "oil": "#c87050", "gas": "#e0a040", "grid-mix": "#d8c050",
    "nuclear": "#40b0d0", "hydro": "#50a0f0", "wind": "#60c060", "solar": "#a0d040",
}
POWER_SPARK = "#e0a040"
CO2_SPARK = "#60c0a0"


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    right: bool = False


COLUMNS = (
    Column("name", "Name"),
    Column("location", "Location"),
    Column("source", "Source"),
    Column("power", "W", right=True),
    Column("co2", "g/h", right=True),
    Column("tasks", "Tasks"),
    Column("power_spark", "Power 5m"),
    Column("co2_spark", "CO2 5m"),
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


CURSOR_BINDINGS = [
    Binding("up", "cursor(-1)", "Up", show=False),
    Binding("down", "cursor(1)", "Down", show=False),
    Binding("pageup", "page(-1)", "Page up", show=False),
    Binding("pagedown", "page(1)", "Page down", show=False),
    Binding("home", "edge(0)", "First", show=False),
    Binding("end", "edge(1)", "Last", show=False),
]
"""The cursor keys of Tasker's tables (the widget implements cursor, page and edge)."""


def tasks_cell(load: ServerLoad | None) -> str:
    """`▶2+1`: two tasks running, one more planned there; blank when none."""
    if load is None:
        return ""
    return (f"▶{load.running}" if load.running else "") + (f"+{load.planned}" if load.planned else "")


def fit(text: str, width: int, right: bool = False) -> str:
    """`text` padded or cut (with an ellipsis) to exactly `width` cells: counted in cells, not
    characters, so a name in wide (CJK) characters cannot push the columns after it."""
    cells = cell_len(text)
    if cells > width:
        return set_cell_size(text, width - 1) + "…" if width > 0 else ""
    pad = " " * (width - cells)
    return pad + text if right else text + pad


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

    class HistoryWanted(Message):
        """Rows on screen whose recent past the state has not been filled with yet."""

        def __init__(self, server_ids: list[str]) -> None:
            super().__init__()
            self.server_ids = server_ids

    def __init__(self, state: FleetState, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.state = state
        self.filter_text = ""
        self.sort_key = "name"
        self.sort_reverse = False
        self.cursor_row = 0
        self.now_ms: Callable[[], int] = fmt.now_ms
        self._widths: dict[str, int] = {}
        self._order: list[str] = []
        self._cells: dict[str, RowCells] = {}
        self._strips: LRUCache[tuple, Strip] = LRUCache(1024)
        self._synced_registry = -1
        self._synced_filter: str | None = None
        self._styles: dict[str, Style] = {}
        # Running and planned tasks per server, set by the screen (attributes down).
        self.loads: dict[str, ServerLoad] = {}
        self._loads_version = -1

    # --- what the screen asks for -------------------------------------------------------

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
        self.filter_text = text
        self.refresh_live(force=True)

    def set_sort(self, key: str, reverse: bool = False) -> None:
        self.sort_key = key
        self.sort_reverse = reverse
        self.refresh_live(force=True)

    def next_sort(self) -> None:
        keys = [c.key for c in COLUMNS]
        self.set_sort(keys[(keys.index(self.sort_key) + 1) % len(keys)], self.sort_reverse)

    def reverse_sort(self) -> None:
        self.set_sort(self.sort_key, not self.sort_reverse)

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
                self.set_sort(column.key, not self.sort_reverse if column.key == self.sort_key else False)
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
        rows_changed = force or self._synced_registry != self.state.registry_version or self._synced_filter != self.filter_text
        if rows_changed:
            self._sync_rows()
        if rows_changed or self.sort_key in LIVE_COLUMNS:
            self._apply_order()
        self._paint_visible(full=rows_changed)

    def _sync_rows(self) -> None:
        wanted = [sid for sid, server in self.state.servers.items() if matches_filter(server, self.filter_text)]
        kept = set(wanted)
        self._order = [sid for sid in self._order if sid in kept]
        known = set(self._order)
        self._order += [sid for sid in wanted if sid not in known]
        for server_id in list(self._cells):
            if server_id not in kept:
                del self._cells[server_id]
        self._synced_registry = self.state.registry_version
        self._synced_filter = self.filter_text
        self.virtual_size = Size(sum(self._widths.values()) + 2 * PADDING * len(COLUMNS), len(self._order) + 1)
        # Registry edits change what the static cells say: forget what was painted.
        self._cells.clear()

    def _sort_value(self, server_id: str) -> Any:
        server = self.state.servers.get(server_id, {})
        key = self.sort_key
        if key == "name":
            return server.get("name", "").casefold()
        if key == "location":
            return location_text(server, with_site=True).casefold()
        if key == "source":
            return server.get("energy_source", "")
        if key == "tasks":
            load = self.loads.get(server_id, ServerLoad())
            return (load.running, load.planned)
        if key in ("power", "co2"):
            value = self.state.latest(server_id, key)
            return value if fmt.is_number(value) else -1.0
        series = self.state.series.get(server_id)
        metric = "power" if key == "power_spark" else "co2"
        mean = fmt.mean_since(series.samples(metric), self.now_ms() - SPARK_SPAN_S * 1000) if series else None
        return -1.0 if mean is None else mean

    def _apply_order(self) -> None:
        keep = self.selected_server_id
        names = {sid: self.state.servers.get(sid, {}).get("name", "") for sid in self._order}
        ordered = sorted(self._order, key=lambda sid: (self._sort_value(sid), names[sid]), reverse=self.sort_reverse)
        if ordered == self._order:
            return
        self._order = ordered
        if keep is not None:
            self.cursor_row = ordered.index(keep)
            self._scroll_cursor_into_view()
        self.refresh()

    def visible_rows(self) -> range:
        """Indices of the rows on screen now."""
        top = int(self.scroll_y)
        return range(top, min(len(self._order), top + max(0, self.size.height - 1)))

    def _row_cells(self, server_id: str, now_ms: int) -> RowCells:
        state = self.state
        server = state.servers.get(server_id, {})
        series = state.series.get(server_id)
        stale = state.is_stale(server_id, now_ms)
        wide = self._widths.get("location", 0) > 12
        spark_width = self._widths.get("power_spark", 8)
        if series is None:
            power = co2 = "—"
            power_spark = co2_spark = ""
        else:
            power = fmt.watts(series.latest("power"))
            co2 = fmt.grams_per_hour(series.latest("co2"))
            power_spark = fmt.sparkline(series.power, now_ms, spark_width, SPARK_SPAN_S)
            co2_spark = fmt.sparkline(series.co2, now_ms, spark_width, SPARK_SPAN_S)
        return RowCells(
            stale, one_line(server.get("name", server_id)), one_line(location_text(server, with_site=wide)),
            one_line(server.get("energy_source", "")), power, co2, tasks_cell(self.loads.get(server_id)),
            power_spark, co2_spark,
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
            strip = self._strips.get(key)
            if strip is None:
                strip = self._strips[key] = self._row_strip(cells, selected, base)
        return strip.crop_extend(int(self.scroll_x), int(self.scroll_x) + width, base)

    def _header_strip(self, style: Style) -> Strip:
        segments = []
        for column in COLUMNS:
            label = column.label
            if column.key == self.sort_key:
                label += " ▼" if self.sort_reverse else " ▲"
            text = fit(label, self._widths[column.key], column.right)
            segments.append(Segment(" " * PADDING + text + " " * PADDING, style))
        return Strip(segments)

    def _row_strip(self, cells: RowCells, selected: bool, base: Style) -> Strip:
        row = base + self._style("fleet-table--cursor") if selected else base
        muted = row + self._style("fleet-table--stale") if cells.stale else row
        pad = " " * PADDING
        widths = self._widths
        mark = (muted, "○ ") if cells.stale else (row + self._style("fleet-table--fresh-mark"), "● ")
        source_style = muted if cells.stale else row + Style(color=SOURCE_COLORS.get(cells.source))
        name_style = muted if cells.stale else row + Style(bold=True)
        segments = [
            Segment(pad, row), Segment(mark[1], mark[0]),
            Segment(fit(cells.name, widths["name"] - 2), name_style), Segment(pad * 2, row),
            Segment(fit(cells.location, widths["location"]), row), Segment(pad * 2, row),
            Segment(fit(cells.source, widths["source"]), source_style), Segment(pad * 2, row),
            Segment(fit(cells.power, widths["power"], right=True), muted), Segment(pad * 2, row),
            Segment(fit(cells.co2, widths["co2"], right=True), muted), Segment(pad * 2, row),
            Segment(fit(cells.tasks, widths["tasks"]), row + Style(color="green", bold=True)), Segment(pad * 2, row),
            Segment(fit(cells.power_spark, widths["power_spark"]), muted if cells.stale else row + Style(color=POWER_SPARK)),
            Segment(pad * 2, row),
            Segment(fit(cells.co2_spark, widths["co2_spark"]), muted if cells.stale else row + Style(color=CO2_SPARK)),
            Segment(pad, row),
        ]
        return Strip(segments)
