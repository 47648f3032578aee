"""Group commit: the parts of many concurrent callers go out in few writes.

The packager uses it to write the readings of many broker messages in one store write, ingest
to publish the readings of many POSTs in one broker message. A caller's `submit` returns once a
write holding its part succeeded, with what that write returned. At light load a part is written alone, at once; while
`max_writes` writes are in flight, arriving parts wait in a group that grows to `max_size`, and
the group goes out as soon as a write finishes, so under load each write carries as much as
it can, which is what makes the store and the broker cheap per reading. With `busy_size`, a
second write starts only while fewer parts than that are being written: small writes overlap
(low latency at light load), large ones go one at a time (the largest groups under load).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

P = TypeVar("P")
R = TypeVar("R")

_ALONE: Any = object()  # a group's outcome when each caller must write its part alone


class _Group(Generic[P, R]):
    """Parts of several callers, written together; `done` settles once they are written, with
    the write's result, or _ALONE if each caller must write its part alone (the group was
    refused)."""

    __slots__ = ("parts", "size", "done")

    def __init__(self) -> None:
        self.parts: list[P] = []
        self.size = 0
        self.done: asyncio.Future[R] = asyncio.get_running_loop().create_future()


class GroupCommit(Generic[P, R]):
    """Coalesces the parts of concurrent callers into few writes.

    `write(parts)` writes a list of parts as one; every caller of the group gets what it returns
    (the packager: the rollup recomputation its readings wait for). An exception it raises
    reaches every caller of the group, except ValueError (content refused, which no retry
    changes): then each caller writes its own part alone, so only the offending one sees the
    error. `size(part)` counts what a part adds to a group (readings, for both users).
    """

    def __init__(
        self,
        write: Callable[[list[P]], Awaitable[R]],
        size: Callable[[P], int],
        max_size: int,
        max_writes: int,
        what: str = "write",
        busy_size: int | None = None,
    ) -> None:
        if max_size < 1 or max_writes < 1:
            raise ValueError("max_size and max_writes must be at least 1")
        self._write = write
        self._size = size
        self.max_size = max_size
        self.max_writes = max_writes
        self.busy_size = busy_size
        self.what = what
        self._waiting: deque[_Group[P, R]] = deque()  # oldest first; the last one still takes parts
        self._writing: dict[asyncio.Task[None], int] = {}  # write -> size of its group
        self._room = asyncio.Event()
        self._room.set()

    def _full(self) -> bool:
        # A full group still waiting could not start: every slot it may use is busy.
        return bool(self._waiting) and self._waiting[-1].size >= self.max_size

    def _may_start(self, group: _Group[P, R]) -> bool:
        if not self._writing:
            return True
        if len(self._writing) >= self.max_writes:
            return False
        return self.busy_size is None or sum(self._writing.values()) + group.size < self.busy_size

    async def room(self) -> None:
        """Wait while a full group is waiting for a write slot, so at most `max_writes + 1`
        groups are in memory (a caller can hold its part back, e.g. as
        undecoded bytes, until there is room)."""
        while self._full():
            self._room.clear()
            await self._room.wait()

    async def submit(self, part: P) -> R:
        """Return what a write holding `part` returned once it succeeded; raise what it raised."""
        if not self._waiting or self._waiting[-1].size >= self.max_size:
            self._waiting.append(_Group())
        group = self._waiting[-1]
        group.parts.append(part)
        group.size += self._size(part)
        self._start_writes()
        # Shielded: a caller cancelled while waiting (its consumer stopped, its client left)
        # must not cancel the write the other callers of the group wait for.
        result = await asyncio.shield(group.done)
        if result is _ALONE:
            return await self._write([part])
        return result

    def _start_writes(self) -> None:
        while self._waiting and self._may_start(self._waiting[0]):
            group = self._waiting.popleft()
            task = asyncio.create_task(self._write_group(group), name=f"group-{self.what}")
            self._writing[task] = group.size
            task.add_done_callback(self._write_done)

    def _write_done(self, task: asyncio.Task[None]) -> None:
        self._writing.pop(task, None)
        self._start_writes()
        if not self._full():
            self._room.set()

    async def _write_group(self, group: _Group[P, R]) -> None:
        started = time.perf_counter()
        try:
            result = await self._write(group.parts)
        except ValueError as exc:
            if len(group.parts) > 1:
                group.done.set_result(_ALONE)
            else:
                group.done.set_exception(exc)
            return
        except asyncio.CancelledError:
            group.done.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - every caller of the group hears of it
            group.done.set_exception(exc)
            return
        log.debug(
            "%s of %d parts (%d) in %.3f s; %d writing, %d waiting",
            self.what,
            len(group.parts),
            group.size,
            time.perf_counter() - started,
            len(self._writing),
            len(self._waiting),
        )
        group.done.set_result(result)

    async def close(self) -> None:
        """Cancel the writes in flight; their callers see CancelledError."""
        tasks = list(self._writing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for group in self._waiting:
            group.done.cancel()
        self._waiting.clear()
