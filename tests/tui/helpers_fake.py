"""Running the TUI over the in-memory fake client with a frozen clock (unit and snapshot tests)."""

from __future__ import annotations

from tasker_tui.app import TaskerApp
from tasker_tui.screens.fleet import FleetScreen
from tests.tui.conftest import wait_until
from tests.tui.fakes import BASE_MS, FakeClient, demo_fleet_client, live_frames


def fake_app(client: FakeClient | None = None, **kwargs) -> tuple[TaskerApp, FakeClient]:
    client = client or demo_fleet_client()
    app = TaskerApp(client.base_url, client=client, remember_session=False, refresh_interval=0.05, **kwargs)
    return app, client


async def fleet_ready(pilot, client: FakeClient) -> None:
    """Log in over the fake, feed it five minutes of live frames, and wait until the table shows them."""
    app = pilot.app
    await wait_until(pilot, lambda: app.screen.query("#username"), what="login form")
    app.screen.query_one("#username").value = "alice"
    app.screen.query_one("#password").value = client.password
    await pilot.press("enter")
    await wait_until(
        pilot, lambda: isinstance(app.screen, FleetScreen) and app.link_status.live and client.lives, what="live fleet"
    )
    for frame in live_frames(client):
        client.push(frame)
    await wait_until(pilot, lambda: all(s.last_ts_ms for sid, s in app.fleet.series.items()), what="live data")
    await pilot.pause(0.2)


__all__ = ["BASE_MS", "fake_app", "fleet_ready"]


def snapshot_of(snap_compare, scenario, size: tuple[int, int]) -> bool:
    """A fake app brought to a screen by `scenario(pilot, app, client)`, compared with its snapshot
    at `size`; input cursors stop blinking first so the picture does not depend on timing."""
    from textual.widgets import Input

    app, client = fake_app()

    async def run_before(pilot):
        await scenario(pilot, app, client)
        for box in app.screen.query(Input):
            box.cursor_blink = False

    return snap_compare(app, terminal_size=size, run_before=run_before)
