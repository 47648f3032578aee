"""The fleet and tasks tables as a k9s or btop user drives them, and the detail charts' axes,
over the fake backend with a frozen clock: vi keys, one-key sorts, the field filter with totals
that follow it, colour thresholds, honest sparklines and chart ticks."""

from __future__ import annotations

import re

import pytest

from tasker_tui import format as fmt
from tasker_tui.screens.confirm import ConfirmScreen
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.tasks import TasksScreen
from tasker_tui.widgets.fleet_table import COLUMNS, FleetTable
from tasker_tui.widgets.task_table import TaskTable
from tests.tui.conftest import type_text, wait_for_text, wait_until
from tests.tui.fakes import FakeClient, server_json
from tests.tui.helpers_fake import BASE_MS, fake_app, fleet_ready
from tests.tui.screen_text import screen_text, widget_text


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


def names(app) -> list[str]:
    table = app.screen.query_one(FleetTable)
    return [app.fleet.servers[sid].name for sid in table.shown_ids]


def selected_name(app) -> str | None:
    server_id = app.screen.query_one(FleetTable).selected_server_id
    return app.fleet.servers[server_id].name if server_id else None


def row_of(app, name: str) -> str:
    return next((line for line in screen_text(app).splitlines() if f" {name} " in line), "")


def cell_color(app, name: str, text: str) -> str | None:
    """The colour the fleet table draws `text` in on `name`'s row."""
    table = app.screen.query_one(FleetTable)
    index = table.shown_ids.index(next(s for s, v in app.fleet.servers.items() if v.name == name))
    strip = table.render_line(index - int(table.scroll_y) + 1)
    for segment in strip:
        if segment.text.strip() == text:
            return segment.style.color.name if segment.style and segment.style.color else None
    raise AssertionError(f"{text!r} not on the row of {name}: {strip.text!r}")


async def test_j_k_g_and_shift_g_move_the_fleet_cursor():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        order = names(app)
        assert selected_name(app) == order[0]  # the cursor starts on the top row
        await pilot.press("j", "j")
        assert selected_name(app) == order[2]
        await pilot.press("k")
        assert selected_name(app) == order[1]
        await pilot.press("G")
        assert selected_name(app) == order[-1]
        await pilot.press("g")
        assert selected_name(app) == order[0]


async def test_shift_letter_sorts_by_that_column_and_again_reverses():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        table = app.screen.query_one(FleetTable)
        await pilot.press("j", "j")
        chosen = table.selected_server_id
        await pilot.press("W")  # power: the biggest first
        watts = [app.fleet.latest(sid, "power") for sid in table.shown_ids]
        assert watts == sorted(watts, reverse=True)
        await wait_for_text(pilot, "W ▼")
        assert "W ▼" in widget_text(app, "#totals")
        await pilot.press("W")
        watts = [app.fleet.latest(sid, "power") for sid in table.shown_ids]
        assert watts == sorted(watts)
        assert table.selected_server_id == chosen  # the cursor followed its server
        await pilot.press("S")  # source: a to z first
        sources = [app.fleet.servers[sid].energy_source for sid in table.shown_ids]
        assert sources == sorted(sources)
        await pilot.press("N")
        assert names(app) == sorted(names(app))


async def test_header_underlines_each_columns_sort_letter():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        header = app.screen.query_one(FleetTable).render_line(0)
        underlined = "".join(s.text for s in header if s.style and s.style.underline)
        assert underlined == "NLSWTPO"  # Name Location Source W Tasks Power CO2 (g/h has no C to mark)


async def test_field_filter_with_wildcards_and_the_totals_follow_it():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("slash")
        await type_text(pilot, "source:coal")
        await pilot.press("enter")
        assert sorted(names(app)) == ["db-iad-1", "web-bom-1"]
        coal = app.screen.query_one(FleetTable).shown_ids
        watts = sum(app.fleet.latest(sid, "power") for sid in coal)
        totals = widget_text(app, "#totals")
        assert "/source:coal: 2 servers, 2 live" in totals and fmt.fleet_power(watts) in totals
        await pilot.press("slash")
        app.screen.query_one("#filter").value = ""
        await type_text(pilot, "region:eu-* !tag:web")
        await pilot.press("enter")
        assert sorted(names(app)) == ["api-fra-1", "batch-sto-1", "db-fra-1"]
        await pilot.press("escape")
        assert len(names(app)) == 12 and "12 servers" in widget_text(app, "#totals")


