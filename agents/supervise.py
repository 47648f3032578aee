"""The watchdog a task's command runs under (started by the agent, stdlib only, run by path).

    python supervise.py TASK_DIR LEASE_FILE GRACE_S -- ARGV...

It starts ARGV in a process group of its own (the agent pauses, resumes and stops that group),
writes the command's pid to TASK_DIR/pid, and when the command ends writes
TASK_DIR/exit.json = {"exit_code", "ended_at_ms", "why"} (exit_code negative: killed by that
signal). It outlives the agent, so an agent that dies or restarts does not take its tasks with
it; but once the agent's lease may have expired (LEASE_FILE holds the epoch ms until which the
agent surely held it, and the scheduler may queue the task elsewhere after that), it stops the
command: SIGTERM, then SIGKILL after GRACE_S, so a task never runs on two servers at once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _now_ms() -> int:
    return int(time.time() * 1000)


def _lease_until(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return None


def _write(path: str, text: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    task_dir, lease_file, grace_s = argv[0], argv[1], float(argv[2])
    command = argv[argv.index("--") + 1 :]
    # The agent signals the command's group, never this process; a closing terminal neither.
    signal.signal(signal.SIGTERM, lambda *_: None)
    signal.signal(signal.SIGHUP, lambda *_: None)
    signal.signal(signal.SIGINT, lambda *_: None)
    try:
        child = subprocess.Popen(command, process_group=0)
    except OSError as exc:
        print(f"tasker agent: cannot start {command[0]!r}: {exc.strerror or exc}", flush=True)
        _write(
            os.path.join(task_dir, "exit.json"),
            json.dumps({"exit_code": 127, "ended_at_ms": _now_ms(), "why": f"cannot start: {exc.strerror or exc}"}),
        )
        return 0
    _write(os.path.join(task_dir, "pid"), str(child.pid))
    why, termed_at = "", None
    while True:
        try:
            code = child.wait(timeout=0.25)
            break
        except subprocess.TimeoutExpired:
            pass
        until = _lease_until(lease_file)
        if termed_at is None and until is not None and _now_ms() > until:
            why, termed_at = "the agent's lease expired", time.monotonic()
            print(f"tasker agent: {why}; stopping the task", flush=True)
            for sig in (signal.SIGTERM, signal.SIGCONT):
                try:
                    os.killpg(child.pid, sig)
                except ProcessLookupError:
                    pass
        elif termed_at is not None and time.monotonic() - termed_at > grace_s:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    _write(os.path.join(task_dir, "exit.json"), json.dumps({"exit_code": code, "ended_at_ms": _now_ms(), "why": why}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
