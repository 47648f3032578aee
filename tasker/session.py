"""Where the shell commands and the TUI keep their session token between runs.

One file, `$XDG_CONFIG_HOME/tasker/session.json`, mode 0600, holding one session per backend
URL; a session is reused until it expires. `TASKER_TOKEN` in the environment wins over the file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tasker.config import xdg_config_home

# A session this close to expiry is treated as expired: a request made with it could fail midway.
EXPIRY_MARGIN_S = 30


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session token for one backend, with who it belongs to and when it expires."""

    url: str
    token: str
    username: str = ""
    role: str = ""
    expires_at_ms: int | None = None

    def expired(self, now_ms: int | None = None) -> bool:
        if self.expires_at_ms is None:
            return False
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return now >= self.expires_at_ms - EXPIRY_MARGIN_S * 1000


def session_file() -> Path:
    """Path of the session store (follows XDG_CONFIG_HOME at call time)."""
    return xdg_config_home() / "tasker" / "session.json"


def _key(url: str) -> str:
    return url.rstrip("/")


def parse_expiry(value: Any) -> int | None:
    """`expires_at` from the backend (epoch ms/s or RFC 3339) as epoch ms; None if absent/unknown."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        # Seconds and milliseconds are told apart by size: ms since 1970 are > 1e11 after 1973.
        return int(value if value > 1e11 else value * 1000)
    if isinstance(value, str) and value:
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def _read_all() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(session_file().read_text())
    except (OSError, ValueError):
        return {}
    sessions = data.get("sessions") if isinstance(data, dict) else None
    return sessions if isinstance(sessions, dict) else {}


def _write_all(sessions: dict[str, dict[str, Any]]) -> None:
    path = session_file()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".session.{os.getpid()}.tmp")
    # Create with 0600 from the start so the token is never readable by others, even briefly.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump({"sessions": sessions}, out, indent=2)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def load_session(url: str) -> StoredSession | None:
    """The stored, unexpired session for `url`, or None."""
    raw = _read_all().get(_key(url))
    if not isinstance(raw, dict) or not isinstance(raw.get("token"), str):
        return None
    session = StoredSession(
        url=_key(url),
        token=raw["token"],
        username=str(raw.get("username", "")),
        role=str(raw.get("role", "")),
        expires_at_ms=raw.get("expires_at_ms") if isinstance(raw.get("expires_at_ms"), int) else None,
    )
    return None if session.expired() else session


def save_session(url: str, login_answer: dict[str, Any]) -> StoredSession:
    """Store the answer of `POST /api/v1/auth/login` as the session for `url`."""
    session = StoredSession(
        url=_key(url),
        token=str(login_answer["token"]),
        username=str(login_answer.get("username", "")),
        role=str(login_answer.get("role", "")),
        expires_at_ms=parse_expiry(login_answer.get("expires_at")),
    )
    sessions = {k: v for k, v in _read_all().items() if k != session.url}
    sessions[session.url] = {k: v for k, v in asdict(session).items() if k != "url"}
    _write_all(sessions)
    return session


def forget_session(url: str) -> bool:
    """Remove the stored session for `url`; True if there was one."""
    sessions = _read_all()
    if sessions.pop(_key(url), None) is None:
        return False
    _write_all(sessions)
    return True


def resolve_token(url: str, environ: dict[str, str] | None = None) -> str | None:
    """The token to use for `url`: `TASKER_TOKEN` if set, else the stored unexpired session."""
    env = os.environ if environ is None else environ
    if env.get("TASKER_TOKEN"):
        return env["TASKER_TOKEN"]
    session = load_session(url)
    return session.token if session else None
