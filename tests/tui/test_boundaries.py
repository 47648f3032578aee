"""The TUI talks to the backend only through `tasker.client`: running it loads no backend module.

That no TUI module imports the backend is an import-linter contract (pyproject.toml,
tests/unit/test_layers.py); this checks what a running TUI really loads."""

from __future__ import annotations

import subprocess
import sys


def test_running_the_tui_loads_no_backend_module():
    code = (
        "import sys, tasker_tui.app, tasker_tui.cli, tasker_tui.demo, tasker_tui.bench\n"
        "from tasker_tui.screens import detail, fleet, login, server_form, raw_readings, help, confirm\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('backend', 'sensors')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
