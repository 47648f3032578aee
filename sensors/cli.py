"""Command-line commands of this part of Tasker, registered on the root `tasker` app."""

import typer


def register(app: typer.Typer) -> None:
    """Add this part's commands to `app`."""
