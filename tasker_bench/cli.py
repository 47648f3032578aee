"""`tasker bench ingest|latency|history|tui|allocate|registry`: the benchmarks, as shell commands.

Each prints a table, or with `--json` one JSON object (parameters, machine, every figure).
Progress goes to stderr. Exit status 1 when a run found readings lost, duplicated or altered;
speed targets are reported, not enforced (benchmarks print figures; they are not timed tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import typer

bench_app = typer.Typer(
    help="Benchmarks: ingest throughput, websocket latency, history queries, TUI cost, task allocation, "
    "task storage. Each starts "
    "its own backend (embedded, or over the real services with --mode distributed) and cleans up.",
    no_args_is_help=True,
)

MODE_HELP = "embedded (one process, SQLite) or distributed (RabbitMQ + Cassandra + MongoDB-compatible)."
JSON_HELP = "Print one JSON object with the parameters, the machine and every figure."


def _run(work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a benchmark coroutine (see `_guarded`)."""
    return _guarded(lambda: asyncio.run(work()))  # type: ignore[arg-type]


def _guarded(work: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a benchmark; a BenchError or a bad setting becomes one line and exit 2."""
    from tasker.config import ConfigError
    from tasker_bench.stack import BenchError

    try:
        return work()
    except (BenchError, ConfigError) as exc:
        typer.echo(f"tasker bench: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("tasker bench: interrupted; what it started was stopped and deleted", err=True)
        raise typer.Exit(130) from None


@bench_app.command("ingest")
def ingest_command(
    mode: str = typer.Option("embedded", "--mode", help=MODE_HELP),
    duration: float = typer.Option(60.0, "--duration", help="Seconds of load."),
    batch: int = typer.Option(500, "--batch", help="Readings per POST."),
    concurrency: int = typer.Option(16, "--concurrency", help="Concurrent POSTs per load generator process."),
    generators: int = typer.Option(1, "--generators", help="Load generator processes."),
    servers: int = typer.Option(500, "--servers", help="Registered servers the readings are spread over."),
    consecutive: int = typer.Option(
        1,
        "--consecutive",
        help="Readings of one server's metric in a row, "
        "1 s apart: 1 = the whole fleet per instant (as the emulator sends), "
        "60 = a minute per server (a sensor uploading a buffered minute).",
    ),
    ingesters: int = typer.Option(
        0, "--ingesters", help="Processes of their own for the ingest role (distributed; 0 = in the main process)."
    ),
    packagers: int = typer.Option(
        0, "--packagers", help="Processes of their own for the packager role (distributed; 0 = in the main process)."
    ),
    naive: bool = typer.Option(
        False,
        "--naive",
        help="Run the load through the naive design instead (one reading per request, per message and per INSERT).",
    ),
    compare: bool = typer.Option(
        False, "--compare", help="Run Tasker and the naive design, side by side, with their ratio."
    ),
    drain_timeout: float = typer.Option(
        600.0, "--drain-timeout", help="Longest wait for the pipeline to store what was accepted."
    ),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Keep the backend logs (their folder is printed)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Sustained readings/s accepted and stored, lost and duplicated (must be 0), CPU per process."""
    from tasker_bench.ingest import IngestParams, correct, render, run_ingest
    from tasker_bench.report import emit

    params = IngestParams(
        mode=mode,
        duration_s=duration,
        batch=batch,
        concurrency=concurrency,
        generators=generators,
        servers=servers,
        run=consecutive,
        ingesters=ingesters,
        packagers=packagers,
        drain_timeout_s=drain_timeout,
        naive=naive,
        compare=compare,
        keep_logs=keep_logs,
    )
    result = _run(lambda: run_ingest(params))
    emit(result, render(result), as_json)
    if not correct(result):
        raise typer.Exit(1)


@bench_app.command("latency")
def latency_command(
    mode: str = typer.Option("embedded", "--mode", help=MODE_HELP),
    rate: float = typer.Option(1000.0, "--rate", help="Readings per second, steady."),
    duration: float = typer.Option(30.0, "--duration", help="Seconds of load."),
    servers: int = typer.Option(
        500, "--servers", help="Servers the readings come from (each reports power and CO2 once per cycle)."
    ),
    batch: int = typer.Option(100, "--batch", help="Readings per POST."),
    ingesters: int = typer.Option(0, "--ingesters", help="Ingest processes of their own (distributed)."),
    packagers: int = typer.Option(0, "--packagers", help="Packager processes of their own (distributed)."),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Keep the backend logs."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Time from POST to the reading's arrival on a websocket subscription: p50, p99, max."""
    from tasker_bench.latency import LatencyParams, render, run_latency
    from tasker_bench.report import emit

    params = LatencyParams(
        mode=mode,
        rate=rate,
        duration_s=duration,
        servers=servers,
        batch=batch,
        ingesters=ingesters,
        packagers=packagers,
        keep_logs=keep_logs,
    )
    result = _run(lambda: run_latency(params))
    emit(result, render(result), as_json)


@bench_app.command("history")
def history_command(
    mode: str = typer.Option("embedded", "--mode", help=MODE_HELP),
    hours: int = typer.Option(24, "--hours", help="Hours of 1 s readings loaded first, per metric."),
    repeats: int = typer.Option(50, "--repeats", help="Warm calls of each query."),
    points: int = typer.Option(500, "--points", help="Points asked of each history query."),
    keep_logs: bool = typer.Option(False, "--keep-logs", help="Keep the backend logs."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """History for 24 h at 500 points and for 30 days, cold and warm; bytes on disk per reading."""
    from tasker_bench.history import HistoryParams, render, run_history
    from tasker_bench.report import emit

    params = HistoryParams(mode=mode, hours=hours, repeats=repeats, points=points, keep_logs=keep_logs)
    result = _run(lambda: run_history(params))
    emit(result, render(result), as_json)


@bench_app.command("tui")
def tui_command(
    servers: int = typer.Option(500, "--servers", help="Servers updating at 1 Hz."),
    seconds: float = typer.Option(30.0, "--seconds", help="Seconds measured, after the warm-up."),
    warmup: float = typer.Option(5.0, "--warmup", help="Seconds before measuring."),
    size: str = typer.Option("160x48", "--size", help="Terminal size COLUMNSxROWS."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """The TUI, headless, against 500 live servers: CPU, peak memory, first frame, frame times."""
    from tasker_bench.report import emit
    from tasker_bench.tui import TuiParams, render, run_tui

    params = TuiParams(servers=servers, seconds=seconds, warmup=warmup, size=size)
    result = _guarded(lambda: run_tui(params))  # it runs event loops of its own
    emit(result, render(result), as_json)


@bench_app.command("allocate")
def allocate_command(
    seed: int = typer.Option(1, "--seed", help="Workload seed (same seed, same workload)."),
    servers: int = typer.Option(500, "--servers", help="Servers in the fleet."),
    tasks: int = typer.Option(2000, "--tasks", help="Tasks submitted over the day."),
    exact: bool = typer.Option(False, "--exact", help="Also run 10 small instances against the exact MILP."),
    ahead: float = typer.Option(
        0.0,
        "--ahead",
        min=0.0,
        help="Also replay the day with the tasks without slack submitted this many hours before they may start.",
    ),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """CO2 of the carbon-aware plan vs run-now first-fit and round-robin; misses; planning time."""
    from tasker_bench.allocate import render, run_allocate
    from tasker_bench.report import emit

    result = _guarded(lambda: run_allocate(seed, servers, tasks, 10 if exact else 0, ahead))
    emit(result, render(result), as_json)


@bench_app.command("registry")
def registry_command(
    mode: str = typer.Option("embedded", "--mode", help=MODE_HELP),
    finished: int = typer.Option(2000, "--finished", help="Finished tasks stored before timing."),
    open_tasks: int = typer.Option(50, "--open", help="Open (queued) tasks stored."),
    repeats: int = typer.Option(9, "--repeats", help="Calls of each operation (median)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Task reads and writes of the hot paths with a history stored, before and after archiving."""
    from tasker_bench.registry import RegistryParams, main, render
    from tasker_bench.report import emit

    result = _guarded(lambda: main(RegistryParams(mode, finished, open_tasks, repeats)))
    emit(result, render(result), as_json)


def register(app: typer.Typer) -> None:
    """Add `tasker bench ...` to the root app."""
    app.add_typer(bench_app, name="bench")
