"""The progress line a sensor prints while it runs: readings sent, buffered, dropped, last error."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TextIO


class ProgressLine:
    """Prints `describe()` every `every_s` seconds on stderr.

    On a terminal the line is rewritten in place; in a log (not a TTY) a new line is written
    every ten periods, so logs stay readable.
    """

    def __init__(self, describe: Callable[[], str], every_s: float = 1.0, out: TextIO | None = None):
        self.describe = describe
        self.every_s = every_s
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self._shown = False

    async def run(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(self.every_s)
            tick += 1
            if self.tty:
                self.out.write("\r\x1b[K" + self.describe())
                self._shown = True
            elif tick % 10 == 0:
                self.out.write(self.describe() + "\n")
            self.out.flush()

    def finish(self, summary: bool) -> None:
        """End the line: with the final figures when stopped, or just a newline before an error."""
        if summary:
            self.out.write(("\r\x1b[K" if self.tty else "") + self.describe() + "\n")
        elif self._shown:
            self.out.write("\n")
        self.out.flush()


async def run_reporting(
    work: list[Coroutine[Any, Any, None]], describe: Callable[[], str], every_s: float | None
) -> None:
    """Run `work` in one task group with a progress line (unless `every_s` is None).

    Stopped (cancelled): the final figures are printed once. Failed: the error propagates and
    the progress line stays out of its way.
    """
    progress = ProgressLine(describe, every_s) if every_s else None
    try:
        async with asyncio.TaskGroup() as group:
            for coro in work:
                group.create_task(coro)
            if progress is not None:
                group.create_task(progress.run())
    except asyncio.CancelledError:
        if progress is not None:
            progress.finish(summary=True)
        raise
    except BaseException:
        if progress is not None:
            progress.finish(summary=False)
        raise
