"""`tasker demo`: an embedded backend, a sample fleet, emulated sensors and the TUI, in one command.

Everything it starts (the backend and the sensors, as child processes) stops when the TUI quits.
Its data lives in a fresh temporary directory, removed afterwards, unless `--data-dir` is given;
a data dir that held a demo before is reused with the same accounts (kept in `demo.json`, 0600).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tasker.client import ApiError, Conflict, TaskerClient
from tasker.when import to_rfc3339
from tasker_tui.local_stack import LocalStack, StackError, port_is_free

DEFAULT_PORT = 8470  # TASKER_URL's default, so a plain `tasker tui` finds the demo
# Fixed and printed: the demo listens on loopback only, and a second TUI must be able to log in
# with what was printed after an earlier run. A reused --data-dir keeps what it was given.
DEMO_PASSWORD = "tasker-demo"

# (name, region, site, energy source, idle W, max W, cores, tags): a dozen servers across
# regions and energy sources, from a coal-fired database to a hydro-powered batch box.
SAMPLE_FLEET: tuple[tuple[str, str, str, str, int, int, int, tuple[str, ...]], ...] = (
    ("web-dub-1", "eu-west", "Dublin", "wind", 70, 260, 16, ("prod", "web")),
    ("web-dub-2", "eu-west", "Dublin", "grid-mix", 70, 260, 16, ("prod", "web")),
    ("api-fra-1", "eu-central", "Frankfurt", "grid-mix", 90, 380, 32, ("prod", "api")),
    ("db-fra-1", "eu-central", "Frankfurt", "gas", 180, 620, 64, ("prod", "db")),
    ("batch-sto-1", "eu-north", "Stockholm", "hydro", 220, 900, 96, ("batch",)),
    ("ml-par-1", "fr-central", "Paris", "nuclear", 300, 1400, 128, ("gpu", "ml")),
    ("web-iad-1", "us-east", "Ashburn", "grid-mix", 70, 260, 16, ("prod", "web")),
    ("db-iad-1", "us-east", "Ashburn", "coal", 180, 620, 64, ("prod", "db")),
    ("cdn-pdx-1", "us-west", "Portland", "solar", 50, 180, 8, ("edge", "cdn")),
    ("ci-dsm-1", "us-central", "Des Moines", "wind", 120, 520, 48, ("ci",)),
    ("web-bom-1", "ap-south", "Mumbai", "coal", 70, 260, 16, ("prod", "web")),
    ("cache-sin-1", "ap-southeast", "Singapore", "oil", 60, 240, 8, ("prod", "cache")),
)


# (name, cores, duration, deadline in hours from now, interruptible, regions, tags, command): a
# few tasks with room to wait for cleaner power, so the plan shows allocation at once.
SAMPLE_TASKS: tuple[tuple[str, int, str, int, bool, tuple[str, ...], tuple[str, ...], tuple[str, ...]], ...] = (
    ("render-frames", 16, "90m", 6, True, ("eu-north", "fr-central"), (), ("render", "--frames", "1-500")),
    ("nightly-backup", 8, "2h", 8, True, (), ("db",), ("backup", "--full")),
    ("train-model", 64, "3h", 12, True, (), ("gpu",), ("python", "train.py", "--epochs", "20")),
    ("ci-build", 4, "30m", 2, False, (), ("ci",), ("make", "test")),
    ("log-compact", 2, "45m", 4, False, ("us-west", "us-central"), (), ("compact-logs", "/var/log")),
    # Only a grid-mix server fits it: it waits for that grid's cleanest hours (midday solar).
    ("monthly-report", 8, "1h", 22, False, ("eu-central",), ("api",), ("report", "--month")),
)


@dataclass(frozen=True, slots=True)
class DemoAccounts:
    """The demo's users and sensor key; kept in the data dir so a reused dir keeps working."""

    sysadmin: str
    sysadmin_password: str
    engineer: str
    engineer_password: str
    ingest_key: str


def sample_servers(count: int) -> list[dict[str, Any]]:
    """`count` server bodies: the sample fleet, repeated with numbered names beyond a dozen."""
    servers = []
    for index in range(count):
        name, region, site, source, idle, top, cores, tags = SAMPLE_FLEET[index % len(SAMPLE_FLEET)]
        if index >= len(SAMPLE_FLEET):
            name = f"{name.rsplit('-', 1)[0]}-{index // len(SAMPLE_FLEET) + 1}{index % len(SAMPLE_FLEET)}"
        servers.append(
            {
                "name": name,
                "location": {"region": region, "site": site},
                "energy_source": source,
                "idle_watts": idle,
                "max_watts": top,
                "cores": cores,
                "tags": list(tags),
            }
        )
    return servers


