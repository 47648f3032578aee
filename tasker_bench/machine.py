"""What the machine is and how busy its processes are: cores, Python, load, CPU per process.

CPU time comes from `/proc/<pid>/stat` (utime + stime of the process and its descendants), so it
covers subprocesses the benchmark started and the services (RabbitMQ, Cassandra, FerretDB) alike.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def machine_info() -> dict[str, object]:
    """Cores, Python version, platform, CPU model, memory and the load average right now."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_mb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_mb = int(line.split()[1]) // 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": model,
        "memory_mb": memory_mb,
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def code_version(repo: Path) -> dict[str, object]:
    """The commit measured, and the files of the product that differ from it (if any)."""
    import subprocess

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    changed = [
        line[3:]
        for line in git("status", "--porcelain", "--", "backend", "tasker", "sensors", "tasker_tui").splitlines()
    ]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or None, "uncommitted": changed}


def _children() -> dict[int, list[int]]:
    """ppid -> pids, for every process visible in /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _own_cpu_s(pid: int) -> float | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _descendants(pid: int, tree: Mapping[int, list[int]]) -> list[int]:
    found, todo = [], list(tree.get(pid, ()))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(tree.get(child, ()))
    return found


def cpu_seconds(pid: int, tree: Mapping[int, list[int]] | None = None) -> float | None:
    """CPU seconds used so far by `pid` and its live descendants; None when `pid` is gone."""
    own = _own_cpu_s(pid)
    if own is None:
        return None
    tree = _children() if tree is None else tree
    return own + sum(_own_cpu_s(child) or 0.0 for child in _descendants(pid, tree))


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory so far (VmHWM), in MB; None when it is gone. For a
    service that is its whole life's peak, not this run's."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        return None
    return None


def machine_busy_s() -> tuple[float, float]:
    """(busy CPU seconds, total CPU seconds) of the whole machine since boot, from /proc/stat."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / _TICKS, sum(values) / _TICKS


@dataclass
class CpuMeter:
    """CPU used by named processes between `start()` and `stop()`, as % of one core.

    Also measures the whole machine (all cores, every process, other users' included), so a
    reader can tell how much of the machine the benchmark had.
    """

    pids: dict[str, int] = field(default_factory=dict)
    _before: dict[str, float] = field(default_factory=dict)
    _machine_before: tuple[float, float] = (0.0, 0.0)
    _started: float = 0.0

    def add(self, name: str, pid: int) -> None:
        self.pids[name] = pid

    def start(self) -> None:
        tree = _children()
        self._before = {name: cpu_seconds(pid, tree) or 0.0 for name, pid in self.pids.items()}
        self._machine_before = machine_busy_s()
        self._started = time.monotonic()

    def stop(self) -> dict[str, Any]:
        """{"wall_s", "processes": {name: {"cpu_s", "percent_of_core", "peak_rss_mb"}},
        "machine_busy_percent",
        "gone": [names of processes that exited (or were restarted) meanwhile]}."""
        wall = max(time.monotonic() - self._started, 1e-9)
        tree = _children()
        processes: dict[str, dict[str, float | None]] = {}
        gone: list[str] = []
        for name, pid in self.pids.items():
            used = cpu_seconds(pid, tree)
            if used is None:
                gone.append(name)
                continue
            spent = max(used - self._before.get(name, 0.0), 0.0)
            peaks = [peak_rss_mb(p) for p in [pid, *_descendants(pid, tree)]]
            processes[name] = {
                "cpu_s": round(spent, 2),
                "percent_of_core": round(100 * spent / wall, 1),
                "peak_rss_mb": round(sum(p for p in peaks if p), 1) or None,
            }
        busy, total = machine_busy_s()
        d_busy, d_total = busy - self._machine_before[0], total - self._machine_before[1]
        return {
            "wall_s": round(wall, 2),
            "processes": processes,
            "machine_busy_percent": round(100 * d_busy / d_total, 1) if d_total > 0 else None,
            "gone": gone,
        }


def restarted_services(before: Mapping[str, int], after: Mapping[str, int]) -> list[str]:
    """Services whose PID changed (someone restarted them, e.g. a fault-injection test on a
    shared machine): the figures of that run are not to be trusted."""
    return sorted(name for name, pid in before.items() if after.get(name) != pid)


def service_pids(repo: Path) -> dict[str, int]:
    """PIDs of the local real services (`compose/local/services`), from their pid files."""
    found: dict[str, int] = {}
    for name, pid_file in (
        ("rabbitmq", "rabbitmq/pid"),
        ("cassandra", "cassandra/pid"),
        ("mongo (FerretDB)", "mongo/pid"),
    ):
        try:
            pid = int((repo / ".services" / pid_file).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            found[name] = pid
    return found


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: Iterable[float]) -> dict[str, float | int | None]:
    """count, p50, p99 and max of durations given in seconds, in milliseconds."""
    values = [s * 1000 for s in seconds]

    def rounded(x: float | None) -> float | None:
        return None if x is None else round(x, 2)

    return {
        "count": len(values),
        "p50_ms": rounded(percentile(values, 50)),
        "p99_ms": rounded(percentile(values, 99)),
        "max_ms": rounded(max(values) if values else None),
    }
