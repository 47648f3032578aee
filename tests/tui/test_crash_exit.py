"""A TUI that meets an error it cannot handle says so in one line and exits non-zero.

The attack it stops: a NaN reading killed `tasker tui` and the shell saw exit code 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CRASHING_TUI = """
import sys
from textual.app import App

import tasker_tui.cli as tui_cli
from tasker_tui.app import TaskerApp

tui_cli._need_terminal = lambda command: 0

def on_ready(self):
    raise ValueError("cannot convert float NaN to integer [/]")

TaskerApp.on_ready = on_ready
TaskerApp.run = lambda self: App.run(self, headless=True, size=(80, 24))
from tasker.cli import main
sys.argv = ["tasker", "tui", "--url", "http://127.0.0.1:9"]
main()
"""


def test_an_unhandled_error_exits_1_with_one_line_naming_the_traceback_file(tmp_path):
    env = {
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PATH": "/usr/bin:/bin",
        "TERM": "xterm-256color",
    }
    done = subprocess.run([sys.executable, "-c", CRASHING_TUI], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "ValueError: cannot convert float NaN to integer [/]" in lines[0]
    report = Path(lines[0].rsplit("full traceback in ", 1)[1])
    assert report.parent == tmp_path / "state" / "tasker"
    assert "Traceback" in report.read_text() and "on_ready" in report.read_text()
    assert report.stat().st_mode & 0o077 == 0  # the owner's alone