def _accounts_file(root: Path) -> Path:
    return root / "demo.json"


def provision_accounts(stack: LocalStack) -> DemoAccounts:
    """Create the demo sysadmin, engineer and ingest key, or reuse those of an earlier run."""
    path = _accounts_file(stack.root)
    if path.is_file():
        return DemoAccounts(**json.loads(path.read_text()))
    accounts_without_key = ("demo-admin", DEMO_PASSWORD, "demo-support", DEMO_PASSWORD)
    key = stack.provision(
        [
            (accounts_without_key[0], "sysadmin", accounts_without_key[1]),
            (accounts_without_key[2], "engineer", accounts_without_key[3]),
        ],
        "tasker demo sensors",
    )
    accounts = DemoAccounts(*accounts_without_key, ingest_key=key or "")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(asdict(accounts), out, indent=2)
    return accounts


async def register_fleet(url: str, accounts: DemoAccounts, count: int) -> tuple[str, int]:
    """Log in as the demo sysadmin and register the sample fleet (names already there are kept).

    Returns the session token (the sensors read the registry with it) and how many were added.
    """
    async with TaskerClient(url) as api:
        answer = await api.login(accounts.sysadmin, accounts.sysadmin_password)
        taken = {s.name for s in (await api.read_servers()).servers}
        added = 0
        for body in sample_servers(count):
            if body["name"] in taken:
                continue
            try:
                await api.create_server(body)
                added += 1
            except Conflict:
                pass
        await submit_sample_tasks(api)
        return answer["token"], added


def sample_tasks(now_ms: int) -> list[dict[str, Any]]:
    """The demo's task bodies, deadlines counted from `now_ms`."""
    bodies = []
    for name, cores, duration, hours, interruptible, regions, tags, command in SAMPLE_TASKS:
        deadline = datetime.fromtimestamp(now_ms / 1000 + hours * 3600, tz=timezone.utc)
        bodies.append(
            {
                "name": name,
                "cores": cores,
                "duration": duration,
                "deadline": to_rfc3339(deadline),
                "interruptible": interruptible,
                "regions": list(regions),
                "tags": list(tags),
                "command": list(command),
            }
        )
    return bodies


async def submit_sample_tasks(api: TaskerClient) -> int:
    """Submit the sample tasks unless the demo has tasks already (a reused data dir)."""
    if await api.list_tasks():
        return 0
    for body in sample_tasks(int(time.time() * 1000)):
        await api.submit_task(body)
    return len(SAMPLE_TASKS)


def tasker_command() -> str:
    """`tasker` when a shell finds it on PATH, else the full path of the one running (after
    `scripts/setup` it lives in the project's .venv, which is not on PATH)."""
    running = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    if shutil.which("tasker") or running is None or running.name != "tasker":
        return "tasker"
    return str(running)


def second_tui_hint(url: str, accounts: DemoAccounts) -> str:
    """How to watch the running demo from a second terminal as the support engineer."""
    tui = f"{tasker_command()} tui"
    command = tui if url.endswith(f":{DEFAULT_PORT}") else f"{tui} --url {url}"
    return f"{command}   (username {accounts.engineer}, password {accounts.engineer_password})"


