"""The `tasker` command: one typer app; each part of Tasker registers its own commands.

Command modules import their heavy dependencies inside the commands, so `tasker --help` and the
TUI start fast. A plain `tasker tui [--url URL]` does not even build the typer app: typer turns
every option through pydantic, about a fifth of a second before the TUI's first frame could be
drawn (see `tasker_tui.cli.run_plain_tui`); anything else, `--help` included, goes through typer.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

_app: typer.Typer | None = None


def _build_app() -> typer.Typer:
    """The root app with every part's commands (built once, on first use)."""
    global _app
    if _app is not None:
        return _app
    import typer

    from agents.cli import register as register_agent
    from backend.cli import register as register_backend
    from sensors.cli import register as register_sensors
    from tasker.shell import register as register_shell
    from tasker.task_shell import register as register_tasks
    from tasker_bench.cli import register as register_bench
    from tasker_tui.cli import register as register_tui

    app = typer.Typer(
        name="tasker",
        help="Tasker: run a fleet of servers and watch the energy they burn, from the terminal.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        add_completion=False,
    )
    register_backend(app)
    register_sensors(app)
    register_tui(app)
    register_shell(app)
    register_tasks(app)
    register_agent(app)
    register_bench(app)
    _hide_flag_types()
    _app = app
    return app


def _hide_flag_types() -> None:
    """Help without a type after a flag: typer 0.29 prints `--json <bool>`, which reads as if the
    flag took a value (`--json true`), and it takes none."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich
    if getattr(shown, "hides_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    display_type_rich.hides_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def __getattr__(name: str) -> Any:
    # `from tasker.cli import app` (tests, typer's tooling) builds the app on first use.
    if name == "app":
        return _build_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main() -> None:
    from tasker_tui.cli import run_plain_tui

    code = run_plain_tui(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    _build_app()()
