"""A task's process under the agent's supervisor, with real subprocesses: paused, it really
stops progressing; resumed, it goes on; its output tail is bounded; the lease watchdog stops a
task whose agent's lease expired."""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

from agents.processes import TAIL_BYTES, TaskProcess

COUNTER = (
    "import sys, time\nn = 0\nwhile True:\n    n += 1\n    open(sys.argv[1], 'w').write(str(n))\n    time.sleep(0.02)\n"
)


def start(tmp_path: Path, argv: list[str], lease_ms: int | None = None) -> TaskProcess:
    lease = tmp_path / "lease"
    lease.write_text(str(lease_ms if lease_ms is not None else int(time.time() * 1000) + 600_000))
    return TaskProcess.start(
        tmp_path / "state",
        "tsk_1",
        argv,
        cwd=str(tmp_path),
        env={},
        interruptible=True,
        lease_file=lease,
        kill_grace_s=0.5,
        now_ms=int(time.time() * 1000),
    )


def count(path: Path) -> int:
    try:
        return int(path.read_text() or 0)
    except (OSError, ValueError):
        return 0


def wait_for(check, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_paused_task_stops_progressing_and_resumes(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    proc = start(tmp_path, [sys.executable, "-c", COUNTER, str(counter)])
    try:
        wait_for(lambda: count(counter) > 5)
        proc.pause()
        time.sleep(0.1)  # a write in flight lands
        held = count(counter)
        time.sleep(0.5)
        assert count(counter) == held, "a SIGSTOPped task kept running"
        proc.resume()
        wait_for(lambda: count(counter) > held + 5)
        assert proc.ended() is None
    finally:
        proc.kill()
    wait_for(lambda: proc.ended() is not None)
    assert proc.ended().exit_code == -signal.SIGKILL


def test_exit_code_and_a_bounded_tail(tmp_path: Path) -> None:
    proc = start(tmp_path, [sys.executable, "-c", "import sys; print('x' * 10000); print('end'); sys.exit(4)"])
    wait_for(lambda: proc.ended() is not None)
    assert proc.ended().exit_code == 4
    tail = proc.tail()
    assert tail.endswith("end\n") and len(tail.encode()) <= TAIL_BYTES


def test_a_task_whose_agent_lease_expired_is_stopped(tmp_path: Path) -> None:
    stubborn = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)\n"
    proc = start(tmp_path, [sys.executable, "-c", stubborn], lease_ms=int(time.time() * 1000) + 300)
    wait_for(lambda: proc.ended() is not None, timeout_s=5)
    ended = proc.ended()
    assert ended.exit_code == -signal.SIGKILL and "lease" in ended.why


def test_a_restarted_agent_adopts_the_running_task(tmp_path: Path) -> None:
    proc = start(tmp_path, [sys.executable, "-c", "import time; time.sleep(0.6)"])
    proc.pid()
    adopted = TaskProcess.adopt_all(tmp_path / "state")["tsk_1"]
    assert adopted.ended() is None
    wait_for(lambda: adopted.ended() is not None)
    assert adopted.ended().exit_code == 0
