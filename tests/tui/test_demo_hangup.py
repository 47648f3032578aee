"""`tasker demo` draws its TUI before its backend is up, and stops everything it started when
its terminal goes away, as `q` would.

Its backend and sensors run in sessions of their own (a ctrl+c in the TUI is not theirs), so
nothing but the demo itself can stop them when the SSH session or the terminal window closes.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import subprocess
import termios
import time
from pathlib import Path

from tasker_tui.bench import ESCAPES, tasker_command


def _children_of(root: Path) -> list[int]:
    """Processes whose environment points at the demo's data dir (its backend and sensors)."""
    marker = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_the_tui_comes_first_and_closing_the_terminal_stops_everything(tmp_path):
    master, slave = pty.openpty()
    env = {**os.environ, "TMPDIR": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"), "TERM": "xterm-256color"}
    env.pop("TASKER_URL", None)
    demo = subprocess.Popen(
        [*tasker_command(), "demo"], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # its own terminal, as in an SSH session
    )
    os.close(slave)
    shown, root = "", None
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "Fleet" not in shown:
            if select.select([master], [], [], 1)[0]:
                try:
                    shown += ESCAPES.sub("", os.read(master, 65536).decode("utf-8", "replace"))
                except OSError:
                    break
            assert demo.poll() is None, shown[-1000:]
        assert "Fleet" in shown, f"the demo's TUI never showed the fleet: {shown[-1000:]}"
        # The TUI was up before the backend: its login screen said it was starting it.
        assert shown.index("Starting the embedded backend") < shown.index("Fleet")
        root = Path(re.search(r"data in (\S+)", shown).group(1))
        assert root.is_dir() and len(_children_of(root)) >= 2  # the backend and the sensors
        os.close(master)  # the terminal goes away: SIGHUP
        master = -1
        demo.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _children_of(root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children_of(root) == [], "the demo's backend or sensors outlived its terminal"
        assert not root.exists(), "the demo's temporary data was left behind"
    finally:
        if master >= 0:
            os.close(master)
        if demo.poll() is None:
            demo.kill()
            demo.wait()
        for pid in _children_of(root) if root else []:
            os.kill(pid, 9)  # only what this test's demo started (found by its own data dir)
