"""The attacks of issue 14 item 1, played through every screen over the fake backend.

Server names, sites and tags that are markup (`[/]` crashed the detail view, `[link=...]` the
palette, `[@click=app.quit]` quit on a click), terminal escapes, a 500-character name, RTL and
wide characters; readings of NaN, inf, 1e308 and 1e-300 (a NaN killed the sparklines). After
each step the app is still running and shows the text as it was typed.
"""

from __future__ import annotations

import math

import pytest

from tasker_tui import format as fmt
from tasker_tui.literal import printable
from tasker_tui.screens.confirm import ConfirmScreen
from tasker_tui.screens.detail import DetailScreen
from tasker_tui.screens.fleet import FleetScreen
from tasker_tui.screens.help import HelpScreen
from tasker_tui.screens.raw_readings import RawReadingsScreen
from tasker_tui.screens.server_form import ServerFormScreen
from tests.tui.conftest import type_text, wait_for_text, wait_until
from tests.tui.fakes import BASE_MS, FakeClient, server_json
from tests.tui.helpers_fake import fake_app, fleet_ready
from tests.tui.screen_text import screen_text, screen_words, widget_text

HOSTILE = [
    "[/]",
    "[link=file:///etc/passwd]x[/]",
    "[@click=app.quit]x[/]",
    "[bold red]x",
    "\x1b[31mx",
    "[$x]y [B]z[/B]",
    "L" * 500,
    "שרת\u202eabc",  # Hebrew, then a right-to-left override
    "サーバー東京",  # wide characters
]
VALUES = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.0, 1e-300, None]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(fmt, "now_ms", lambda: BASE_MS)


def hostile_client() -> FakeClient:
    """One server per hostile string (as its name, site and tag), each with absurd readings."""
    servers = [server_json(i + 1, text, "eu-west", "wind", site=text, tags=[text]) for i, text in enumerate(HOSTILE)]
    client = FakeClient(servers)
    for server in servers:
        for metric in ("power", "co2"):
            # Five minutes of every absurd value in turn, a reading every 5 s up to now.
            client.raw[(server["id"], metric)] = [
                (BASE_MS - (60 - i) * 5000, VALUES[i % len(VALUES)]) for i in range(60)
            ]
    return client


def server_id(client: FakeClient, name: str) -> str:
    return next(sid for sid, s in client.servers.items() if s["name"] == name)


def foreign_links(app) -> list[str]:
    """Hyperlinks and click actions on screen that Tasker did not put there itself."""
    found = []
    for strip in app.screen._compositor.render_strips():
        for segment in strip:
            style = segment.style
            if style is None:
                continue
            if style.link:
                found.append(f"link {style.link} on {segment.text!r}")
            click = (style.meta or {}).get("@click")
            if click and not str(click).startswith("app.open_server("):
                found.append(f"click {click} on {segment.text!r}")
    return found


def still_running(app) -> None:
    assert app.is_running and app.return_code is None, screen_text(app)
    assert not foreign_links(app), foreign_links(app)


async def click_across(pilot, selector: str, width: int = 24) -> None:
    """Click along a widget's first line, where markup would have put its actions (every
    hostile action text is wider than two cells)."""
    for x in range(0, width, 2):
        await pilot.click(selector, offset=(x, 0))
    await pilot.pause()


async def test_the_fleet_draws_hostile_names_and_absurd_values():
    app, client = fake_app(hostile_client())
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        text = screen_text(app)
        for name in HOSTILE:
            assert printable(name)[:12] in text, (name, text)
        assert "\x1b" not in text and "\u202e" not in text
        for key in "NLSWCTPO":  # sort by every column both ways, the live ones over NaN too
            await pilot.press(key, key)
        await click_across(pilot, "#fleet", 100)
        still_running(app)


