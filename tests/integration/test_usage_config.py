"""A sysadmin's first mistakes in configuration: every bad TASKER_* value stops `tasker backend`
(and the shell commands) with one line naming the variable and what is expected, a non-zero
exit, and never a traceback or a password."""

from __future__ import annotations

import re
import socket
import subprocess

import pytest

from tests.integration.backend_rig import TASKER

pytestmark = pytest.mark.timeout(120)

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ (INFO|WARNING) ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def env(tmp_path):
    """An embedded installation in a scratch directory, on a free port."""
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "TASKER_LISTEN": f"127.0.0.1:{free_port()}",
    }


def run(env: dict[str, str], *args: str, timeout: float = 60, **extra: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run([TASKER, *args], env={**env, **extra}, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode("utf-8", "replace") if isinstance(exc.stderr, bytes) else exc.stderr
        raise AssertionError(
            f"`tasker {' '.join(args)}` still running after {timeout:g} s; its stderr:\n{said}"
        ) from None


def the_error(result: subprocess.CompletedProcess) -> str:
    """The one line the user is told (log lines of retries aside), after checking the exit."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "variable, value, says",
    [
        ("TASKER_BROKER_URL", "amqp://guest:s3cret@[::1", "cannot be parsed"),
        ("TASKER_BROKER_URL", "amqp://", "no host"),
        ("TASKER_BROKER_URL", "amqp://guest:s3cret@127.0.0.1:99999/", "port '99999' is not a number from 1 to 65535"),
        ("TASKER_TIMESERIES_URL", "cassandra://127.0.0.1:99999/qa", "port '99999'"),
        ("TASKER_REGISTRY_URL", "mongodb://127.0.0.1:27017/bad.db$", "database name 'bad.db$'"),
        ("TASKER_LISTEN", "127.0.0.1:99999", "port from 0 to 65535"),
        ("TASKER_RETENTION_DAYS", "-5", "at least 1"),
    ],
)
def test_an_unusable_value_is_one_line_naming_the_variable(env, variable, value, says):
    line = the_error(run(env, "backend", **{variable: value}))
    assert line.startswith(f"tasker: {variable}=") and says in line and "expected" in line
    assert "s3cret" not in line


def test_a_sqlite_file_where_no_file_can_be_written_fails_at_once(env, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite:///{blocker}/ts.db"
    line = the_error(run(env, "backend", "--startup-timeout", "0", TASKER_TIMESERIES_URL=url))
    assert line == (
        f"tasker: TASKER_TIMESERIES_URL={url!r}: {blocker} is a file, not a directory;"
        " expected sqlite:///path/to/file.db in a writable directory"
    )
    missing = the_error(run(env, "backend", TASKER_TIMESERIES_URL="sqlite:////proc/no-such-dir/ts.db"))
    assert missing.startswith(
        "tasker: TASKER_TIMESERIES_URL='sqlite:////proc/no-such-dir/ts.db': cannot create the"
        " directory /proc/no-such-dir: No such file or directory;"
    )
    directory = the_error(run(env, "keys", "list", TASKER_REGISTRY_URL=f"sqlite:///{tmp_path}"))
    assert directory.startswith("tasker: TASKER_REGISTRY_URL=") and "is a directory" in directory


def test_an_unreachable_service_is_retried_visibly_then_given_up_with_one_line(env):
    port = free_port()  # nothing listens there
    result = run(env, "backend", "--startup-timeout", "2", TASKER_BROKER_URL=f"amqp://guest:s3cret@127.0.0.1:{port}/")
    line = the_error(result)
    masked = f"TASKER_BROKER_URL='amqp://guest:***@127.0.0.1:{port}/'"
    assert line.startswith(f"tasker: {masked}: the broker did not answer within 2 s (")
    assert line.endswith("is it running, and is the URL right?")
    retries = [x for x in result.stderr.splitlines() if LOG_LINE.match(x) and "WARNING" in x]
    assert retries and all(masked in x and "retrying in" in x for x in retries), result.stderr
    assert "s3cret" not in result.stderr


def test_an_unresolvable_cassandra_host_is_retried_not_a_traceback(env):
    result = run(
        env, "backend", "--startup-timeout", "1", TASKER_TIMESERIES_URL="cassandra://no-such-host.invalid:9042/qa"
    )
    assert "cannot resolve host 'no-such-host.invalid'" in the_error(result)


def test_a_port_in_use_is_named_and_no_admin_password_is_shown(env):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        result = run(env, "backend", TASKER_LISTEN=address)
    line = the_error(result)
    assert line == (
        f"tasker: TASKER_LISTEN={address!r}: cannot listen on {address}: address already in use"
        " (is another tasker backend running there?)"
    )
    assert "password" not in result.stdout.lower()


def test_shell_commands_name_a_bad_backend_url(env):
    line = the_error(run(env, "servers", "list", TASKER_URL="http://127.0.0.1:99999"))
    assert line.startswith("tasker: TASKER_URL='http://127.0.0.1:99999': port '99999'")
    flag = the_error(run(env, "history", "web-1", "--url", "http://[::1"))
    assert flag.startswith("tasker: --url 'http://[::1': cannot be parsed")
