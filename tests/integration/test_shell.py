"""The shell commands (`tasker login`, `servers ...`, `history`) as a user runs them, against a real
embedded backend: output for people and scripts, one-line errors, never a traceback.

The commands run in-process (typer's CliRunner, the same code path as the console script) so
the file stays fast; the backend is a real `tasker backend` process shared by the module.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import re
import socket
import stat
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tasker.cli import app
from tasker.client import TaskerClient
from tasker.shell import iso
from tests.integration.test_sensors_emulate import PASSWORD, EmbeddedBackend, wait_for


class Shell:
    """Runs `tasker ...` in-process with the backend's environment; returns the CliRunner result."""

    def __init__(self, backend: EmbeddedBackend):
        self.backend = backend
        self.url = backend.url

    def __call__(self, *args: str, stdin: str | None = None, env: dict[str, str | None] | None = None):
        # Variables of the outer environment that the backend's does not set are unset here.
        base: dict[str, str | None] = {k: None for k in os.environ if k.startswith("TASKER_")}
        base.update(self.backend.env)
        result = CliRunner().invoke(app, list(args), input=stdin, env={**base, **(env or {})})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception  # a traceback a user would have seen: fail loudly
        return result


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    backend = EmbeddedBackend(tmp_path_factory.mktemp("shell"))
    backend.create_accounts()
    backend.start()
    yield Shell(backend)
    backend.stop()


def one_line_error(result) -> str:
    """The single stderr line of a failed command (and that there is no traceback)."""
    assert result.exit_code != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def login(shell: Shell) -> None:
    result = shell("login", "--username", "ops", "--password-stdin", stdin=PASSWORD + "\n")
    assert result.exit_code == 0, result.stderr
    assert f"logged in to {shell.url} as ops (sysadmin)" in result.stdout


ADD_WEB1 = [
    "servers",
    "add",
    "web-1",
    "--region",
    "eu-west",
    "--site",
    "Dublin",
    "--source",
    "wind",
    "--idle",
    "80",
    "--max",
    "350",
    "--cores",
    "32",
    "--tag",
    "prod",
    "--tag",
    "web",
]


def test_login_keeps_a_private_session_that_later_commands_use(shell):
    refused = shell("login", "--username", "ops", "--password-stdin", stdin="wrong-password\n")
    assert one_line_error(refused).startswith(f"tasker: login refused by {shell.url}:")
    not_yet = shell("servers", "list")
    assert one_line_error(not_yet) == (
        f"tasker: not logged in to {shell.url} (or the session expired):"
        f" run `tasker login --url {shell.url}` or set TASKER_TOKEN"
    )
    login(shell)
    session = Path(shell.backend.env["XDG_CONFIG_HOME"]) / "tasker" / "session.json"
    assert stat.S_IMODE(session.stat().st_mode) == 0o600
    listed = shell("servers", "list")
    assert listed.exit_code == 0, listed.stderr
    assert "no servers registered" in listed.stdout
    out = shell("logout")
    assert out.exit_code == 0 and f"logged out of {shell.url}" in out.stdout
    assert one_line_error(shell("servers", "list")).startswith("tasker: not logged in")


def test_servers_add_list_show_edit_rm(shell):
    login(shell)
    added = shell(*ADD_WEB1, "--json")
    assert added.exit_code == 0, added.stderr
    server = json.loads(added.stdout)
    assert server["id"].startswith("srv_") and server["carbon_intensity_g_per_kwh"] == 11.0

    again = shell(*ADD_WEB1)
    assert "web-1" in one_line_error(again) and "taken" in one_line_error(again)
    bad = shell("servers", "add", "web-2", "--region", "eu-west", "--idle", "400", "--max", "350", "--cores", "4")
    assert one_line_error(bad) == "tasker: invalid server: max_watts must be >= idle_watts (400)"

    listed = json.loads(shell("servers", "list", "--json").stdout)
    assert [(s["id"], s["name"], s["tags"]) for s in listed] == [(server["id"], "web-1", ["prod", "web"])]
    table = shell("servers", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "NAME",
        "REGION",
        "SOURCE",
        "CORES",
        "POWER",
        "W",
        "CO2",
        "g/h",
        "IDLE..MAX",
        "W",
        "PUE",
        "TAGS",
    ]
    assert table[1].split() == [server["id"], "web-1", "eu-west", "wind", "32", "-", "-", "80..350", "1.5", "prod,web"]

    shown = shell("servers", "show", "WEB-1")  # by name, case-insensitive
    assert shown.exit_code == 0, shown.stderr
    assert "location          eu-west / Dublin" in shown.stdout
    assert "life-cycle median for wind" in shown.stdout

    edited = shell("servers", "edit", "web-1", "--pue", "1.25", "--site", "Cork", "--json")
    assert edited.exit_code == 0, edited.stderr
    assert json.loads(edited.stdout)["pue"] == 1.25
    assert json.loads(edited.stdout)["location"] == {"region": "eu-west", "site": "Cork"}
    assert one_line_error(shell("servers", "edit", "web-1")).startswith("tasker: nothing to change")

    unconfirmed = shell("servers", "rm", "web-1")  # stdin is not a terminal: no prompt possible
    assert (
        one_line_error(unconfirmed) == f"tasker: not removing web-1 ({server['id']}) without confirmation: pass --yes"
    )
    for word in ("remove", "delete"):  # the words a user tries first lead to the same command
        assert one_line_error(shell("servers", word, "web-1")) == one_line_error(unconfirmed)
    removed = shell("servers", "rm", server["id"], "--yes", "--purge")
    assert removed.exit_code == 0, removed.stderr
    assert removed.stdout.strip() == f"removed web-1 ({server['id']}) and its readings"
    assert json.loads(shell("servers", "list", "--json").stdout) == []
    assert one_line_error(shell("servers", "show", "web-1")) == "tasker: no server with id or name 'web-1'"


