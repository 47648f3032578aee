"""Benchmark of the TUI: headless, against a real backend with N servers updating at 1 Hz.

    python -m tasker_tui.bench [--servers 500] [--seconds 30] [--size 160x48]

The parent starts an embedded backend and the emulated sensors (child processes), registers the
fleet, then runs the TUI in a child process of its own, logged in on the fleet screen, and
prints: the TUI process's average CPU (percent of one core) and peak RSS, frame timings, and the
time to the first frame. That one is measured the way a user meets it: `tasker tui --url URL`
exec'd in a pseudo-terminal of the benchmark's size, from just before the exec until its login
screen's text reaches the terminal (three times before the sensors start; median and worst).
Beside it, the headless child's start (three spawns before the load, median) and once under the
full load, with the time until the fleet frame shows every server.

Headless means nothing reaches a terminal, but each frame is still composed and encoded into
the escape sequences a terminal would get (see `_instrument`), so the cost of drawing is counted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_USER = "bench-admin"
# What the login screen says first (`Backend: URL`): its arrival on the terminal is the first frame.
FIRST_FRAME_MARKER = "Backend:"
# Escape sequences (CSI, OSC, DCS/APC strings, two-byte escapes), removed before looking for text.
ESCAPES = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[P^_X][^\x1b]*\x1b\\|.)", re.S)
BENCH_PASSWORD = "bench-password"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


# --- the child: the TUI under measurement ----------------------------------------------------


def _instrument(app: Any, record: dict[str, Any]) -> None:
    """Time every screen update (compose + render) and encode it as a terminal would receive it."""
    from textual.app import App
    from textual.screen import Screen

    original_update = Screen._on_timer_update
    original_display = App._display

    def timed_update(screen: Screen) -> None:
        started = time.perf_counter()
        original_update(screen)
        record["frames"].append(time.perf_counter() - started)

    def encoding_display(self: App, screen: Screen, renderable: Any) -> None:
        if renderable is not None and hasattr(renderable, "render_segments"):
            started = time.perf_counter()
            output = renderable.render_segments(self.console)
            record["encode"].append(time.perf_counter() - started)
            record["bytes"] += len(output)
            if record["first_frame_wall"] is None:
                record["first_frame_wall"] = time.time()
        original_display(self, screen, renderable)

    Screen._on_timer_update = timed_update  # type: ignore[method-assign,assignment]
    App._display = encoding_display  # type: ignore[method-assign]


async def _measure_child(
    url: str, seconds: float, warmup: float, size: tuple[int, int], servers: int
) -> dict[str, Any]:
    from tasker_tui.app import TaskerApp
    from tasker_tui.screens.fleet import FleetScreen
    from tasker_tui.widgets.fleet_table import FleetTable

    record: dict[str, Any] = {"frames": [], "encode": [], "bytes": 0, "first_frame_wall": None}
    app = TaskerApp(url, username=BENCH_USER, password=BENCH_PASSWORD, remember_session=False)
    _instrument(app, record)
    result: dict[str, Any] = {}

    def fleet_ready() -> bool:
        screen = app.screen
        return (
            isinstance(screen, FleetScreen)
            and screen.ready
            and len(screen.query_one(FleetTable).shown_ids) >= servers
            and app.fleet.readings_version > 1
        )

    async def measure() -> None:
        try:
            await measure_fleet()
        except BaseException as exc:
            result["error"] = f"{type(exc).__name__}: {exc}; screen {app.screen!r}, link {app.link_status}"
            app.exit()

    async def measure_fleet() -> None:
        deadline = time.monotonic() + 60
        while not fleet_ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the fleet screen never showed {servers} servers with live data")
            await asyncio.sleep(0.01)
        result["fleet_frame_wall"] = time.time()
        await asyncio.sleep(warmup)
        frames_before = len(record["frames"])
        encode_before = len(record["encode"])
        ticks_before = len(app.tick_durations)
        bytes_before = record["bytes"]
        readings_before = app.link.frames if app.link else 0
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        await asyncio.sleep(seconds)
        wall = time.perf_counter() - wall_before
        result.update(
            cpu_percent=100 * (time.process_time() - cpu_before) / wall,
            wall_s=wall,
            frames=record["frames"][frames_before:],
            encode=record["encode"][encode_before:],
            ticks=app.tick_durations[ticks_before:],
            bytes_per_s=(record["bytes"] - bytes_before) / wall,
            ws_frames_per_s=((app.link.frames if app.link else 0) - readings_before) / wall,
            shown=len(app.screen.query_one(FleetTable).shown_ids),
        )
        app.exit()

    async def autopilot(pilot: Any) -> None:
        asyncio.get_running_loop().create_task(measure())

    await app.run_async(headless=True, size=size, auto_pilot=autopilot)
    if "error" in result:
        raise RuntimeError(result["error"])
    result["first_frame_wall"] = record["first_frame_wall"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


async def _first_frame_child(url: str, size: tuple[int, int]) -> dict[str, Any]:
    """Start the TUI, wait for its first frame, quit: only the start-up is measured."""
    from tasker_tui.app import TaskerApp

    record: dict[str, Any] = {"frames": [], "encode": [], "bytes": 0, "first_frame_wall": None}
    app = TaskerApp(url, remember_session=False)
    _instrument(app, record)

    async def autopilot(pilot: Any) -> None:
        while record["first_frame_wall"] is None:
            await asyncio.sleep(0.005)
        app.exit()

    await app.run_async(headless=True, size=size, auto_pilot=autopilot)
    return {"first_frame_wall": record["first_frame_wall"]}


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--size", default="160x48")
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--first-frame-only", action="store_true")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    if args.first_frame_only:
        result = asyncio.run(_first_frame_child(args.url, (width, height)))
    else:
        result = asyncio.run(_measure_child(args.url, args.seconds, args.warmup, (width, height), args.servers))
    print("BENCH-RESULT " + json.dumps(result))


# --- the parent: backend, sensors, fleet, and the report -------------------------------------


async def _register(url: str, servers: int) -> None:
    from tasker.client import TaskerClient
    from tasker_tui.demo import sample_servers

    async with TaskerClient(url) as api:
        await api.login(BENCH_USER, BENCH_PASSWORD)
        bodies = sample_servers(servers)
        limit = asyncio.Semaphore(8)

        async def create(body: dict[str, Any]) -> None:
            async with limit:
                await api.create_server(body)

        await asyncio.gather(*(create(body) for body in bodies))


async def _token(url: str) -> str:
    from tasker.client import TaskerClient

    async with TaskerClient(url) as api:
        return (await api.login(BENCH_USER, BENCH_PASSWORD))["token"]


def _spawn_first_frame(url: str, size: str, env: dict[str, str]) -> float:
    """Seconds from spawning a TUI process to its first frame."""
    spawned = time.time()
    child = subprocess.run(
        [sys.executable, "-m", "tasker_tui.bench", "--child", "--first-frame-only", "--url", url, "--size", size],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    lines = [line for line in child.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"the TUI child failed: {(child.stderr or child.stdout)[-2000:]}")
    return json.loads(lines[-1].split(" ", 1)[1])["first_frame_wall"] - spawned


def tasker_command() -> list[str]:
    """The `tasker` command of this Python environment (its console script when installed)."""
    script = Path(sys.executable).with_name("tasker")
    return [str(script)] if script.is_file() else [sys.executable, "-c", "from tasker.cli import main; main()"]


def command_first_frame(
    url: str, size: str, env: dict[str, str], timeout: float = 60.0, command: list[str] | None = None
) -> float:
    """Seconds from exec'ing `tasker tui --url URL` (or `command`) in a pseudo-terminal of `size`
    (COLSxROWS) to its login screen's text arriving on that terminal; the TUI is then quit with
    ctrl+q."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    width, height = (int(v) for v in size.split("x"))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))
    env = {**env, "TERM": env.get("TERM") or "xterm-256color"}
    started = time.monotonic()
    child = subprocess.Popen(
        command or [*tasker_command(), "tui", "--url", url],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        start_new_session=True,
    )
    os.close(slave)
    received = b""

    def read(wait: float) -> bytes:
        if not select.select([master], [], [], wait)[0]:
            return b""
        try:
            return os.read(master, 65536) or b"\0"
        except OSError:  # EIO: the child closed the terminal
            return b"\0"

    try:
        deadline = started + timeout
        while time.monotonic() < deadline:
            chunk = read(deadline - time.monotonic())
            received += chunk
            if FIRST_FRAME_MARKER in ESCAPES.sub("", received.decode("utf-8", "replace")):
                return time.monotonic() - started
            if chunk == b"\0" or child.poll() is not None:
                break
        text = ESCAPES.sub("", received.decode("utf-8", "replace")).strip()
        raise RuntimeError(f"`tasker tui` drew no login screen within {timeout:.0f} s: {text[-300:] or '(no output)'}")
    finally:
        try:
            os.write(master, b"\x11")  # ctrl+q quits the TUI
        except OSError:
            pass
        quit_by = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < quit_by:
            read(0.05)  # keep draining: a full terminal buffer would block the TUI's last writes
        if child.poll() is None:
            child.kill()
        child.wait()
        os.close(master)