async def test_a_filter_naming_no_field_says_so_and_shows_nothing():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("slash")
        await type_text(pilot, "colour:red")
        await wait_for_text(pilot, 'no field "colour"; fields: name, region, site, source, tag')
        assert names(app) == []
        app.screen.query_one("#filter").value = "s:coal"
        await wait_for_text(pilot, '"s:" could be site or source')


async def test_a_filter_that_leaves_one_row_leaves_it_selected():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("G")  # the cursor far below where the one row will be
        await pilot.press("slash")
        await type_text(pilot, "db-fra")
        await pilot.press("enter")
        assert names(app) == ["db-fra-1"] and selected_name(app) == "db-fra-1"
        await pilot.press("d")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the delete question")
        await wait_for_text(pilot, "Delete server db-fra-1?")


async def test_power_is_coloured_by_its_share_of_max_and_co2_by_intensity():
    app, client = fake_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        by_name = {s.name: s for s in app.fleet.servers.values()}
        readings = []
        for name, share in (("db-iad-1", 0.95), ("web-dub-1", 0.1), ("ml-par-1", 0.7)):
            server = by_name[name]
            watts = server.max_watts * share
            grams = watts / 1000 * server.pue * server.carbon_intensity_g_per_kwh
            readings += [
                {"server_id": server.id, "metric": "power", "ts": BASE_MS, "value": watts},
                {"server_id": server.id, "metric": "co2", "ts": BASE_MS, "value": grams},
            ]
        client.push({"type": "readings", "readings": readings})
        await wait_until(pilot, lambda: app.fleet.latest(by_name["db-iad-1"].id, "power") == 589.0, what="reading")
        await pilot.pause(0.2)
        assert cell_color(app, "db-iad-1", "589") == "red"  # 95% of its 620 W
        assert cell_color(app, "ml-par-1", "980") == "yellow"  # 70% of 1400 W
        assert cell_color(app, "web-dub-1", "26") not in ("red", "yellow")  # 10%: nothing to see
        assert cell_color(app, "db-iad-1", fmt.grams_per_hour(589 / 1000 * 1.5 * 820)) == "red"  # coal
        assert cell_color(app, "web-dub-1", fmt.grams_per_hour(26 / 1000 * 1.5 * 11)) == "green"  # wind


async def test_a_server_with_no_reading_yet_shows_no_figure_not_zero():
    quiet = [server_json(1, "new-1", "eu-west", "wind"), server_json(2, "new-2", "us-east", "coal")]
    app, client = fake_app(FakeClient(quiet))
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")
        app.screen.query_one("#username").value = "alice"
        app.screen.query_one("#password").value = client.password
        await pilot.press("enter")
        await wait_for_text(pilot, "new-2")
        totals = widget_text(app, "#totals")
        assert "— W" in totals and "— kg CO2/h" in totals and "0 W" not in totals
        row = row_of(app, "new-1")
        assert "—" in row and not re.search(r"\b0\b", row)


async def test_a_steady_server_draws_a_steady_sparkline_from_zero():
    steady = [server_json(1, "steady-1", "eu-west", "wind", idle=100, top=400)]
    client = FakeClient(steady)
    # 220 W with a watt of noise for five minutes: the old per-row scale drew it as cliffs.
    client.raw[(steady[0]["id"], "power")] = [(BASE_MS - i * 1000, 220.0 + (i % 7 == 0)) for i in range(300, 0, -1)]
    client.raw[(steady[0]["id"], "co2")] = [(BASE_MS - i * 1000, 3.6) for i in range(300, 0, -1)]
    app, client = fake_app(client)
    async with app.run_test(size=(160, 30)) as pilot:
        await fleet_ready(pilot, client)
        await wait_until(pilot, lambda: "▅▅▅" in row_of(app, "steady-1"), what="the sparkline")
        spark = row_of(app, "steady-1").split()[-2]
        assert set(spark) == {"▅"}  # 220 of 400 W: a little over half, every column
        assert "Power 5m, 0–max W" in screen_text(app)  # the header names the scale