def test_history_as_csv_and_table(shell):
    login(shell)
    server = json.loads(shell(*ADD_WEB1, "--json").stdout)
    now = int(time.time() * 1000)
    minute = now - now % 60_000 - 10 * 60_000
    values = {minute + i * 10_000: 100.0 + i for i in range(12)}  # two minutes of readings, 10 s apart
    since, until = minute - 60_000, minute + 3 * 60_000

    async def post_and_ask() -> dict:
        async with TaskerClient(shell.url, shell.backend.ingest_key) as sensor:
            await sensor.post_readings(
                [{"server_id": server["id"], "metric": "power", "ts": ts, "value": v} for ts, v in values.items()]
            )
        async with TaskerClient(shell.url, await shell.backend.login()) as api:

            async def stored() -> bool:
                page = await api.readings(server["id"], "power", start=minute, end=now, limit=100)
                return len(page["readings"]) == 12

            await wait_for(stored, 10)
            return await api.history(server["id"], "power", start=since, end=until, points=4)

    expected = asyncio.run(post_and_ask())

    result = shell(
        "history", "web-1", "--metric", "power", "--since", iso(since), "--until", iso(until), "--points", "4", "--csv"
    )
    assert result.exit_code == 0, result.stderr
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == ["ts_ms", "time", "min", "avg", "max"]
    got = [[int(r[0]), *(float(x) for x in r[2:])] for r in rows[1:]]
    assert got == expected["points"]  # exactly what the backend answered, nothing lost or reshaped
    assert [r[1] for r in rows[1:]] == [iso(ts) for ts, *_ in got]
    assert 1 <= len(got) <= 4
    assert min(p[1] for p in got) == 100.0 and max(p[3] for p in got) == 111.0
    assert all(lo <= avg <= hi for _, lo, avg, hi in got)

    table = shell("history", server["id"], "--since", iso(since), "--until", iso(until), "--points", "4")
    assert table.exit_code == 0, table.stderr
    assert f"web-1 ({server['id']}) power in W, {iso(since)} .. {iso(until)}" in table.stdout
    assert len(table.stdout.strip().splitlines()) == 2 + len(got)

    bad = shell("history", "web-1", "--since", "yesterday-ish")
    assert "--since 'yesterday-ish'" in one_line_error(bad)
    upper = shell(
        "history", "web-1", "--metric", "POWER", "--since", iso(since), "--until", iso(until), "--points", "4", "--csv"
    )
    assert upper.exit_code == 0 and upper.stdout == result.stdout, upper.stderr
    bad_metric = shell("history", "web-1", "--metric", "voltage")
    assert one_line_error(bad_metric) == "tasker: --metric 'voltage': expected one of power, co2"


def test_an_unreachable_backend_is_one_clear_line(shell):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once closed
    result = shell("servers", "list", "--url", url, env={"TASKER_TOKEN": "any"})
    assert one_line_error(result) == (
        f"tasker: cannot reach the backend at {url}: connection refused — is `tasker backend` running?"
    )
    # Without a session too: "not logged in" would send the user to log in to nothing.
    no_session = shell("servers", "list", "--url", url)
    assert one_line_error(no_session) == (
        f"tasker: cannot reach the backend at {url}: connection refused — is `tasker backend` running?"
    )
    bad_url = shell("servers", "list", "--url", "ftp://example")
    assert one_line_error(bad_url) == (
        "tasker: --url 'ftp://example': unknown scheme 'ftp'; expected http://host:port, e.g. http://127.0.0.1:8470"
    )