async def test_every_screen_of_a_hostile_server_shows_its_text_literally():
    app, client = fake_app(hostile_client())
    async with app.run_test(size=(120, 40)) as pilot:
        await fleet_ready(pilot, client)
        for name in HOSTILE:
            shown = printable(name)
            app.open_server(server_id(client, name))
            await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.ready, what="detail")
            await pilot.pause(0.1)
            assert shown[:60] in widget_text(app, "#detail-head")
            assert f"Site {shown[:15]}" in screen_words(app)  # the spec beside the charts
            await click_across(pilot, "#detail-head")
            await click_across(pilot, "#spec")
            still_running(app)

            await pilot.press("question_mark")
            await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
            assert shown[:40] in widget_text(app, "#help-title")
            await click_across(pilot, "#help-title")
            still_running(app)
            await pilot.press("escape")

            await pilot.press("d")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmScreen), what="confirm")
            assert f"Delete server {shown}"[:60] in widget_text(app, "#confirm-question")
            await pilot.press("n")

            await pilot.press("e")
            await wait_until(pilot, lambda: isinstance(app.screen, ServerFormScreen), what="form")
            await pilot.pause(0.1)
            assert f"Edit {shown}"[:60] in widget_text(app, "#form-title")
            assert app.screen.query_one("#field-site").value == name
            await pilot.press("escape")

            await pilot.press("r")
            await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen), what="raw readings")
            await pilot.press("escape")
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen), what="back to the fleet")
            still_running(app)


async def test_absurd_values_in_charts_figures_and_raw_readings():
    app, client = fake_app(hostile_client())
    async with app.run_test(size=(120, 40)) as pilot:
        await fleet_ready(pilot, client)
        app.open_server(server_id(client, "[/]"))
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen) and app.screen.series, what="charts")
        for key in "12345":  # every range: history points of NaN, inf, null and 1e308
            await pilot.press(key)
            await wait_until(pilot, lambda: app.screen.series, what=f"range {key}")
            await pilot.pause(0.1)
            figures = widget_text(app, "#power-figures")
            assert "min -1e308 W" in figures and "max 1e308 W" in figures, figures
            assert "×1e308 W" in screen_text(app)  # the chart's axis says its scale
            still_running(app)
        await pilot.press("r")
        await wait_until(pilot, lambda: isinstance(app.screen, RawReadingsScreen) and app.screen.page_rows, what="rows")
        await pilot.pause(0.1)
        text = screen_text(app)
        for shown in ("n/a", "1e308", "-1e308", "1e-300", "0.00"):
            assert shown in text, (shown, text)
        still_running(app)


async def test_palette_lists_hostile_names_literally_and_a_click_does_not_quit():
    app, client = fake_app(hostile_client())
    async with app.run_test(size=(120, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("ctrl+p")
        await type_text(pilot, "go to x")
        await wait_for_text(pilot, "Go to server [link=file:///etc/passwd]x[/]")
        await wait_for_text(pilot, "Go to server [@click=app.quit]x[/]")
        await wait_for_text(pilot, "eu-west/[bold red]x")  # the help line: location, literally
        still_running(app)
        await pilot.press("escape")
        await pilot.press("ctrl+g")  # the go-to-server palette
        await type_text(pilot, "click")
        await wait_for_text(pilot, "Go to server [@click=app.quit]x[/]")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, DetailScreen), what="the chosen server")
        assert app.screen.server_id == server_id(client, "[@click=app.quit]x[/]")
        still_running(app)


def toasts(app) -> list[str]:
    """The toasts raised, as drawn: title and message, when the message is plain text."""
    return [f"{n.title}: {n.message}" for n in app._notifications if not n.markup]


