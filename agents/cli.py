"""`tasker agent --server ID|NAME`: run the tasks the plan puts on this host.

The key comes from TASKER_INGEST_KEY or `--key-file` (never the command line, where other users
of the host could read it): an ingest key scoped to the server (`tasker keys create --server
ID`). A session (TASKER_TOKEN or `tasker login`) of the server's owner or an admin works too.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer


def _state_dir(server_id: str) -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tasker" / "agent" / server_id


def _lock(directory: Path):
    """One agent per state directory on this host: a second one would adopt the same tasks."""
    import fcntl

    from tasker.shell import fail

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle = open(directory / "lock", "w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fail(f"another tasker agent already runs with the state directory {directory}", 2)
    return handle


def agent_command(
    server: str = typer.Option(..., "--server", help="Id or name of the registered server this host is."),
    key_file: Path | None = typer.Option(None, "--key-file", help="File holding the key (default: TASKER_INGEST_KEY)."),
    state_dir: Path | None = typer.Option(
        None,
        "--state-dir",
        help="Where tasks' output and state are kept (default: $XDG_STATE_HOME/tasker/agent/SERVER_ID).",
    ),
    kill_grace: float = typer.Option(
        10.0, "--kill-grace", min=0.0, help="Seconds between SIGTERM and SIGKILL on cancel."
    ),
    url: str | None = typer.Option(
        None, "--url", help="Backend URL (default: TASKER_URL, else http://127.0.0.1:8470)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress line."),
    websocket: bool = typer.Option(
        True, "--websocket/--poll-only", help="Hear of plan changes on a websocket at once (default), or only poll."
    ),
) -> None:
    """Run the tasks planned for this server at their planned times, and report how they ran."""
    from agents.agent import Agent
    from sensors.progress import run_reporting
    from sensors.sender import sensor_backoff
    from tasker.client import TaskerClient
    from tasker.session import resolve_token
    from tasker.shell import backend_url, fail, run_cli

    base = backend_url(url)
    token: str | None
    if key_file is not None:
        try:
            token = key_file.read_text().strip()
        except OSError as exc:
            fail(f"--key-file {key_file}: {exc.strerror or exc}", 2)
    else:
        token = os.environ.get("TASKER_INGEST_KEY") or resolve_token(base)
    if not token:
        fail(
            f"no key: set TASKER_INGEST_KEY or pass --key-file (an admin creates one with "
            f"`tasker keys create --server {server}`)",
            2,
        )

    async def main() -> None:
        async with TaskerClient(base, token) as client:
            server_id = await client.server_id_of(server, sensor_backoff(1.0, 30.0))
            directory = state_dir or _state_dir(server_id)  # by id: one lock however the server is named
            lock = _lock(directory)  # noqa: F841 - held until the process ends
            agent = Agent(client, server_id, directory, kill_grace_s=kill_grace, websocket=websocket)
            named = server if server == server_id else f"{server} ({server_id})"
            typer.echo(f"agent {agent.agent_id} for {named}; state in {agent.state_dir}", err=True)
            await run_reporting([agent.run()], agent.stats.line, None if quiet else 1.0)

    run_cli(main, url=base, interrupted_ok=True)


def register(app: typer.Typer) -> None:
    """Add `tasker agent` to the root app."""
    app.command("agent")(agent_command)
