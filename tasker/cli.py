"""The `tasker` command: one typer app; each part of Tasker registers its own commands.

Command modules import their heavy dependencies inside the commands, so `tasker --help` and the
TUI start fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="tasker",
    help="Tasker: run a fleet of servers and watch the energy they burn, from the terminal.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register_all() -> None:
    from backend.cli import register as register_backend
    from sensors.cli import register as register_sensors
    from tasker.bench.cli import register as register_bench
    from tasker.shell import register as register_shell
    from tasker_tui.cli import register as register_tui

    register_backend(app)
    register_sensors(app)
    register_tui(app)
    register_shell(app)
    register_bench(app)


_register_all()


def main() -> None:
    app()
