"""The Tasks screen, the submit form, cancelling, the plan view and the task detail, over the
fake backend with a frozen clock: what a sysadmin sees and does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from textual import events
from textual.widgets import Checkbox, Input

from tasker_tui import format as fmt
from tasker_tui.screens.confirm import ConfirmScreen
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.plan import PlanScreen
from tasker_tui.screens.task_detail import TaskDetailScreen
from tasker_tui.screens.task_form import TaskFormScreen
from tasker_tui.screens.tasks import TasksScreen
from tasker_tui.widgets.task_table import TaskTable
from tests.tui.conftest import type_text, wait_for_text, wait_until
from tests.tui.helpers_fake import BASE_MS, fake_app, fleet_ready
from tests.tui.screen_text import screen_text, widget_text


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


def with_tasks():
    app, client = fake_app()
    client.add_task("render-frames", cores=8, duration_s=7200)
    client.add_task("nightly-backup", cores=4, duration_s=3600)
    client.add_task("too-big", cores=500)
    client.schedule()
    return app, client


async def open_tasks(pilot, client) -> TaskTable:
    await fleet_ready(pilot, client)
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, TasksScreen) and pilot.app.board.loaded, what="tasks")
    await pilot.pause(0.1)
    return pilot.app.screen.query_one(TaskTable)


def row_of(app, name: str) -> str:
    """The screen line that names `name` ("" when none does yet)."""
    return next((line for line in screen_text(app).splitlines() if name in line), "")


async def test_tasks_screen_shows_state_server_start_progress_and_co2():
    app, client = with_tasks()
    async with app.run_test(size=(120, 30)) as pilot:
        await open_tasks(pilot, client)
        render = client.tasks["tsk_0000000001"]["plan"]
        row = row_of(app, "render-frames")
        for cell in (
            "planned",
            "web-dub-1",
            "14:00",
            "0%",
            f"{render['co2_g']:.1f}",
            f"{render['run_now_co2_g']:.1f}",
            f"{render['saving_g']:.1f}",
        ):
            assert cell in row, (cell, row)
        assert "unschedulable" in row_of(app, "too-big")
        totals = widget_text(app, "#task-totals")
        assert "3 tasks: 2 planned · 1 unschedulable" in totals and "plan saves" in totals


async def test_progress_counts_the_pieces_run_so_far(monkeypatch):
    app, client = with_tasks()
    task = client.tasks["tsk_0000000001"]
    task["state"] = "running"
    start = BASE_MS - BASE_MS % 1_800_000
    task["plan"]["pieces"] = [[_iso(start - 3_600_000), _iso(start + 3_600_000)]]  # 2h task, 1h gone
    async with app.run_test(size=(120, 30)) as pilot:
        await open_tasks(pilot, client)
        minutes_run = (BASE_MS - (start - 3_600_000)) / 60_000
        assert f"{minutes_run / 120 * 100:.0f}%" in row_of(app, "render-frames")


def _iso(ms: int) -> str:
    from tests.tui.fake_tasks import rfc3339

    return rfc3339(ms)


async def test_sort_and_filter_like_the_fleet():
    app, client = with_tasks()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await open_tasks(pilot, client)
        await pilot.press("P")  # shift+p: by plan grams, the largest first
        assert table.sort_key == "planned"
        figures = [app.board.tasks[t].plan.co2_g for t in table.shown_ids if app.board.tasks[t].plan]
        assert figures == sorted(figures, reverse=True)
        await wait_for_text(pilot, "Plan g ▼")  # the totals line says so at once
        await pilot.press("P")  # again: the smallest first
        figures = [app.board.tasks[t].plan.co2_g for t in table.shown_ids if app.board.tasks[t].plan]
        assert figures == sorted(figures)
        await wait_for_text(pilot, "Plan g ▲")
        await pilot.press("slash")
        await type_text(pilot, "backup")
        await pilot.press("enter")
        assert [app.board.tasks[t].name for t in table.shown_ids] == ["nightly-backup"]
        await wait_for_text(pilot, "/backup: 1 shown")
        await pilot.press("escape")
        assert len(table.shown_ids) == 3 and isinstance(app.screen, TasksScreen)
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back to the fleet")


async def test_plan_frames_update_the_table_live_and_a_burst_reads_the_plan_once():
    app, client = with_tasks()
    async with app.run_test(size=(120, 30)) as pilot:
        await open_tasks(pilot, client)
        await pilot.pause(0.8)
        before = client.calls.count("plan")
        for name in ("burst-1", "burst-2", "burst-3"):
            client.add_task(name, cores=2)
            client.push({"type": "plan", "event": "submitted", "task": client.tasks[f"tsk_{len(client.tasks):010d}"]})
        client.schedule()
        await wait_until(pilot, lambda: "planned" in row_of(app, "burst-3"), what="burst-3 planned")
        await pilot.pause(1.0)
        assert client.calls.count("plan") - before == 1  # four frames, one re-read


async def test_reconnect_reads_the_tasks_again():
    app, client = with_tasks()
    async with app.run_test(size=(120, 30)) as pilot:
        await open_tasks(pilot, client)
        client.drop()
        await wait_until(pilot, lambda: app.link_status.state == "down", what="offline")
        client.add_task("while-away", cores=1)  # no frame: the link was down
        client.down = False
        await wait_for_text(pilot, "while-away", timeout=15)


async def test_the_list_holds_what_is_unfinished_and_what_finished_in_the_last_day(monkeypatch):
    """The TUI asks for finished tasks of the last 24 h only (a fleet's history grows without
    end), and forgets those that age out of that window while it runs."""
    app, client = with_tasks()
    client.add_task("yesterdays-report", state="done")
    async with app.run_test(size=(120, 30)) as pilot:
        await open_tasks(pilot, client)
        await wait_for_text(pilot, "yesterdays-report")
        assert set(client.finished_since_asked) == {"-24h"}  # the list and the savings alike
        # a day and a minute later, the next plan frame leaves it out
        monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS + 86_460_000)
        client.push({"type": "plan", "event": "replanned"})
        await wait_until(pilot, lambda: not row_of(app, "yesterdays-report"), what="the old task forgotten")
        assert row_of(app, "render-frames")  # planned: not finished, stays


async def fill(pilot, values: dict[str, str]) -> None:
    """Clear each field, then type its value into it as a user would."""
    for key, value in values.items():
        pilot.app.screen.query_one(f"#field-{key}", Input).focus()
        await pilot.pause()
        pilot.app.screen.query_one(f"#field-{key}", Input).value = ""
        await type_text(pilot, value)


async def open_form(pilot, client) -> TaskFormScreen:
    await open_tasks(pilot, client)
    await pilot.press("n")
    await wait_until(
        pilot, lambda: isinstance(pilot.app.screen, TaskFormScreen) and pilot.app.screen.ready, what="form"
    )
    return pilot.app.screen


async def test_submit_form_shows_every_error_by_its_field_then_submits():
    app, client = with_tasks()
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, client)
        await fill(
            pilot,
            {
                "name": "my job",
                "cores": "4",
                "duration": "2 hours",
                "deadline": "25:00",
                "regions": "eu-north, mars-1",
                "tags": "batch",
                "command": "render --out 'a b.png'",
            },
        )
        await pilot.press("ctrl+s")
        for key in ("name", "duration", "deadline", "regions"):
            assert form.query_one(f"#row-{key}").has_class("-invalid"), key
        assert not form.query_one("#row-cores").has_class("-invalid")
        text = screen_text(app)
        assert "1-64 of A-Z a-z 0-9 . _ -" in text and "must be a duration like 2h" in text
        assert "unknown region 'mars-1'" in text
        assert "argv: ['render', '--out', 'a b.png']" in text  # the command as it will run
        await fill(pilot, {"name": "my-job", "duration": "90m", "deadline": "+6h", "regions": "eu-north"})
        form.query_one("#field-interruptible", Checkbox).focus()
        assert "no: runs in one piece" in screen_text(app)
        await pilot.press("space")
        await wait_for_text(pilot, "yes: may pause and resume")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="back to the tasks")
        sent = client.tasks["tsk_0000000004"]
        assert (sent["name"], sent["cores"], sent["duration_s"], sent["interruptible"]) == ("my-job", 4, 5400, True)
        assert sent["command"] == ["render", "--out", "a b.png"] and sent["regions"] == ["eu-north"]
        await wait_for_text(pilot, "my-job")
        client.schedule()
        await wait_until(pilot, lambda: "planned" in row_of(app, "my-job"), what="my-job planned")


async def test_a_task_declared_ahead_gets_its_earliest_start_and_a_deadline_after_it():
    app, client = with_tasks()
    async with app.run_test(size=(80, 24)) as pilot:
        form = await open_form(pilot, client)
        await fill(pilot, {"name": "nightly", "cores": "2", "duration": "1h", "earliest": "+3h", "deadline": "+2h"})
        await pilot.press("ctrl+s")
        assert form.query_one("#row-deadline").has_class("-invalid")
        assert widget_text(app, "#error-deadline") == "is not after the earliest start"
        await fill(pilot, {"deadline": "+3h30m"})
        too_short = "leaves less time than the duration after the earliest start"
        await wait_until(pilot, lambda: widget_text(app, "#error-deadline") == too_short, what="a short window")
        await fill(pilot, {"earliest": "tomorrow 25:00"})
        await wait_until(pilot, lambda: form.query_one("#row-earliest").has_class("-invalid"), what="bad start")
        before = datetime.now(timezone.utc).replace(microsecond=0)  # the form sends whole seconds
        await fill(pilot, {"earliest": "+3h", "deadline": "+6h"})
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="back to the tasks")
        sent = client.tasks["tsk_0000000004"]
        start = datetime.fromisoformat(sent["earliest_start"].replace("Z", "+00:00"))
        assert timedelta(hours=3) <= start - before < timedelta(hours=3, minutes=1)
        # queued until then: the table says when it may start, not a bare dash
        may_start = "≥" + fmt.clock(int(start.timestamp() * 1000), BASE_MS)
        nightly = lambda: row_of(app, " nightly ")  # noqa: E731 (not nightly-backup)
        await wait_until(pilot, lambda: may_start in nightly(), what=f"{may_start} in the row")
        assert "queued" in nightly()


async def test_a_servers_detail_counts_its_tasks_and_t_lists_them():
    app, client = with_tasks()
    async with app.run_test(size=(80, 24)) as pilot:
        await open_tasks(pilot, client)  # render-frames and nightly-backup are planned on web-dub-1
        await pilot.press("escape")
        await pilot.press("ctrl+g")  # the go-to-server palette
        await type_text(pilot, "web-dub-1")
        await wait_for_text(pilot, "Go to server web-dub-1")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.ready, what="detail")
        await wait_until(pilot, lambda: "tasks +2" in widget_text(app, "#detail-head"), what="its task count")
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="the tasks screen")
        await wait_until(pilot, lambda: app.screen.table.shown_ids and "too-big" not in screen_text(app), what="filter")
        assert app.screen.query_one("#task-filter", Input).value == "server:=web-dub-1"  # as if typed
        assert "/server:=web-dub-1: 2 shown" in screen_text(app)  # within 80 columns
        text = screen_text(app)
        assert "render-fra" in text and "nightly-ba" in text and "too-big" not in text
        await pilot.press("escape")  # clears the filter first
        await wait_until(pilot, lambda: "too-big" in screen_text(app), what="every task again")


async def test_backend_objections_land_beside_their_fields():
    app, client = with_tasks()
    async with app.run_test(size=(120, 36)) as pilot:
        form = await open_form(pilot, client)
        await fill(pilot, {"name": "taken-name", "cores": "2", "duration": "1h"})
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: form.query_one("#row-name").has_class("-invalid"), what="name refused")
        assert "the backend does not like this name" in screen_text(app)
        assert client.calls.count("submit") == 1


async def test_escape_on_a_changed_form_asks_before_throwing_it_away():
    app, client = with_tasks()
    async with app.run_test(size=(120, 36)) as pilot:
        await open_form(pilot, client)
        await pilot.press("escape")  # nothing typed: closes at once
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="closed")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, TaskFormScreen) and app.screen.ready, what="form")
        await type_text(pilot, "half-typed")
        await pilot.press("escape")
        await wait_for_text(pilot, "Discard this task?")
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, TaskFormScreen), what="kept")
        assert app.screen.query_one("#field-name", Input).value == "half-typed"
        await pilot.press("escape")
        await wait_for_text(pilot, "Discard this task?")
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="discarded")


async def test_cancel_asks_first_and_type_ahead_cannot_answer():
    app, client = with_tasks()
    async with app.run_test(size=(120, 30)) as pilot:
        table = await open_tasks(pilot, client)
        await pilot.press("home")
        target = table.selected_task_id
        # Typed ahead: both keys are queued before the question can be drawn (pilot.press would
        # wait for the screen between keys).
        app.post_message(events.Key("c", "c"))
        app.post_message(events.Key("y", "y"))
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.pause(0.3)
        assert isinstance(app.screen, ConfirmScreen) and client.tasks[target]["state"] == "planned"
        await pilot.press("enter")  # the focus is on "Keep it"
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen), what="kept")
        assert client.tasks[target]["state"] == "planned"
        await pilot.press("c")
        await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="the question")
        await pilot.pause(0.2)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.board.tasks[target].state == "cancelled", what="cancelled")
        assert client.tasks[target]["state"] == "cancelled"


async def open_plan(pilot, client) -> None:
    await fleet_ready(pilot, client)
    await pilot.press("p")
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, PlanScreen) and pilot.app.board.plan, what="plan")
    await pilot.pause(0.2)


async def test_plan_view_draws_each_server_under_its_intensity_with_task_initials():
    app, client = with_tasks()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_plan(pilot, client)
        text = screen_text(app)
        assert "48h from 11-18 11:00 UTC" in text and "30m slots" in text and "2 placed" in text
        assert "19 Nov" in text  # the axis says the date where it crosses midnight
        lines = text.splitlines()
        dub = next(i for i, line in enumerate(lines) if line.strip().startswith("web-dub-1"))
        assert any(c in lines[dub] for c in "▁▂▃▄▅▆▇█")  # its region's intensity
        lanes = "\n".join(lines[dub + 1 : dub + 3])
        assert "R█" in lanes and "N█" in lanes  # render-frames and nightly-backup, side by side
        assert "render-frames (8c, planned)" in " ".join(text.split())


async def test_a_busy_server_shows_its_first_lanes_then_its_cores_in_use():
    app, client = fake_app()
    for i in range(16):  # side by side on one 32-core server: every core in use for 2 h
        client.add_task(f"batch-{i:02d}", cores=2, duration_s=7200)
    client.schedule()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_plan(pilot, client)
        lines = screen_text(app).splitlines()
        dub = next(i for i, line in enumerate(lines) if line.strip().startswith("web-dub-1"))
        assert all("B" in line for line in lines[dub + 1 : dub + 4])  # three lanes of tasks by name
        summary = lines[dub + 4]
        assert summary.split()[:2] == ["+13", "more"]
        used = summary[summary.index("more") + 4 :].strip()
        assert "██" in used and set(used) <= set("·▁▂▃▄▅▆▇█ ")  # full where they run, nothing after
        text = " ".join(screen_text(app).split())
        assert "+N more: cores in use" in text and "batch-00 (2c, planned)" in text
        assert "batch-15" not in text  # the legend names only the tasks drawn


async def test_an_empty_plan_says_so():
    app, client = fake_app()
    client.servers.clear()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.1)
        await wait_until(pilot, lambda: app.screen.query("#username"), what="login")
        app.screen.query_one("#username").value = "alice"
        app.screen.query_one("#password").value = client.password
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="fleet")
        await pilot.press("p")
        await wait_for_text(pilot, "No servers in the plan yet")


async def test_task_detail_explains_the_choice_and_shows_the_figures():
    app, client = with_tasks()
    async with app.run_test(size=(120, 40)) as pilot:
        table = await open_tasks(pilot, client)
        await pilot.press("home", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), what="detail")
        task = app.board.tasks[table.selected_task_id]
        await wait_for_text(pilot, "the grid is cleanest then.")
        text = screen_text(app)
        for label in ("Planned", "Run now", "Measured", "Saved", "Pieces", "Command", "History"):
            assert label in text
        assert f"Task {task.name}" in text


async def test_fleet_shows_tasks_per_server_and_the_top_bar_the_saving_today():
    app, client = with_tasks()
    client.tasks["tsk_0000000001"]["state"] = "running"
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await wait_for_text(pilot, "saved today: 1.2 kg CO2e")
        await wait_until(pilot, lambda: "▶1+1" in row_of(app, "web-dub-1"), what="the tasks column")
