"""The progress line a sensor prints while it runs: readings sent, buffered, dropped, last error."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from typing import TextIO


async def report_progress(describe: Callable[[], str], every_s: float = 1.0, out: TextIO | None = None) -> None:
    """Print `describe()` every `every_s` seconds until cancelled.

    On a terminal the line is rewritten in place; in a log (not a TTY) a new line is written
    every ten periods, so logs stay readable.
    """
    stream = out or sys.stderr
    tty = stream.isatty()
    tick = 0
    try:
        while True:
            await asyncio.sleep(every_s)
            tick += 1
            if tty:
                stream.write("\r\x1b[K" + describe())
                stream.flush()
            elif tick % 10 == 0:
                stream.write(describe() + "\n")
                stream.flush()
    finally:
        # The final figures, always: what was sent, dropped or still buffered when stopped.
        stream.write(("\r\x1b[K" if tty else "") + describe() + "\n")
        stream.flush()
