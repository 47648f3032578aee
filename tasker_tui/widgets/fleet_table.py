"""The fleet table: one row per server, live power/CO2 and their recent sparklines.

It draws from a `FleetState` the screen hands it and repaints only the rows on screen; rows
that scroll into view are painted at once. Sorting and filtering happen here, over the state,
so a sort by a live column follows the data without rebuilding the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from tasker_tui import format as fmt
from tasker_tui.fleet_state import FleetState, Server, location_text, matches_filter

SPARK_SPAN_S = 300  # the sparklines show the last five minutes
WIDE_AT = 120  # table width from which the wide layout (site, longer names) is used

SOURCE_STYLES = {
    "coal": "bold #c0504d",
    "oil": "#c0504d",
    "gas": "#e0a040",
    "grid-mix": "#d8c050",
    "nuclear": "#40b0d0",
    "hydro": "#50a0f0",
    "wind": "#60c060",
    "solar": "#a0d040",
}


class NameCell(Text):
    """The name cell; it carries its server id so sorting can look the server up."""

    server_id: str = ""


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    justify: str = "left"


COLUMNS = (
    Column("name", "Name"),
    Column("location", "Location"),
    Column("source", "Source"),
    Column("power", "W", "right"),
    Column("co2", "g/h", "right"),
    Column("power_spark", "Power 5m"),
    Column("co2_spark", "CO2 5m"),
)
LIVE_COLUMNS = {"power", "co2", "power_spark", "co2_spark"}


def column_widths(table_width: int) -> dict[str, int]:
    """Widths of each column's content for a table this wide (each cell adds 2 of padding)."""
    wide = table_width >= WIDE_AT
    widths = {
        "name": 22 if wide else 14,
        "location": 24 if wide else 10,
        "source": 8,
        "power": 7 if wide else 6,
        "co2": 8 if wide else 7,
    }
    # What is left (minus the padding and a vertical scrollbar) goes to the two sparklines.
    spare = table_width - 3 - sum(widths.values()) - 2 * len(COLUMNS)
    spark = max(4, min(40, spare // 2))
    widths["power_spark"] = widths["co2_spark"] = spark
    return widths


class FleetTable(DataTable):
    """Servers as rows; `refresh_live` brings what is on screen up to date with the state."""

    BINDINGS = [
        ("s", "next_sort", "Sort"),
        ("S", "reverse_sort", "Reverse"),
    ]

    def __init__(self, state: FleetState, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=1, **kwargs)
        self.state = state
        self.filter_text = ""
        self.sort_key = "name"
        self.sort_reverse = False
        self.now_ms: Callable[[], int] = fmt.now_ms
        self._widths: dict[str, int] = {}
        self._order: list[str] = []
        self._synced_registry = -1
        self._synced_filter: str | None = None
        self._painted: tuple = ()

    # --- what the screen asks for -------------------------------------------------------

    @property
    def selected_server_id(self) -> str | None:
        if not self._order or not 0 <= self.cursor_row < len(self._order):
            return None
        return self._order[self.cursor_row]

    @property
    def shown_ids(self) -> list[str]:
        """Server ids in the order the table shows them (after filter and sort)."""
        return list(self._order)

    def set_filter(self, text: str) -> None:
        self.filter_text = text
        self.refresh_live(force=True)

    def set_sort(self, key: str, reverse: bool = False) -> None:
        self.sort_key = key
        self.sort_reverse = reverse
        self._label_columns()
        self.refresh_live(force=True)

    def action_next_sort(self) -> None:
        keys = [c.key for c in COLUMNS]
        self.set_sort(keys[(keys.index(self.sort_key) + 1) % len(keys)], self.sort_reverse)

    def action_reverse_sort(self) -> None:
        self.set_sort(self.sort_key, not self.sort_reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        self.set_sort(key, not self.sort_reverse if key == self.sort_key else False)

    def on_resize(self) -> None:
        if column_widths(self.size.width) != self._widths:
            self._rebuild()
        self.refresh_live(force=True)

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        # Rows scrolled into view get their live values now, not at the next tick.
        self.call_after_refresh(self._paint_visible)

    # --- keeping rows in step with the state -----------------------------------------------

    def refresh_live(self, force: bool = False) -> None:
        """Sync rows with the registry and filter, re-sort, and repaint the visible rows."""
        if not self._widths:
            return
        if force or self._synced_registry != self.state.registry_version or self._synced_filter != self.filter_text:
            self._sync_rows()
            force = True
        if force or self.sort_key in LIVE_COLUMNS:
            self._apply_order(force=force)
        self._paint_visible(force=force)

    def _rebuild(self) -> None:
        selected = self.selected_server_id
        self._widths = column_widths(self.size.width)
        self.clear(columns=True)
        for column in COLUMNS:
            self.add_column(column.label, width=self._widths[column.key], key=column.key)
        self._label_columns()
        self._order = []
        self._synced_registry = -1
        self._sync_rows()
        self._apply_order(keep=selected, force=True)
        self._paint_visible(force=True)

    def _label_columns(self) -> None:
        for column in COLUMNS:
            if column.key not in self.columns:
                continue
            arrow = (" ▼" if self.sort_reverse else " ▲") if column.key == self.sort_key else ""
            self.columns[column.key].label = Text(column.label + arrow, style="bold" if arrow else "")
        self._require_update_dimensions = True
        self.refresh()

    def _sync_rows(self) -> None:
        state = self.state
        wanted = {sid for sid, server in state.servers.items() if matches_filter(server, self.filter_text)}
        present = set(self._order)
        gone = present - wanted
        if len(gone) > 20:
            # Removing rows one by one is quadratic in DataTable; start over instead.
            self.clear()
            self._order, present, gone = [], set(), set()
        for server_id in gone:
            self.remove_row(server_id)
        fresh = sorted(wanted - present)
        for server_id in fresh:
            self.add_row(*self._static_cells(state.servers[server_id]), *self._live_cells(server_id, 0), key=server_id)
        for server_id in wanted & present:
            self._update_static_cells(state.servers[server_id])
        # The table's own order now: survivors as they were, then the new rows as added.
        self._order = [sid for sid in self._order if sid in wanted] + fresh
        self._synced_registry = state.registry_version
        self._synced_filter = self.filter_text

    def _sort_value(self, server_id: str) -> Any:
        server = self.state.servers.get(server_id, {})
        key = self.sort_key
        if key == "name":
            return server.get("name", "").casefold()
        if key == "location":
            return location_text(server, with_site=True).casefold()
        if key == "source":
            return server.get("energy_source", "")
        if key in ("power", "co2"):
            value = self.state.latest(server_id, key)
            return -1.0 if value is None else value
        series = self.state.series.get(server_id)
        metric = "power" if key == "power_spark" else "co2"
        mean = fmt.mean_since(series.samples(metric), self.now_ms() - SPARK_SPAN_S * 1000) if series else None
        return -1.0 if mean is None else mean

    def _apply_order(self, keep: str | None = None, force: bool = False) -> None:
        keep = keep or self.selected_server_id
        ordered = sorted(
            self._order,
            key=lambda sid: (self._sort_value(sid), self.state.servers.get(sid, {}).get("name", "")),
            reverse=self.sort_reverse,
        )
        if ordered == self._order and not force:
            return
        self._order = ordered
        position = {sid: index for index, sid in enumerate(ordered)}
        self.sort("name", key=lambda cell: position[cell.server_id])
        if keep in position and position[keep] != self.cursor_row:
            self.move_cursor(row=position[keep], animate=False)

    # --- cells ---------------------------------------------------------------------------

    def _name_cell(self, server: Server, stale: bool) -> NameCell:
        cell = NameCell()
        cell.server_id = server["id"]
        cell.append("○ " if stale else "● ", "dim" if stale else "bold green")
        cell.append(server["name"], "dim" if stale else "bold")
        return cell

    def _static_cells(self, server: Server) -> list[Any]:
        wide = self._widths.get("location", 0) > 10
        source = server.get("energy_source", "")
        return [
            self._name_cell(server, stale=True),
            Text(location_text(server, with_site=wide)),
            Text(source, SOURCE_STYLES.get(source, "")),
        ]

    def _update_static_cells(self, server: Server) -> None:
        for key, cell in zip(("location", "source"), self._static_cells(server)[1:]):
            self.update_cell(server["id"], key, cell)

    def _live_cells(self, server_id: str, now_ms: int) -> list[Text]:
        state = self.state
        series = state.series.get(server_id)
        stale = state.is_stale(server_id, now_ms) if now_ms else True
        value_style = "dim" if stale else ""
        if series is None:
            return [Text("—", justify="right"), Text("—", justify="right"), Text(""), Text("")]
        power = Text(fmt.watts(series.latest("power")), value_style, justify="right")
        co2 = Text(fmt.grams_per_hour(series.latest("co2")), value_style, justify="right")
        now = now_ms or fmt.now_ms()
        width = self._widths.get("power_spark", 8)
        spark_power = Text(fmt.sparkline(series.power, now, width, SPARK_SPAN_S), "dim" if stale else "#e0a040")
        spark_co2 = Text(fmt.sparkline(series.co2, now, width, SPARK_SPAN_S), "dim" if stale else "#60c0a0")
        return [power, co2, spark_power, spark_co2]

    def visible_rows(self) -> range:
        """Indices of the rows on screen now."""
        top = int(self.scroll_y)
        height = max(0, self.scrollable_content_region.height - (1 if self.show_header else 0))
        return range(top, min(len(self._order), top + height + 1))

    def _paint_visible(self, force: bool = False) -> None:
        if not self._widths:
            return
        now = self.now_ms()
        rows = self.visible_rows()
        signature = (self.state.readings_version, rows.start, rows.stop, tuple(self._order[rows.start:rows.stop]), now // 1000)
        if not force and signature == self._painted:
            return
        self._painted = signature
        for index in rows:
            server_id = self._order[index]
            server = self.state.servers.get(server_id)
            if server is None:
                continue
            stale = self.state.is_stale(server_id, now)
            try:
                self.update_cell(server_id, "name", self._name_cell(server, stale))
                for key, cell in zip(("power", "co2", "power_spark", "co2_spark"), self._live_cells(server_id, now)):
                    self.update_cell(server_id, key, cell)
            except CellDoesNotExist:
                continue
