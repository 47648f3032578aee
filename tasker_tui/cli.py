"""`tasker tui` and `tasker demo`, registered on the root `tasker` app."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer


def _need_terminal(command: str) -> None:
    """Refuse to start a full-screen UI without a terminal (it would draw to nowhere)."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        typer.echo(f"tasker {command}: needs an interactive terminal (stdin and stdout must be a TTY)", err=True)
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""

    @app.command()
    def tui(
        url: Optional[str] = typer.Option(None, "--url", help="Backend URL (default: TASKER_URL or http://127.0.0.1:8470)."),
    ) -> None:
        """The terminal UI against a running backend."""
        from urllib.parse import urlsplit

        from tasker.config import ConfigError, load_settings

        try:
            settings = load_settings(url=url)
            if not urlsplit(settings.url).hostname:
                raise ConfigError(f"{settings.url!r}: expected http://host:port, e.g. http://127.0.0.1:8470")
        except ConfigError as exc:
            message = str(exc).replace("TASKER_URL=", "--url ") if url else str(exc)
            typer.echo(f"tasker tui: {message}", err=True)
            raise typer.Exit(2) from None
        _need_terminal("tui")
        from tasker_tui.app import TaskerApp

        TaskerApp(settings.url).run()

    @app.command()
    def demo(
        data_dir: Optional[Path] = typer.Option(
            None, "--data-dir", help="Keep the demo's data here (default: a fresh temporary directory, removed on exit)."
        ),
        servers: int = typer.Option(12, "--servers", min=1, max=2000, help="How many sample servers to register."),
        interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between emulated sensor readings."),
    ) -> None:
        """Embedded backend + emulated sensors for a sample fleet + the TUI, in one command."""
        _need_terminal("demo")
        from tasker_tui.demo import run_demo

        raise typer.Exit(run_demo(data_dir=data_dir, servers=servers, interval=interval))
