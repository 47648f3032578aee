"""The home screen: every server with its live power and CO2, fleet totals, sort and filter."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from tasker.models import Server
from tasker_tui import format as fmt
from tasker_tui.fleet_state import FLEET_FIELDS
from tasker_tui.screens.base import TaskerScreen
from tasker_tui.widgets.fleet_table import COLUMNS, FleetTable


class FleetScreen(TaskerScreen):
    """The fleet at a glance; every server action starts here."""

    SCREEN_TITLE = "Fleet"
    AUTO_FOCUS = "#fleet"
    BINDINGS = [
        Binding("enter", "open", "Open", tooltip="Open the selected server's charts and spec"),
        Binding("a", "add", "Add", tooltip="Register a new server"),
        Binding("e", "edit", "Edit", tooltip="Edit the selected server"),
        Binding("d", "delete", "Delete", tooltip="Delete the selected server (asks first)"),
        Binding("r", "readings", "Raw", show=False, tooltip="Raw readings of the selected server"),
        Binding("t", "tasks", "Tasks", tooltip="Every task: state, server, start, progress, CO2"),
        Binding("p", "plan", "Plan", show=False, tooltip="Each server's timeline under its grid intensity"),
        Binding("slash", "filter", "Filter", key_display="/", tooltip="Filter: words or field:value, like region:eu-*"),
        Binding("escape", "clear_filter", "Clear filter", show=False, tooltip="Clear the filter"),
    ]

    def compose_body(self) -> ComposeResult:
        yield Static(id="totals")
        yield FleetTable(self.tasker.fleet, id="fleet")
        yield Static("No servers registered yet. Press a to register one.", id="fleet-empty")
        yield Input(
            placeholder=f"filter: word or field:value ({' '.join(FLEET_FIELDS)}), * any, ! not, := exact",
            id="filter",
            compact=True,
        )

    @property
    def table(self) -> FleetTable:
        return self.query_one(FleetTable)

    def refresh_live(self) -> None:
        table = self.table
        table.set_loads(self.tasker.board.loads(), self.tasker.board.version)
        table.refresh_live()
        app = self.tasker
        if app.selected_after_save and app.selected_after_save in table.shown_ids:
            table.move_cursor(row=table.shown_ids.index(app.selected_after_save), animate=False)
            app.selected_after_save = None
        self._show_totals()
        self.query_one("#fleet-empty").set_class(bool(self.tasker.fleet.servers), "-hidden")

    def _show_totals(self) -> None:
        """Count, power and CO2 of the rows shown: with a filter, of those it leaves."""
        fleet = self.tasker.fleet
        table = self.table
        query = table.filter
        shown = table.shown_ids if query.active else None
        totals = fleet.totals(fmt.now_ms(), shown)
        text = Text()
        count = len(fleet.servers) if shown is None else len(shown)
        if shown is not None:
            text.append(f"/{query.text}", "bold yellow")
            text.append(": ", "dim")
        if query.error:  # alone on the line, so 80 columns show it whole
            text.append(query.error, "bold red")
            self.query_one("#totals", Static).update(text)
            return
        text.append(f"{count} server{'' if count == 1 else 's'}", "bold")
        text.append(f", {totals.fresh} live", "green")
        if totals.stale:
            text.append(f" · {totals.stale} stale", "yellow")
        text.append(" │ ", "dim")
        # No fresh reading is no figure, not a fleet drawing 0 W.
        text.append(fmt.fleet_power(totals.watts) if totals.fresh else "— W", "bold")
        text.append(" │ ", "dim")
        text.append(fmt.quantity(totals.co2_kg_per_h, "kg CO2/h", 2) if totals.fresh else "— kg CO2/h", "bold")
        sort_label = next(c.label for c in COLUMNS if c.key == table.sort_key)
        text.append(" │ ", "dim")
        text.append(f"{sort_label} {table.order.arrow}")
        self.query_one("#totals", Static).update(text)

    # --- selection ----------------------------------------------------------------------

    def _selected(self) -> Server | None:
        server_id = self.table.selected_server_id
        server = self.tasker.fleet.servers.get(server_id or "")
        if server is None:
            self.notify("No server selected.", severity="warning")
        return server

    @on(FleetTable.HistoryWanted)
    def _history_wanted(self, event: FleetTable.HistoryWanted) -> None:
        self.tasker.backfill_sparklines(event.server_ids)

    @on(FleetTable.ServerSelected, "#fleet")
    def _row_chosen(self, event: FleetTable.ServerSelected) -> None:
        self.tasker.open_server(event.server_id)

    def action_open(self) -> None:
        if server := self._selected():
            self.tasker.open_server(server.id)

    def action_readings(self) -> None:
        from tasker_tui.screens.raw_readings import RawReadingsScreen

        if server := self._selected():
            self.app.push_screen(RawReadingsScreen(server.id))

    def action_tasks(self) -> None:
        self.tasker.open_tasks()

    def action_plan(self) -> None:
        self.tasker.open_plan()

    # --- register / edit / delete --------------------------------------------------------

    def action_add(self) -> None:
        self.tasker.request_edit(None)

    def action_edit(self) -> None:
        if server := self._selected():
            self.tasker.request_edit(server)

    def action_delete(self) -> None:
        if server := self._selected():
            self.tasker.request_delete(server)

    # --- sort and filter -----------------------------------------------------------------

    @on(FleetTable.SortChanged, "#fleet")
    def _sort_changed(self) -> None:
        self._show_totals()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("-visible")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.remove_class("-visible")
        self.table.set_filter("")
        self.table.focus()
        self._show_totals()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value.strip())
        self._show_totals()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            self.action_clear_filter()
            return
        self.table.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "clear_filter":
            return bool(self.table.filter_text) or self.query_one("#filter").has_class("-visible")
        # Not the base's role check: an engineer's a/e/d still run, to say why they may not
        # (the footer, help and palette leave them out through `offers`).
        return True
