"""What happens to an error the TUI cannot handle: the traceback goes to a file, the user gets
one line on stderr naming that file, and the process exits non-zero.

Textual's own report is a full-screen traceback with local variables (a password being typed
among them); the file holds the plain traceback only, readable by its owner alone.
"""

from __future__ import annotations

import os
import traceback
from datetime import datetime, timezone
from pathlib import Path

EXIT_CODE = 1
LINE_LIMIT = 200  # characters of the error's message in the one line


def crash_dir() -> Path:
    """`$XDG_STATE_HOME/tasker` (default `~/.local/state/tasker`), read at call time."""
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "tasker"


def write_crash_report(error: BaseException) -> Path | None:
    """Write `error`'s traceback to a new file under `crash_dir()`; None when that failed."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    path = crash_dir() / f"tui-crash-{stamp}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write("".join(traceback.format_exception(error)))
    except OSError:
        return None
    return path


def crash_line(error: BaseException, report: Path | None) -> str:
    """The one line said on stderr after the terminal is restored."""
    message = " ".join(str(error).split())
    if len(message) > LINE_LIMIT:
        message = message[: LINE_LIMIT - 1] + "…"
    where = f"full traceback in {report}" if report else "the traceback could not be written to a file"
    return f"tasker tui: stopped by an unexpected error ({type(error).__name__}: {message}); {where}"