async def test_chat_and_toasts_show_hostile_senders_and_text_literally():
    app, client = fake_app(hostile_client())
    sender, text = "[@click=app.quit]eve[/]", "[link=file:///etc/passwd]read me[/] [/] \x1b[31mred"
    async with app.run_test(size=(120, 40)) as pilot:
        await fleet_ready(pilot, client)
        client.push(
            {
                "type": "chat.joined",
                "username": "alice",
                "role": "sysadmin",
                "conversations": [],
                "online": [{"username": "[bold]bob", "role": "engineer"}],
            }
        )
        client.push(
            {
                "type": "chat.messages",
                "conversation": "alice",
                "messages": [{"id": 1, "sender": sender, "sender_role": "engineer", "text": text, "ts": BASE_MS}],
            }
        )
        await wait_until(pilot, lambda: any(printable(text) in t and sender in t for t in toasts(app)), what="toast")
        client.push({"type": "chat.typing", "conversation": "alice", "username": "[/]"})
        await pilot.press("ctrl+t")
        await wait_for_text(pilot, "[link=file:///etc/passwd]read me[/] [/]")
        await wait_for_text(pilot, "\ufffd[31mred")  # the escape character is not sent to the terminal
        await wait_for_text(pilot, "support online: [bold]bob")
        await wait_for_text(pilot, "[/] is typing")
        await click_across(pilot, "#chat-messages")
        still_running(app)
        await pilot.press("escape")
        app.notify("[@click=app.quit]x[/] [/]", title="[/]")  # anything toasted is plain text
        await wait_until(pilot, lambda: any("[@click=app.quit]x[/] [/]" in t for t in toasts(app)), what="toast")
        still_running(app)


def hostile_tasks_client() -> FakeClient:
    """The demo fleet with one task per hostile string (name, tags, reason, explanation, output)
    and absurd CO2 figures: NaN arrives as null, huge integers beyond any float."""
    from tests.tui.fakes import demo_fleet_client

    client = demo_fleet_client()
    for index, text in enumerate(HOSTILE):
        client.add_task(text, cores=2, tags=[text], reason=text)
    client.schedule()
    figures = [None, 10**400, -(10**400), 1e308, 1e-300]
    for index, task in enumerate(client.tasks.values()):
        if task["plan"]:
            task["plan"].update(
                co2_g=figures[index % 5],
                run_now_co2_g=figures[(index + 1) % 5],
                saving_g=figures[(index + 2) % 5],
                measured_co2_g=figures[(index + 3) % 5],
                explanation=task["name"],
            )
            task["run"]["output_tail"] = task["name"]
    return client


async def test_hostile_task_names_and_figures_are_drawn_literally_everywhere():
    from tasker_tui.screens.plan import PlanScreen
    from tasker_tui.screens.task_detail import TaskDetailScreen
    from tasker_tui.screens.tasks import TasksScreen

    client = hostile_tasks_client()
    app, _ = fake_app(client)
    async with app.run_test(size=(160, 60)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen) and app.board.loaded, what="tasks")
        await wait_for_text(pilot, "[link=file:///etc/passw")
        words = screen_words(app)
        assert "[@click=app.quit]x[/]" in words and "[$x]y [B]z[/B]" in words and "n/a" in words
        for _ in HOSTILE:  # open every task's detail and come back
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, TaskDetailScreen), what="detail")
            await pilot.pause(0.1)
            await pilot.press("escape", "down")
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen) and app.board.plan, what="plan")
        await wait_for_text(pilot, "[/] (2c, planned)")
        assert app.is_running


async def test_a_garbled_plan_is_a_notice_not_a_crash():
    from tasker_tui.screens.plan import PlanScreen

    client = hostile_tasks_client()
    client.plan_override = {"start": "soon", "end": None, "slot_s": "NaN", "servers": "[/]"}
    app, _ = fake_app(client)
    async with app.run_test(size=(100, 30)) as pilot:
        await fleet_ready(pilot, client)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PlanScreen), what="plan")
        notices = lambda: [n.message for n in app._notifications]  # noqa: E731
        await wait_until(pilot, lambda: "plan.servers: expected a list, got '[/]'" in notices(), what="the notice")
        assert app.is_running and "Loading the plan" in screen_text(app)