async def test_detail_chart_axes_are_round_and_a_day_shows_its_date():
    app, client = fake_app()
    async with app.run_test(size=(100, 40)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.series, what="history")
        await pilot.pause(0.2)
        text = screen_text(app)
        for chart in text.split("CO2 (g/h)"):  # the power chart, then the CO2 chart
            y_labels = [int(m) for m in re.findall(r"^\s*(\d+)┤", chart, re.MULTILINE)]
            steps = {a - b for a, b in zip(y_labels, y_labels[1:])}
            assert y_labels[-1] == 0 and len(steps) == 1, y_labels  # from zero, evenly spaced
            assert str(steps.pop()).strip("0") in ("1", "2", "5"), y_labels  # round steps
        assert re.search(r"11:02\s+11:03\s+11:04", text)  # whole minutes
        await pilot.press("3")
        await wait_until(pilot, lambda: "Nov 18" in screen_text(app), what="the date at midnight")
        x_labels = [line for line in screen_text(app).splitlines() if "Nov 18" in line][0].split()
        assert len(set(x_labels)) == len(x_labels) and "00:00" not in x_labels  # no time twice
        await pilot.press("4")
        await wait_for_text(pilot, "Nov 12 Nov 13 Nov 14 Nov 15 Nov 16 Nov 17 Nov 18")  # every day


async def test_tasks_table_sorts_and_filters_the_same_way():
    app, client = fake_app()
    client.add_task("render-frames", cores=8, duration_s=7200)
    client.add_task("nightly-backup", cores=4, duration_s=3600)
    client.add_task("too-big", cores=500)
    client.schedule()
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen) and app.board.loaded, what="tasks")
        await pilot.pause(0.1)
        table = app.screen.query_one(TaskTable)
        await pilot.press("P")  # plan g: the biggest first, tasks with no plan last
        names = [app.board.tasks[t].name for t in table.shown_ids]
        figures = [app.board.tasks[t].plan.co2_g for t in table.shown_ids if app.board.tasks[t].plan]
        assert figures == sorted(figures, reverse=True) and names[-1] == "too-big"
        await pilot.press("P")
        assert [app.board.tasks[t].name for t in table.shown_ids][-1] == "too-big"
        await pilot.press("G")
        assert app.board.tasks[table.selected_task_id].name == "too-big"
        await pilot.press("k", "g")
        assert table.cursor_row == 0
        await pilot.press("slash")
        await type_text(pilot, "state:plan* !name:render*")
        await pilot.press("enter")
        assert [app.board.tasks[t].name for t in table.shown_ids] == ["nightly-backup"]


async def test_help_and_palette_name_the_sort_keys_in_one_line():
    from tasker_tui.screens.help import HelpScreen

    app, client = fake_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await fleet_ready(pilot, client)
        commands = {c.title: c.help for c in app.get_system_commands(app.screen)}
        assert "Shift+N L S W C T P O sort by column" in commands["Sort"]
        await pilot.press("question_mark")
        await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        text = screen_text(app)
        assert "N  Sort  Shift+N L S W C T P O sort by column; again reverses" in text
        assert "Every action is also in the command palette (ctrl+p)." in text  # still one screen


async def test_every_sort_key_both_ways_over_absurd_values_keeps_running():
    from tests.tui.test_hostile_input import hostile_client

    app, client = fake_app(hostile_client())
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        table = app.screen.query_one(FleetTable)
        for column in COLUMNS:
            await pilot.press(column.letter.upper())
            reverse = table.sort_reverse
            await pilot.press(column.letter.upper())
            assert table.sort_key == column.key and table.sort_reverse != reverse
            assert len(table.shown_ids) == len(app.fleet.servers)
        assert app.is_running
