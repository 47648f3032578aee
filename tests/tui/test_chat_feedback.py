"""What the chat pane tells a support engineer who sends before any conversation exists: the
reason is on screen at 80x24, not hidden below the input. A fresh backend per module, so no
conversation exists yet."""

from __future__ import annotations

from tasker_tui.app import TaskerApp
from tasker_tui.screens.fleet import FleetScreen
from tests.tui.conftest import ENGINEER, login, type_text, wait_for_text, wait_until


async def test_sending_with_no_conversation_says_why_on_screen(backend):
    app = TaskerApp(backend.url, remember_session=False)
    async with app.run_test(size=(80, 24)) as pilot:
        await login(pilot, *ENGINEER)
        await wait_until(
            pilot, lambda: isinstance(app.screen, FleetScreen) and app.chat.connected, what="the fleet with chat joined"
        )
        await pilot.press("ctrl+t")
        await wait_for_text(pilot, "no conversations yet")
        await type_text(pilot, "hello")
        await pilot.press("enter")
        await wait_for_text(pilot, "choose a conversation first")
        assert app.screen.query_one("#chat-input").value == "hello"  # kept, not lost
