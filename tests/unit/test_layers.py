"""The layers of the house hold: the import-linter contracts in pyproject.toml are kept.

They say that the backend's core imports no driver, adapter or HTTP; that no driver adapter
imports another; that `tasker/` outside its command-line root imports none of the other
packages; that the TUI, sensors and agents reach the backend only over the API; and that the
TUI's screens, widgets and chat do not import its app.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(*args: str) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(tool), "--no-cache", *args], cwd=ROOT, capture_output=True, text=True)


def test_every_layer_contract_is_kept():
    done = lint_imports()
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "6 kept, 0 broken" in done.stdout


def test_a_tui_module_importing_the_backend_breaks_a_contract(tmp_path):
    probe = ROOT / "tasker_tui" / "_layer_probe.py"
    probe.write_text("import backend.ports\n")
    try:
        done = lint_imports()
    finally:
        probe.unlink()
    assert done.returncode != 0
    assert "The TUI talks to the backend only over HTTP and the websocket BROKEN" in done.stdout
