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

import pytest

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


class DemoInATerminal:
    """`tasker demo` in a pseudo-terminal of its own (its controlling terminal, as over SSH)."""

    def __init__(self, tmp_path: Path) -> None:
        self.master, slave = pty.openpty()
        env = {
            **os.environ,
            "TMPDIR": str(tmp_path),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "TERM": "xterm-256color",
        }
        env.pop("TASKER_URL", None)
        self.process = subprocess.Popen(
            [*tasker_command(), "demo"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),
        )
        os.close(slave)
        self.shown = ""
        self.root: Path | None = None

    def read_until(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and text not in self.shown:
            if select.select([self.master], [], [], 1)[0]:
                try:
                    self.shown += ESCAPES.sub("", os.read(self.master, 65536).decode("utf-8", "replace"))
                except OSError:
                    break
            assert self.process.poll() is None, self.shown[-1000:]
        assert text in self.shown, f"the demo never showed {text!r}: {self.shown[-1000:]}"
        if self.root is None and (found := re.search(r"data in (\S+)", self.shown)):
            self.root = Path(found.group(1))

    def hang_up(self) -> None:
        """The terminal goes away (SIGHUP); the demo must exit and leave nothing behind."""
        os.close(self.master)
        self.master = -1
        assert self.process.wait(timeout=60) == 129
        deadline = time.monotonic() + 15
        while _children_of(self.root) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children_of(self.root) == [], "the demo's backend or sensors outlived its terminal"
        assert not self.root.exists(), "the demo's temporary data was left behind"

    def close(self) -> None:
        if self.master >= 0:
            os.close(self.master)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        for pid in _children_of(self.root) if self.root else []:
            os.kill(pid, 9)  # only what this test's demo started (found by its own data dir)


@pytest.fixture
def demo(tmp_path):
    running = DemoInATerminal(tmp_path)
    yield running
    running.close()


def test_the_tui_comes_first_and_closing_the_terminal_stops_everything(demo):
    demo.read_until("Fleet")
    # The TUI was up before the backend: its login screen said it was starting it.
    assert demo.shown.index("Starting the embedded backend") < demo.shown.index("Fleet")
    assert demo.root.is_dir() and len(_children_of(demo.root)) >= 2  # the backend and the sensors
    demo.hang_up()


def test_closing_the_terminal_while_the_backend_starts_stops_everything(demo):
    demo.read_until("Starting the embedded backend")
    demo.hang_up()


def test_q_stops_everything_and_says_how_to_connect_the_support_engineer(demo):
    demo.read_until("Fleet")
    demo.read_until("demo-admin")  # logged in by itself, the fleet live
    os.write(demo.master, b"q")
    # Read what it writes while it stops: a terminal nobody reads fills up and blocks the writer.
    deadline = time.monotonic() + 60
    try:
        while demo.process.poll() is None or select.select([demo.master], [], [], 1)[0]:
            assert time.monotonic() < deadline, f"the demo did not stop: {demo.shown[-1000:]}"
            if select.select([demo.master], [], [], 0.2)[0]:
                demo.shown += ESCAPES.sub("", os.read(demo.master, 65536).decode("utf-8", "replace"))
    except OSError:
        pass
    assert demo.process.wait(timeout=5) == 0
    after = " ".join(demo.shown.rsplit("tasker demo: stopped", 1)[-1].split())
    assert after.startswith("the backend and the sensors, removed its data.")
    # `tasker` itself, or its full path when no shell would find it on PATH
    assert re.search(
        r"connect a second TUI as the demo support engineer: (/\S+/)?tasker tui"
        r"( --url http://127\.0\.0\.1:\d+)?"
        r" \(username demo-support, password tasker-demo\)$",
        after,
    ), after
    assert _children_of(demo.root) == [] and not demo.root.exists()
