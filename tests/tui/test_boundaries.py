"""The TUI talks to the backend only through `tasker.client`: it never imports backend internals."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tasker_tui

TUI_ROOT = Path(tasker_tui.__file__).parent


def imported_modules(path: Path) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
    return modules


def test_no_tui_module_imports_the_backend_or_the_sensors():
    offenders = {
        f"{path.relative_to(TUI_ROOT.parent)}: {module}"
        for path in TUI_ROOT.rglob("*.py")
        for module in imported_modules(path)
        if module.split(".")[0] in ("backend", "sensors")
    }
    assert not offenders, offenders
    assert len(list(TUI_ROOT.rglob("*.py"))) > 10  # the scan really saw the package


def test_running_the_tui_loads_no_backend_module():
    code = (
        "import sys, tasker_tui.app, tasker_tui.cli, tasker_tui.demo, tasker_tui.bench\n"
        "from tasker_tui.screens import detail, fleet, login, server_form, status, help, confirm\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('backend', 'sensors')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
