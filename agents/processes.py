"""A task's process on this host, and what the agent keeps of it on disk.

Each task gets a directory `<state dir>/<task id>/`: `meta.json` (what was started, whether it
is paused, whether its end was reported), `out.log` (stdout and stderr together), `pid` (the
command's pid, which is also its process group) and `exit.json` (written by the supervisor when
the command ends). A restarted agent rebuilds its `TaskProcess`es from these directories.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

SUPERVISOR = Path(__file__).with_name("supervise.py")
TAIL_BYTES = 4096
"""How much of a task's output is reported (its end)."""


@dataclass(slots=True)
class TaskMeta:
    """What the agent remembers of a task it started."""

    task_id: str
    started_at_ms: int
    interruptible: bool
    paused: bool = False
    reported_end: bool = False
    cancelled: bool = False
    supervisor_pid: int = 0


@dataclass(frozen=True, slots=True)
class Ended:
    exit_code: int | None
    ended_at_ms: int
    why: str


class TaskProcess:
    """Start, pause, resume, stop and watch one task's command (a process group)."""

    def __init__(self, directory: Path, meta: TaskMeta, supervisor: subprocess.Popen | None = None) -> None:
        self.directory = directory
        self.meta = meta
        self._supervisor = supervisor

    # --- starting and adopting ----------------------------------------------------------------

    @classmethod
    def start(
        cls,
        state_dir: Path,
        task_id: str,
        argv: Sequence[str],
        *,
        cwd: str | None,
        env: Mapping[str, str],
        interruptible: bool,
        lease_file: Path,
        kill_grace_s: float,
        now_ms: int,
    ) -> TaskProcess:
        """Start `argv` (no shell) under the supervisor, in `cwd`, with `env` added to ours."""
        directory = state_dir / task_id
        if directory.exists():
            shutil.rmtree(directory)  # a task started again (queued again, back here)
        directory.mkdir(mode=0o700, parents=True)
        meta = TaskMeta(task_id, now_ms, interruptible)
        process = cls(directory, meta)
        process.save()
        with open(directory / "out.log", "ab") as out:
            supervisor = subprocess.Popen(
                [sys.executable, str(SUPERVISOR), str(directory), str(lease_file), str(kill_grace_s), "--", *argv],
                cwd=cwd,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process._supervisor = supervisor
        meta.supervisor_pid = supervisor.pid
        process.save()
        return process

    @classmethod
    def adopt_all(cls, state_dir: Path) -> dict[str, TaskProcess]:
        """Every task a previous agent left in `state_dir` (running or not yet reported)."""
        out: dict[str, TaskProcess] = {}
        if not state_dir.is_dir():
            return out
        for meta_file in sorted(state_dir.glob("*/meta.json")):
            try:
                meta = TaskMeta(**json.loads(meta_file.read_text()))
            except (OSError, ValueError, TypeError):
                continue  # half written when the agent died: nothing was started from it
            out[meta.task_id] = cls(meta_file.parent, meta)
        return out

    def save(self) -> None:
        tmp = self.directory / "meta.json.tmp"
        tmp.write_text(json.dumps(asdict(self.meta)))
        os.replace(tmp, self.directory / "meta.json")

    def forget(self) -> None:
        """Remove the task's directory (its end was reported)."""
        shutil.rmtree(self.directory, ignore_errors=True)

    # --- watching -----------------------------------------------------------------------------

    def pid(self, wait_s: float = 2.0) -> int | None:
        """The command's pid (its process group), once the supervisor has started it."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return int((self.directory / "pid").read_text())
            except (OSError, ValueError):
                if self.ended() is not None or time.monotonic() > deadline:
                    return None
                time.sleep(0.01)

    def ended(self) -> Ended | None:
        """How the command ended, None while it runs. A supervisor that vanished without a
        word (SIGKILLed with the agent's session) counts as killed."""
        if self._supervisor is not None:
            self._supervisor.poll()  # reap it
        found = self._read_exit()
        if found is not None or self._alive():
            return found
        # Written between the first look and its supervisor's end, or never.
        return self._read_exit() or Ended(None, int(time.time() * 1000), "its supervisor died")

    def _read_exit(self) -> Ended | None:
        try:
            data = json.loads((self.directory / "exit.json").read_text())
            return Ended(data.get("exit_code"), int(data["ended_at_ms"]), str(data.get("why", "")))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _alive(self) -> bool:
        """Whether the supervisor (which outlives the command by a moment) still runs."""
        if self._supervisor is not None:
            return self._supervisor.poll() is None
        try:
            os.kill(self.meta.supervisor_pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return self.meta.supervisor_pid > 0

    def tail(self, limit: int = TAIL_BYTES) -> str:
        """The last `limit` bytes of the task's output, as text."""
        try:
            with open(self.directory / "out.log", "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - limit))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    # --- acting -------------------------------------------------------------------------------

    def signal(self, sig: int) -> bool:
        """Send `sig` to the command's process group; False when it is gone."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return False
        return True

    def pause(self) -> None:
        """SIGSTOP the task's processes (they keep their memory, stop using the CPU)."""
        self.signal(signal.SIGSTOP)
        self.meta.paused = True
        self.save()

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.meta.paused = False
        self.save()

    def terminate(self) -> None:
        """SIGTERM (and SIGCONT, so a paused task can act on it)."""
        self.signal(signal.SIGTERM)
        self.signal(signal.SIGCONT)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