class _Signalled(BaseException):
    """The terminal closed (SIGHUP) or someone asked the demo to stop (SIGTERM)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _StopSignals:
    """SIGHUP and SIGTERM stop the demo as `q` does. The backend and the sensors run in sessions
    of their own (a ctrl+c in the TUI is not theirs), so a closed terminal must stop them here."""

    def __init__(self) -> None:
        self.signum = 0
        self.app: Any = None
        # What stopping needs done; run from the handler itself when the terminal has gone.
        self.clean_up: Callable[[], None] | None = None

    def install(self) -> None:
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, self._stop)

    def _stop(self, signum: int, frame: object) -> None:
        self.signum = signum
        if signum == signal.SIGHUP and self.app is not None and self.clean_up is not None:
            # The terminal is gone: there is nothing to give back, and Textual's output thread
            # may already have died on it (its shutdown would then wait forever). Clean up, leave.
            self.ignore()
            self.clean_up()
            os._exit(128 + signum)
        try:
            loop = asyncio.get_running_loop()  # the handler runs on the main thread, inside its loop
        except RuntimeError:
            loop = None
        if self.app is not None and loop is not None:
            # The TUI quits by itself, so Textual stops its threads and gives the terminal back.
            loop.call_soon_threadsafe(self.app.exit, None, 128 + signum)
        else:
            raise _Signalled(signum)  # still starting: unwind to the clean-up

    @staticmethod
    def ignore() -> None:
        """From here on the clean-up is not to be cut short."""
        for signum in (signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)


def run_demo(data_dir: Path | None, servers: int = len(SAMPLE_FLEET), interval: float = 1.0) -> int:
    """Run the whole demo; returns the process exit code."""
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="tasker-demo-")) if data_dir is None else Path(data_dir).expanduser()
    try:
        stack = LocalStack(root)
    except OSError as exc:
        print(f"tasker demo: --data-dir {root}: cannot use it as a directory ({exc.strerror or exc})", file=sys.stderr)
        return 2
    url = ""
    accounts: DemoAccounts | None = None
    stop = _StopSignals()
    stop.install()
    # The TUI draws at once; the backend, accounts, fleet and sensors are set up meanwhile in a
    # thread (`prepare`), and the login screen says so until they are.
    started, done, stopping = threading.Event(), threading.Event(), threading.Event()
    # Starting and stopping decide under one lock: either the set-up starts before the clean-up
    # (which then waits for it) or it sees the clean-up and starts nothing (else it could create
    # files, or a backend, in the data dir the clean-up is removing).
    deciding = threading.Lock()

    def prepare() -> tuple[str, str]:
        nonlocal url, accounts
        with deciding:
            if stopping.is_set():
                done.set()
                raise StackError("stopped while starting")
            started.set()

        def go_on() -> None:  # quitting while this runs stops it at the next step
            if stopping.is_set() or not app.is_running:
                raise StackError("stopped while starting")

        try:
            stack.launch_backend(DEFAULT_PORT if port_is_free(DEFAULT_PORT) else 0)
            accounts = provision_accounts(stack)  # meanwhile: each account is a process of its own
            go_on()
            url = stack.wait_for_backend()
            go_on()
            token, added = asyncio.run(register_fleet(url, accounts, servers))
            go_on()
            stack.start_sensors(accounts.ingest_key, token, interval=interval)
            app.auto_login = (accounts.sysadmin, accounts.sysadmin_password)
            fleet = (
                f"{added} sample servers registered, sample tasks submitted (press t)"
                if added
                else "the sample fleet is there from last time"
            )
            return url, (
                f"Backend at {url}; {fleet}.\nSecond TUI (support engineer), in another terminal:\n"
                f"{second_tui_hint(url, accounts)}"
            )
        finally:
            done.set()

    def clean_up() -> None:
        with deciding:
            stopping.set()
        stack.close()  # a set-up still waiting for the backend gives up at once
        if started.is_set():
            done.wait(60)
            stack.close()  # whatever it started before it noticed
        if temporary:
            shutil.rmtree(root, ignore_errors=True)

    stop.clean_up = clean_up
    try:
        print(f"tasker demo: data in {root}", flush=True)
        from tasker_tui.app import TaskerApp

        app = TaskerApp("", remember_session=False, prepare=prepare)
        stop.app = app
        try:
            app.run()
        except OSError:
            if not stop.signum:
                raise  # a closed terminal fails the TUI's last writes; anything else is news
        if stop.signum:
            raise _Signalled(stop.signum)
        if app.prepare_error is not None:
            raise app.prepare_error
        crashed = app.return_code or 0
        if app.crash_line:
            print(app.crash_line, file=sys.stderr)
    except (StackError, ApiError) as exc:
        print(f"tasker demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    except _Signalled as stopped:
        try:
            print(
                f"tasker demo: {signal.Signals(stopped.signum).name}: stopping the backend and the sensors",
                file=sys.stderr,
                flush=True,
            )
        except OSError:
            pass  # the terminal is gone (SIGHUP): nobody to tell
        return 128 + stopped.signum
    finally:
        stop.ignore()
        clean_up()
    print(
        "tasker demo: stopped the backend and the sensors"
        + (", removed its data." if temporary else f"; data kept in {root}.")
    )
    if accounts is not None and url:
        kept = "" if temporary else f" --data-dir {root}"
        print(f"Run it again with `tasker demo{kept}`. While it runs, a second terminal can")
        print("connect a second TUI as the demo support engineer:")
        print(f"  {second_tui_hint(url, accounts)}")
    return crashed
