"""A Tasker backend (and emulated sensors) run as child processes over one data directory.

Used by `tasker demo`, the TUI benchmark and the TUI's tests against a real backend. It drives
only the public command line (`tasker backend`, `tasker users add`, `tasker keys create`,
`tasker sensors emulate`); it imports nothing of the backend.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

TASKER = [sys.executable, "-c", "from tasker.cli import main; main()"]
LISTENING = re.compile(r"listening on (http://\S+)")


class StackError(Exception):
    """A child process failed to start or a command failed; the message says which and why."""


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class LocalStack:
    """Child processes of one embedded Tasker installation whose data lives in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.backend: subprocess.Popen | None = None
        self.sensors: subprocess.Popen | None = None
        self.url: str | None = None
        self.port: int | None = None
        self._log_offset = 0
        self.env = {
            **os.environ,
            "TASKER_BROKER_URL": "memory://",
            "TASKER_TIMESERIES_URL": f"sqlite:///{self.root / 'timeseries.db'}",
            "TASKER_REGISTRY_URL": f"sqlite:///{self.root / 'registry.db'}",
            # Children keep their sessions and settings here, never in the user's own config.
            "XDG_CONFIG_HOME": str(self.root / "config"),
            "XDG_DATA_HOME": str(self.root / "data"),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("TASKER_TOKEN", None)
        self.env.pop("TASKER_URL", None)

    # --- one-shot commands ------------------------------------------------------------------

    def _spawn(self, args: tuple[str, ...]) -> subprocess.Popen:
        return subprocess.Popen(
            [*TASKER, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    @staticmethod
    def _finish(args: tuple[str, ...], process: subprocess.Popen, stdin: str | None, timeout: float) -> str:
        out, err = process.communicate(stdin, timeout=timeout)
        if process.returncode != 0:
            reason = (err or out).strip().splitlines()
            raise StackError(f"`tasker {' '.join(args)}` failed: {reason[-1] if reason else process.returncode}")
        return out

    def run(self, *args: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run `tasker ARGS` against this stack's data; its stdout, or StackError with its stderr."""
        return self._finish(args, self._spawn(args), stdin, timeout)

    def provision(self, users: list[tuple[str, str, str]], key_label: str | None = None) -> str | None:
        """Create users (username, role, password) and an ingest key, all at once (each command
        is a process of its own, so they run in parallel); returns the key when asked for one."""
        commands: list[tuple[tuple[str, ...], str | None]] = [
            (("users", "add", username, "--role", role, "--password-stdin"), password + "\n")
            for username, role, password in users
        ]
        if key_label is not None:
            commands.append((("keys", "create", "--label", key_label), None))
        running = [(args, self._spawn(args), stdin) for args, stdin in commands]
        outputs = [self._finish(args, process, stdin, 60) for args, process, stdin in running]
        if key_label is None:
            return None
        keys = [line.strip() for line in outputs[-1].splitlines() if line.strip().startswith("tik_")]
        if not keys:
            raise StackError("`tasker keys create` printed no key")
        return keys[-1]

    # --- long-running children --------------------------------------------------------------

    def start_backend(self, port: int = 0, timeout: float = 30.0) -> str:
        """Start `tasker backend` on 127.0.0.1:`port` (0: any free port); returns its URL."""
        self.launch_backend(port)
        return self.wait_for_backend(timeout)

    def launch_backend(self, port: int = 0) -> None:
        """Start `tasker backend` without waiting (other set-up can run meanwhile)."""
        log_path = self.root / "backend.log"
        log = log_path.open("ab")
        self._log_offset = log_path.stat().st_size
        self.backend = subprocess.Popen(
            [*TASKER, "backend", "--listen", f"127.0.0.1:{port}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            start_new_session=True,  # a ctrl+c in the TUI's terminal is ours to handle, not theirs
        )
        log.close()

    def wait_for_backend(self, timeout: float = 30.0) -> str:
        """Wait until the launched backend says where it listens; returns its URL."""
        assert self.backend is not None, "launch the backend first"
        log_path = self.root / "backend.log"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with log_path.open("rb") as reader:
                reader.seek(self._log_offset)
                text = reader.read().decode("utf-8", "replace")
            found = LISTENING.search(text)
            if found:
                self.url = found.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                return self.url
            if self.backend.poll() is not None:
                last = text.strip().splitlines()[-1:] or ["(no output)"]
                raise StackError(f"the backend exited with code {self.backend.returncode}: {last[0]} (log: {log_path})")
            time.sleep(0.05)
        self.stop_backend()
        raise StackError(f"the backend did not start within {timeout:.0f} s (log: {log_path})")

    def restart_backend(self) -> str:
        """Start the backend again on the port it had (after `stop_backend`)."""
        assert self.port is not None, "start the backend first"
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.start_backend(self.port)

    def start_sensors(self, ingest_key: str, session_token: str, interval: float = 1.0, seed: int = 0) -> None:
        """`tasker sensors emulate` for every registered server of this backend."""
        assert self.url is not None, "start the backend first"
        log = (self.root / "sensors.log").open("ab")
        # the key goes in the environment: on the command line any user could read it in `ps`
        env = {**self.env, "TASKER_URL": self.url, "TASKER_TOKEN": session_token, "TASKER_INGEST_KEY": ingest_key}
        self.sensors = subprocess.Popen(
            [*TASKER, "sensors", "emulate", "--interval", str(interval), "--seed", str(seed), "--quiet"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        log.close()

    @staticmethod
    def _stop(process: subprocess.Popen | None, grace_s: float = 5.0) -> None:
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop_backend(self) -> None:
        self._stop(self.backend)
        self.backend = None

    def stop_sensors(self) -> None:
        self._stop(self.sensors)
        self.sensors = None

    def close(self) -> None:
        """Stop every child this stack started (sensors first, so they do not retry in vain)."""
        self.stop_sensors()
        self.stop_backend()

    def __enter__(self) -> LocalStack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
