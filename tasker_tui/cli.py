"""`tasker tui` and `tasker demo`, registered on the root `tasker` app.

Nothing here imports typer at module level: a plain `tasker tui` runs through `run_plain_tui`
without it (see tasker/cli.py), so its first frame does not wait for the command-line framework.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import typer

URL_OPTION = "--url"


def _need_terminal(command: str) -> int:
    """0 when stdin and stdout are a terminal; else say so and return the exit code (2): a
    full-screen UI without a terminal would draw to nowhere."""
    if sys.stdin.isatty() and sys.stdout.isatty():
        return 0
    print(f"tasker {command}: needs an interactive terminal (stdin and stdout must be a TTY)", file=sys.stderr)
    return 2


def start_tui(url: str | None) -> int:
    """Check the settings and the terminal, then run the TUI against `url`; the exit code."""
    from tasker.config import ConfigError, load_settings

    try:
        settings = load_settings(url=url)  # checks the URL, naming --url or TASKER_URL
    except ConfigError as exc:
        print(f"tasker tui: {exc}", file=sys.stderr)
        return 2
    if code := _need_terminal("tui"):
        return code
    from tasker_tui.app import TaskerApp

    app = TaskerApp(settings.url)
    app.run()
    if app.crash_line:
        print(app.crash_line, file=sys.stderr)
    return app.return_code or 0


def run_plain_tui(argv: list[str]) -> int | None:
    """Run `tasker tui`, `tasker tui --url URL` or `tasker tui --url=URL` without typer and
    return the exit code; None for any other command line (typer handles those, with the same
    meaning: this is only a shortcut for the common forms)."""
    if not argv or argv[0] != "tui":
        return None
    rest = argv[1:]
    if not rest:
        url = None
    elif len(rest) == 2 and rest[0] == URL_OPTION and rest[1] and not rest[1].startswith("-"):
        url = rest[1]
    elif len(rest) == 1 and rest[0].startswith(f"{URL_OPTION}=") and len(rest[0]) > len(URL_OPTION) + 1:
        url = rest[0][len(URL_OPTION) + 1 :]
    else:
        return None
    return start_tui(url)


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
    import typer

    @app.command()
    def tui(
        url: Optional[str] = typer.Option(
            None, URL_OPTION, help="Backend URL (default: TASKER_URL or http://127.0.0.1:8470)."
        ),
    ) -> None:
        """The terminal UI against a running backend."""
        raise typer.Exit(start_tui(url))

    @app.command(
        help="Embedded backend + emulated sensors for a sample fleet + the TUI, in one command.\n\n"
        "You are logged in as demo-admin. To chat with yourself as support, run "
        "`tasker tui --url URL` in a second terminal (the demo shows the URL) as "
        "demo-support, password tasker-demo."
    )
    def demo(
        data_dir: Optional[Path] = typer.Option(
            None,
            "--data-dir",
            help="Keep the demo's data here (default: a fresh temporary directory, removed on exit).",
        ),
        servers: int = typer.Option(12, "--servers", min=1, max=2000, help="How many sample servers to register."),
        interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between emulated sensor readings."),
    ) -> None:
        """Embedded backend + emulated sensors for a sample fleet + the TUI, in one command."""
        if code := _need_terminal("demo"):
            raise typer.Exit(code)
        from tasker_tui.demo import run_demo

        raise typer.Exit(run_demo(data_dir=data_dir, servers=servers, interval=interval))
