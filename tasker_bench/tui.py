"""`tasker bench tui`: the TUI engineer's headless TUI measurement, with the issue's targets.

The measurement itself (backend, emulated fleet at 1 Hz, the TUI in a child process, CPU,
memory, first frame, frame times) lives in `tasker_tui.bench.run_tui_bench`, next to the code it
measures; this wraps it in the benchmark's parameters/machine/figures JSON.
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass
from typing import Any

from tasker_bench.machine import code_version, machine_info
from tasker_bench.report import table, verdict
from tasker_bench.stack import REPO, BenchError

TARGET_CPU_PERCENT = 10.0
TARGET_FIRST_FRAME_S = 1.0


@dataclass
class TuiParams:
    servers: int = 500
    seconds: float = 30.0
    warmup: float = 5.0
    size: str = "160x48"

    def check(self) -> None:
        if self.servers < 1 or self.seconds <= 0 or self.warmup < 0:
            raise BenchError("--servers must be at least 1, --seconds more than 0, --warmup 0 or more")
        width, _, height = self.size.partition("x")
        if not (width.isdigit() and height.isdigit()):
            raise BenchError(f"--size {self.size!r}: expected COLUMNSxROWS, e.g. 160x48")


def run_tui(params: TuiParams) -> dict[str, Any]:
    """Run the TUI measurement; its progress lines go to stderr."""
    params.check()
    try:
        from tasker_tui.bench import run_tui_bench
    except ImportError as exc:
        raise BenchError(f"the TUI measurement (tasker_tui/bench.py, run_tui_bench) is not available: {exc}") from None
    load_before = machine_info()["load_average"]
    with contextlib.redirect_stdout(sys.stderr):
        try:
            figures = run_tui_bench(params.servers, params.seconds, params.size, params.warmup)
        except Exception as exc:  # noqa: BLE001 - any failure of the measurement is reported in one piece
            detail = str(exc).strip().splitlines()
            reason = detail[-1] if detail else type(exc).__name__
            raise BenchError(f"the TUI measurement failed: {reason}") from None
    # The measurement names its start-up figure itself; the idle median is what the target means
    # (a TUI started on a machine that is not also running the load), under load is shown too.
    first_frame = figures.get("first_frame_s_idle_median", figures.get("first_frame_s"))
    return {
        "benchmark": "tui",
        "parameters": asdict(params),
        "machine": {**machine_info(), "load_average_before": load_before},
        "code": code_version(REPO),
        "targets": {"cpu_percent_of_one_core": TARGET_CPU_PERCENT, "first_frame_s": TARGET_FIRST_FRAME_S},
        "figures": figures,
        "checked": {"cpu_percent_of_one_core": figures.get("cpu_percent_of_one_core"), "first_frame_s": first_frame},
    }


def render(result: dict[str, Any]) -> str:
    f, p = result["figures"], result["parameters"]
    head = (
        f"tasker bench tui: {p['servers']} servers at 1 Hz, {p['size']}, {p['seconds']:g} s after "
        f"{p['warmup']:g} s warm-up; machine: {result['machine']['cores']} cores, load average "
        f"{result['machine']['load_average_before']}"
    )
    rows = [[name, value] for name, value in f.items()]
    cpu, first = result["checked"]["cpu_percent_of_one_core"], result["checked"]["first_frame_s"]
    checks = [
        f"CPU {cpu}% of one core (target <= {TARGET_CPU_PERCENT:g}%: {verdict(cpu, TARGET_CPU_PERCENT, False)})",
        f"first frame {first} s (target <= {TARGET_FIRST_FRAME_S:g} s: {verdict(first, TARGET_FIRST_FRAME_S, False)})",
    ]
    return "\n".join([head, "", table(["figure", "value"], rows), "", *checks])
