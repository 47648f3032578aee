"""`tasker tui` reaches its first frame without loading what it does not need there.

The first frame must come within a second of the command's start; every driver, the backend,
the command-line framework (typer and the pydantic it brings) and the HTTP client are loaded
later or never. Each check runs in a fresh interpreter, as the command does.
"""

from __future__ import annotations

import json
import subprocess
import sys

# Top-level packages that must not be loaded when the login screen is first drawn.
NOT_BEFORE_FIRST_FRAME = (
    "backend",
    "sensors",
    "cassandra",
    "aio_pika",
    "aiormq",
    "pymongo",
    "bson",
    "typer",
    "pydantic",
    "aiohttp",
    "plotext",
    "textual_plotext",
)


def _run(code: str, tmp_path) -> dict:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": "/usr/bin:/bin", "TERM": "xterm-256color"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_tui_command_draws_its_first_frame_without_drivers_backend_or_typer(tmp_path):
    # The real entry point (`tasker.cli.main` with `tui --url URL`), with only the terminal
    # replaced by a headless one; the modules are listed when the first frame has been drawn.
    code = """
import json, sys
from textual.app import App

import tasker_tui.cli as tui_cli
from tasker_tui.app import TaskerApp

tui_cli._need_terminal = lambda command: 0
seen = {}

def on_ready(self):
    seen["screen"] = type(self.screen).__name__
    seen["modules"] = sorted({name.split(".")[0] for name in sys.modules})
    seen["tasker"] = sorted(name for name in sys.modules if name.startswith(("tasker.", "tasker_tui.")))
    self.exit()

TaskerApp.on_ready = on_ready
TaskerApp.run = lambda self: App.run(self, headless=True, size=(80, 24))
sys.argv = ["tasker", "tui", "--url", "http://127.0.0.1:9"]
from tasker.cli import main
try:
    main()
except SystemExit as exit:
    seen["exit"] = exit.code
print(json.dumps(seen))
"""
    seen = _run(code, tmp_path)
    assert seen["exit"] == 0 and seen["screen"] == "LoginScreen"
    loaded = set(NOT_BEFORE_FIRST_FRAME) & set(seen["modules"])
    assert not loaded, f"loaded before the first frame: {sorted(loaded)}"
    # Only the login screen is needed first: the other screens and the chat come later.
    later = [
        m
        for m in seen["tasker"]
        if m.startswith(
            (
                "tasker_tui.screens.fleet",
                "tasker_tui.screens.detail",
                "tasker_tui.chat",
                "tasker.client",
                "tasker_bench",
            )
        )
    ]
    assert not later, later


def test_other_commands_still_get_every_part(tmp_path):
    # The shortcut is for `tasker tui` only: `tasker --help` still lists every part's commands.
    code = """
import contextlib, io, json, sys
sys.argv = ["tasker", "--help"]
from tasker.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main()
    except SystemExit as exit:
        code = exit.code
print(json.dumps({"exit": code, "help": out.getvalue()}))
"""
    seen = _run(code, tmp_path)
    assert seen["exit"] == 0
    for command in ("backend", "sensors", "tui", "demo", "servers", "bench", "login"):
        assert f" {command} " in seen["help"], command


def test_a_bad_url_is_refused_in_one_line_on_both_paths(tmp_path):
    # `tui --url X` (the shortcut) and `tui --url X --url X` (typer, last value wins) say the same.
    code = """
import contextlib, io, json, sys
from tasker.cli import main
said = []
for argv in (["tui", "--url", "ftp://x"], ["tui", "--url", "ftp://y", "--url", "ftp://x"]):
    sys.argv = ["tasker", *argv]
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as exit:
            said.append([exit.code, err.getvalue()])
print(json.dumps(said))
"""
    (fast_code, fast_text), (typer_code, typer_text) = _run(code, tmp_path)
    assert fast_code == typer_code == 2
    assert fast_text == typer_text
    assert fast_text.startswith("tasker tui: --url 'ftp://x'") and fast_text.count("\n") == 1


def test_the_demo_help_names_the_support_login():
    from typer.testing import CliRunner

    from tasker.cli import app
    from tasker_tui.demo import DEMO_PASSWORD

    shown = " ".join(CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}).stdout.split())
    assert f"demo-support, password {DEMO_PASSWORD}" in shown
