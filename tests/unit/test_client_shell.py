"""The shell commands' helpers: time arguments, the one line a user sees for each kind of error."""

from __future__ import annotations

import pytest
import typer

from tasker.client import BackendUnavailable, Forbidden, NotFoundError, Unauthorized, ValidationFailed
from tasker.shell import UsageError, explain, parse_when, run_cli

NOW = 1_800_000_000_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW - 3_600_000),
        ("-30m", NOW - 1_800_000),
        ("90s", NOW - 90_000),
        ("7d", NOW - 7 * 86_400_000),
        ("1.5h", NOW - 5_400_000),
        ("1700000000000", 1_700_000_000_000),
        ("2026-01-01T00:00:00Z", 1_767_225_600_000),
        ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
        ("2026-01-01T00:00:00", 1_767_225_600_000),  # no zone: UTC, like everything in Tasker
    ],
)
def test_time_arguments(text, expected):
    assert parse_when(text, NOW, "--since") == expected


def test_a_bad_time_names_the_option_and_the_forms():
    with pytest.raises(UsageError, match=r"--until 'soonish': expected a duration such as 15m, 1h, 7d"):
        parse_when("soonish", NOW, "--until")


def test_error_lines():
    url = "http://127.0.0.1:8470"
    refused = BackendUnavailable(0, f"cannot reach the backend at {url}: connection refused", unreachable=True)
    assert explain(refused) == f"cannot reach the backend at {url}: connection refused — is `tasker backend` running?"
    degraded = BackendUnavailable(503, f"the backend at {url} is unavailable: broker down")
    assert explain(degraded) == f"the backend at {url} is unavailable: broker down"
    assert explain(Unauthorized(401, "session expired"), url) == (
        f"session expired: log in with `tasker login --url {url}` (or set TASKER_TOKEN)"
    )
    assert explain(Forbidden(403, "role 'engineer' may not change anything")) == (
        "not allowed: role 'engineer' may not change anything"
    )
    invalid = ValidationFailed(
        400,
        "invalid server: pue, cores",
        [{"field": "pue", "reason": "must be >= 1"}, {"field": "cores", "reason": "is required"}],
    )
    assert explain(invalid) == "invalid server: pue must be >= 1; cores is required"
    assert explain(NotFoundError(404, "no server with id or name 'x'")) == "no server with id or name 'x'"


def test_run_cli_turns_errors_into_one_line_and_exit_1(capsys):
    async def broken():
        raise ValidationFailed(400, "invalid server: pue", [{"field": "pue", "reason": "must be >= 1"}])

    with pytest.raises(typer.Exit) as stopped:
        run_cli(broken)
    assert stopped.value.exit_code == 1
    assert capsys.readouterr().err == "tasker: invalid server: pue must be >= 1\n"


def test_run_cli_shows_even_a_bug_as_one_line(capsys, monkeypatch):
    monkeypatch.delenv("TASKER_DEBUG", raising=False)

    async def buggy():
        return {}["missing"]

    with pytest.raises(typer.Exit):
        run_cli(buggy)
    assert capsys.readouterr().err == "tasker: unexpected error (KeyError): 'missing'\n"


def test_run_cli_unwraps_task_group_errors(capsys):
    import asyncio

    async def grouped():
        async def fail():
            raise Forbidden(403, "no")

        async with asyncio.TaskGroup() as group:
            group.create_task(fail())

    with pytest.raises(typer.Exit):
        run_cli(grouped)
    assert capsys.readouterr().err == "tasker: not allowed: no\n"