def run_tui_bench(servers: int = 500, seconds: float = 30, size: str = "160x48", warmup: float = 5) -> dict[str, Any]:
    """Measure the TUI against `servers` servers updating at 1 Hz; prints and returns the figures."""
    from tasker_tui.local_stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="tasker-tui-bench-") as root, LocalStack(Path(root)) as stack:
        key = stack.provision([(BENCH_USER, "sysadmin", BENCH_PASSWORD)], "tui bench")
        url = stack.start_backend()
        print(f"backend at {url}; registering {servers} servers…", flush=True)
        asyncio.run(_register(url, servers))
        # Before the load starts: the real command in a terminal, and the headless child.
        commands = [command_first_frame(url, size, stack.env) for _ in range(3)]
        startups = [_spawn_first_frame(url, size, stack.env) for _ in range(3)]
        stack.start_sensors(key or "", asyncio.run(_token(url)), interval=1.0)
        time.sleep(3)  # let the sensors find the fleet and the first readings flow
        print(f"measuring the TUI for {warmup:.0f} s warm-up + {seconds:.0f} s at {size}…", flush=True)
        spawned = time.time()
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "tasker_tui.bench",
                "--child",
                "--url",
                url,
                "--seconds",
                str(seconds),
                "--warmup",
                str(warmup),
                "--size",
                size,
                "--servers",
                str(servers),
            ],
            capture_output=True,
            text=True,
            env=stack.env,
            timeout=seconds + warmup + 120,
        )
        lines = [line for line in child.stdout.splitlines() if line.startswith("BENCH-RESULT ")]
        if child.returncode != 0 or not lines:
            raise RuntimeError(f"the TUI child failed: {(child.stderr or child.stdout)[-2000:]}")
        result = json.loads(lines[-1].split(" ", 1)[1])
    frames = [t * 1000 for t in result["frames"]]
    encode = [t * 1000 for t in result["encode"]]
    ticks = [t * 1000 for t in result["ticks"]]
    figures = {
        "servers": servers,
        "size": size,
        "seconds": round(result["wall_s"], 1),
        "cpu_percent_of_one_core": round(result["cpu_percent"], 1),
        "peak_rss_mb": round(result["peak_rss_mb"], 1),
        "first_frame_s_idle_median": round(statistics.median(commands), 3),
        "first_frame_s_idle_max": round(max(commands), 3),
        "first_frame_s_headless_idle_median": round(statistics.median(startups), 3),
        "first_frame_s_under_load": round(result["first_frame_wall"] - spawned, 3),
        "first_full_fleet_frame_s": round(result["fleet_frame_wall"] - spawned, 3),
        "frames_per_s": round(len(frames) / result["wall_s"], 2),
        "frame_ms_p50": round(percentile(frames, 50), 2),
        "frame_ms_p99": round(percentile(frames, 99), 2),
        "encode_ms_p99": round(percentile(encode, 99), 2),
        "tick_ms_p50": round(percentile(ticks, 50), 2),
        "tick_ms_p99": round(percentile(ticks, 99), 2),
        "tick_ms_mean": round(statistics.fmean(ticks), 2) if ticks else None,
        "websocket_frames_per_s": round(result["ws_frames_per_s"], 1),
        "terminal_bytes_per_s": round(result["bytes_per_s"]),
        "rows_shown": result["shown"],
    }
    width = max(len(k) for k in figures)
    print("TUI benchmark (headless; frames composed and encoded as for a terminal)")
    for name, value in figures.items():
        print(f"  {name:<{width}}  {value}")
    return figures


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child_main(argv[1:])
        return
    parser = argparse.ArgumentParser(description="Benchmark the Tasker TUI against a live fleet.")
    parser.add_argument("--servers", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--size", default="160x48")
    parser.add_argument("--json", action="store_true", help="Print the figures as one JSON object too.")
    args = parser.parse_args(argv)
    figures = run_tui_bench(args.servers, args.seconds, args.size, args.warmup)
    if args.json:
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