def test_help_names_every_server_field_and_flags_take_no_value(shell):
    edit = shell("servers", "edit", "--help")
    assert edit.exit_code == 0
    for option in ("--region", "--site", "--energy-source", "--pue", "--cores"):
        line = next(line for line in edit.stdout.splitlines() if option in line)
        assert re.search(r"<\w+>\s+[^\s│][^│]*│$", line), f"{option} has no description: {line}"
    assert "<bool>" not in edit.stdout and "--json" in edit.stdout


def test_tasks_submit_list_show_cancel_and_the_plan(shell):
    login(shell)
    if "web-1" not in shell("servers", "list").stdout:
        assert shell(*ADD_WEB1).exit_code == 0
    server = json.loads(shell("servers", "show", "web-1", "--json").stdout)

    async def report_power() -> None:  # a live server, as a sensor keeps it (the history test's readings are old)
        async with TaskerClient(shell.url, shell.backend.ingest_key) as sensor:
            now = int(time.time() * 1000)
            await sensor.post_readings([{"server_id": server["id"], "metric": "power", "ts": now, "value": 120.0}])

    asyncio.run(report_power())
    submitted = shell("tasks", "submit", "nightly-render", "--cores", "4", "--duration", "30m", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    task = json.loads(submitted.stdout)
    assert task["state"] == "queued" and task["cores"] == 4
    too_big = shell("tasks", "submit", "huge", "--cores", "64", "--duration", "1h")
    assert one_line_error(too_big).startswith("tasker: invalid task: cores")

    deadline = time.monotonic() + 30
    while json.loads(shell("tasks", "show", task["id"], "--json").stdout)["state"] == "queued":
        assert time.monotonic() < deadline, "the scheduler never planned the task"
        time.sleep(0.3)
    listed = shell("tasks", "list")
    assert listed.exit_code == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split()[:4] == ["ID", "NAME", "OWNER", "STATE"]
    row = next(line.split() for line in listed.stdout.splitlines() if task["id"] in line)
    assert row[1:4] == ["nightly-render", "ops", "planned"] and "web-1" in row  # the server by its name
    # by server, named or by id; a server it is not on lists none of it; an unknown one is said
    assert task["id"] in shell("tasks", "list", "--server", "web-1").stdout
    on_web1 = json.loads(shell("tasks", "list", "--server", server["id"], "--json").stdout)
    assert task["id"] in {t["id"] for t in on_web1} and {t["plan"]["server_id"] for t in on_web1} == {server["id"]}
    db1 = json.loads(shell(*ADD_WEB1[:2], "db-1", *ADD_WEB1[3:], "--json").stdout)
    elsewhere = shell("tasks", "list", "--server", "db-1")
    assert elsewhere.exit_code == 0 and task["id"] not in elsewhere.stdout and "(no tasks)" in elsewhere.stdout
    assert shell("servers", "rm", "db-1", "--yes").exit_code == 0
    removed = shell("tasks", "list", "--server", db1["id"])  # tasks keep a removed server's id
    assert removed.exit_code == 0 and "(no tasks)" in removed.stdout, removed.stderr
    assert "no-such-server" in one_line_error(shell("tasks", "list", "--server", "no-such-server"))
    shown = shell("tasks", "show", task["id"])
    assert shown.exit_code == 0 and "nightly-render" in shown.stdout, shown.stderr
    assert re.search(r"^server +web-1$", shown.stdout, re.M)
    assert re.search(r"^CO2 if run now .* on web-1$", shown.stdout, re.M)

    cancelled = shell("tasks", "cancel", task["id"])
    assert cancelled.exit_code == 0 and f"cancelled nightly-render ({task['id']})" in cancelled.stdout
    # finished tasks: those of the last 24 h by default, none finished since now, all with --all
    assert task["id"] in shell("tasks", "list").stdout
    assert task["id"] not in shell("tasks", "list", "--since", "0s").stdout
    assert task["id"] in json.dumps(json.loads(shell("tasks", "list", "--all", "--json").stdout))
    bad = shell("tasks", "list", "--since", "last week")
    assert one_line_error(bad).startswith("tasker: --since 'last week':")

    plan = shell("plan")
    assert plan.exit_code == 0 and "CO2 planned" in plan.stdout, plan.stderr
