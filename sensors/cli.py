"""`tasker sensors emulate` and `tasker sensors host`, registered on the root `tasker` app.

Credentials: readings are posted with an ingest key (TASKER_INGEST_KEY or `--key-file`, never
the command line, where other users of the host would see it in `ps`; a sysadmin session also
works). Reading the registry (which servers exist, their specs) needs a session
(`tasker login` or TASKER_TOKEN); without one the ingest key is tried.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer

sensors_app = typer.Typer(
    help="Power and CO2 sensors: emulated for the fleet, or measured on this host.", no_args_is_help=True
)

KEY_FILE_OPTION = typer.Option(
    None,
    "--key-file",
    help="File holding the ingest key (default: TASKER_INGEST_KEY); an admin creates one with `tasker keys create`.",
)
URL_OPTION = typer.Option(None, "--url", help="Backend URL (default: TASKER_URL, else http://127.0.0.1:8470).")
INGEST_URL_OPTION = typer.Option(
    None,
    "--ingest-url",
    envvar="TASKER_INGEST_URL",
    help="Where readings are posted when ingest runs in processes of its own (default: --url); "
    "the server list is still read from --url.",
)
INTERVAL_OPTION = typer.Option(1.0, "--interval", min=0.05, help="Seconds between readings.")
BUFFER_OPTION = typer.Option(
    100_000, "--buffer", min=1, help="Readings kept while the backend is away; oldest dropped beyond."
)
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="No progress line.")


def _credentials(url: str, key_file: Path | None) -> tuple[str, str | None]:
    """(token to post readings with, token to read the registry with)."""
    from tasker.session import resolve_token
    from tasker.shell import fail

    key = None
    if key_file is not None:
        try:
            key = key_file.read_text().strip()
        except OSError as exc:
            fail(f"--key-file {key_file}: {exc.strerror or exc}", 2)
        if not key:
            fail(f"--key-file {key_file}: the file is empty", 2)
    session = resolve_token(url)
    ingest = key or os.environ.get("TASKER_INGEST_KEY") or session
    if not ingest:
        fail(
            "no ingest key: set TASKER_INGEST_KEY or pass --key-file (an admin creates one with `tasker keys create`)",
            2,
        )
    return ingest, session or ingest


def _ingest_url(ingest_url: str | None, base: str) -> str:
    """Where readings go: --ingest-url (TASKER_INGEST_URL) when given, else the backend URL."""
    from tasker.config import backend_url_problem, redact_url
    from tasker.shell import fail

    if not ingest_url:
        return base
    problem = backend_url_problem(ingest_url)
    if problem:
        fail(f"--ingest-url (TASKER_INGEST_URL) {redact_url(ingest_url)!r}: {problem}", 2)
    return ingest_url.rstrip("/")


@sensors_app.command("emulate")
def emulate(
    interval: float = INTERVAL_OPTION,
    seed: int = typer.Option(0, "--seed", help="Seed of the model: the same seed reproduces the same readings."),
    servers: int | None = typer.Option(
        None, "--servers", min=1, help="With --create: register a synthetic fleet of N servers first."
    ),
    create: bool = typer.Option(
        False, "--create", help="Register the --servers N synthetic servers (names already taken are kept)."
    ),
    key_file: Path | None = KEY_FILE_OPTION,
    url: str | None = URL_OPTION,
    ingest_url: str | None = INGEST_URL_OPTION,
    buffer: int = BUFFER_OPTION,
    quiet: bool = QUIET_OPTION,
    agents: bool = typer.Option(
        True,
        "--agents/--no-agents",
        help="Also play the agent of every emulated "
        "server: planned tasks load it at their planned times (needs a session).",
    ),
    fail_rate: float = typer.Option(
        0.0, "--fail-rate", min=0.0, max=1.0, help="Share of emulated tasks that end failed (exit code 1)."
    ),
) -> None:
    """Emulated power (W) and CO2 (g/h) for every registered server, following adds and removals;
    the tasks planned on them run there (emulated)."""
    from sensors.emulate import FleetEmulator
    from sensors.emulated_agents import EmulatedAgents
    from sensors.registry import RegistryFollower
    from sensors.sender import ReadingSender
    from sensors.synthetic import create_fleet, synthetic_servers
    from tasker.client import TaskerClient
    from tasker.shell import backend_url, fail, run_cli

    if (servers is None) != (not create):
        fail("--servers N and --create go together: `--servers 50 --create` registers 50 synthetic servers", 2)
    base = backend_url(url)
    post_to = _ingest_url(ingest_url, base)
    ingest, registry_token = _credentials(base, key_file)

    async def main() -> None:
        async with TaskerClient(base, registry_token) as registry, TaskerClient(post_to, ingest) as posting:
            if create and servers:
                made, kept = await create_fleet(registry, synthetic_servers(servers, seed))
                typer.echo(f"synthetic fleet: {made} servers registered, {kept} already there", err=True)
            emulator = FleetEmulator(
                RegistryFollower(registry, poll_s=interval),
                ReadingSender(posting, max_buffer=buffer),
                interval_s=interval,
                seed=seed,
                agents=EmulatedAgents(registry, poll_s=min(1.0, interval), fail_rate=fail_rate, seed=seed)
                if agents
                else None,
            )
            await emulator.run(progress_every_s=None if quiet else 1.0)

    run_cli(main, url=base, interrupted_ok=True)


@sensors_app.command("host")
def host(
    server: str = typer.Argument(..., help="Id or name of the registered server this machine is."),
    interval: float = INTERVAL_OPTION,
    key_file: Path | None = KEY_FILE_OPTION,
    url: str | None = URL_OPTION,
    ingest_url: str | None = INGEST_URL_OPTION,
    buffer: int = BUFFER_OPTION,
    quiet: bool = QUIET_OPTION,
    powercap: Path = typer.Option(
        Path("/sys/class/powercap"),
        "--powercap",
        envvar="TASKER_POWERCAP",
        help="Where the powercap tree is (for testing).",
    ),
) -> None:
    """This machine's measured power (RAPL package + DRAM), posted for SERVER; CO2 too when its spec is readable."""
    from sensors.host import HostSensor, UnknownServer
    from sensors.rapl import RaplMeter, RaplUnavailable
    from sensors.sender import ReadingSender, sensor_backoff
    from tasker.client import NotFoundError, TaskerClient
    from tasker.shell import backend_url, fail, run_cli

    try:
        meter = RaplMeter.open(powercap)
    except RaplUnavailable as exc:
        fail(str(exc))
    base = backend_url(url)
    post_to = _ingest_url(ingest_url, base)
    ingest, registry_token = _credentials(base, key_file)

    async def main() -> None:
        async with TaskerClient(base, registry_token) as registry, TaskerClient(post_to, ingest) as posting:
            try:
                server_id = await registry.server_id_of(server, sensor_backoff(1.0, 30.0))
            except NotFoundError:
                raise UnknownServer.of(server) from None
            domains = ", ".join(d.label for d in meter.domains)
            named = server if server == server_id else f"{server} ({server_id})"
            typer.echo(f"measuring {domains} every {interval:g} s for {named}", err=True)
            sensor = HostSensor(meter, ReadingSender(posting, max_buffer=buffer), server_id, interval_s=interval)
            await sensor.run(
                progress_every_s=None if quiet else 1.0, fetch_spec=lambda: registry.read_server(server_id)
            )

    run_cli(main, url=base, interrupted_ok=True)


def register(app: typer.Typer) -> None:
    """Add `tasker sensors ...` to the root app."""
    app.add_typer(sensors_app, name="sensors")
