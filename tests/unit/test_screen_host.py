"""Screens reach the app only as a `ScreenHost`: the app still is one, and no screen imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import tasker_tui.screens
from tasker_tui.app import TaskerApp
from tasker_tui.screens.host import ScreenHost

SCREENS = Path(tasker_tui.screens.__file__).parent


def test_the_app_has_everything_a_screen_may_ask_of_it():
    # A member renamed in the app and not here (or the other way round) breaks the screens using it.
    app = TaskerApp("http://127.0.0.1:9")
    members = {name for name in vars(ScreenHost) if not name.startswith("_")} | set(ScreenHost.__annotations__)
    assert "open_server" in members and "fleet" in members
    assert sorted(name for name in members if not hasattr(app, name)) == []
    assert isinstance(app, ScreenHost)


def test_no_screen_imports_the_app_not_even_for_type_checking():
    # import-linter leaves out imports under TYPE_CHECKING; a cycle through them is still a cycle.
    offenders = []
    for path in sorted(SCREENS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(name == "tasker_tui.app" or name.startswith("tasker_tui.app.") for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []
