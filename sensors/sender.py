"""Getting readings to the backend through outages: a bounded buffer, batches, retry with backoff.

- `submit()` never blocks: readings go into a buffer bounded at `max_buffer`, a batch in flight
  included; when full, the oldest are dropped and counted (a sensor's freshest readings matter
  most). The batch in flight holds the oldest readings but cannot be recalled: those of its
  readings over the bound are dropped when it comes back unaccepted, and just sent if accepted.
- `run()` posts batches of at most `batch_size`. A batch leaves the buffer only once the backend
  accepted it (202), so nothing accepted is ever sent again.
- 503, connection errors and timeouts: the batch goes back to the front, retried with
  exponential backoff (with jitter, capped).
- 400: logged with the backend's reason and not retried. When the backend names the bad items
  by index, only those are dropped; the rest of the batch (all valid) is sent again.
- 413: the batch size is halved and the same readings are sent again.
- 401/403: the credentials are wrong; retrying cannot help, so `run()` raises `SenderRefused`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from tasker.backoff import RetryBackoff
from tasker.client import (
    ApiError,
    BackendUnavailable,
    Forbidden,
    PayloadTooLarge,
    TaskerClient,
    Unauthorized,
    ValidationFailed,
)

log = logging.getLogger("tasker.sensors")

# A reading as buffered: (server_id, metric, ts_ms, value). Tuples keep 100k buffered cheap.
Item = tuple[str, str, int, float]


class SenderRefused(Exception):
    """The backend refused the sensor's credentials (401/403); the message says what to do."""

    user_facing = True  # shown to the user as one line by the CLI


def sensor_backoff(first: float = 0.5, cap: float = 15.0) -> RetryBackoff:
    """The sensors' retry delays: first, first*2, ... up to `cap` seconds, each spread by ±20%
    so that a fleet of sensors that lost the backend together does not come back in step."""
    return RetryBackoff(first, cap, jitter=0.2)


@dataclass(slots=True)
class SenderStats:
    """What a user watching the sensor wants to know."""

    sent: int = 0
    """Readings the backend accepted (202)."""
    dropped: int = 0
    """Readings dropped because the buffer was full (oldest first)."""
    dropping: int = 0
    """Readings of the batch in flight that are over the bound: dropped unless the backend accepts them."""
    rejected: int = 0
    """Readings the backend refused as invalid (400); not retried."""
    buffered: int = 0
    """Readings waiting to be sent (including a batch in flight, less those counted in `dropping`)."""
    last_error: str = ""
    last_error_at: float = 0.0

    def line(self) -> str:
        """One progress line: sent, buffered, dropped, rejected, last error."""
        text = f"sent {self.sent}  buffered {self.buffered}  dropped {self.dropped}"
        if self.dropping:
            text += f" (+{self.dropping} unless the post in flight is accepted)"
        if self.rejected:
            text += f"  rejected {self.rejected}"
        if self.last_error:
            ago = time.monotonic() - self.last_error_at
            text += f"  last error ({ago:.0f}s ago): {self.last_error}"
        return text


def encode_batch(items: Iterable[Item]) -> bytes:
    """The body of `POST /api/v1/readings` for buffered items."""
    return json.dumps(
        {"readings": [{"server_id": s, "metric": m, "ts": t, "value": v} for s, m, t, v in items]},
        separators=(",", ":"),
    ).encode()


class ReadingSender:
    """Buffers readings and posts them in batches; see the module docstring for the rules."""

    def __init__(
        self,
        client: TaskerClient,
        *,
        max_buffer: int = 100_000,
        batch_size: int = 2_000,
        backoff: RetryBackoff | None = None,
    ):
        if max_buffer < 1 or batch_size < 1:
            raise ValueError("max_buffer and batch_size must be positive")
        self.client = client
        self.max_buffer = max_buffer
        self.batch_size = batch_size
        self.backoff = backoff or sensor_backoff()
        self.stats = SenderStats()
        self._buffer: deque[Item] = deque()
        # The batch in flight is always older than the buffer; its first `_over_bound` readings are
        # the ones over `max_buffer`.
        self._in_flight = 0
        self._over_bound = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- filling ----------------------------------------------------------------------------

    def submit(self, items: Iterable[Item]) -> None:
        """Queue readings for sending; drops (and counts) the oldest when over the bound."""
        buffer = self._buffer
        buffer.extend(items)
        self._trim()
        if buffer:
            self._idle.clear()
            self._wake.set()
        self._count()

    def _trim(self) -> None:
        """Bring buffered + in flight within `max_buffer`, oldest first (the batch in flight, then the buffer)."""
        over = len(self._buffer) + self._in_flight - self._over_bound - self.max_buffer
        if over <= 0:
            return
        # A post cannot be recalled: mark its readings now, count them once it is known they were not accepted.
        marked = min(over, self._in_flight - self._over_bound)
        self._over_bound += marked
        over -= marked
        for _ in range(over):
            self._buffer.popleft()
        self.stats.dropped += over

    def _count(self) -> None:
        self.stats.buffered = len(self._buffer) + self._in_flight - self._over_bound
        self.stats.dropping = self._over_bound

    # --- sending ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Post until cancelled. Raises SenderRefused when the credentials are refused."""
        buffer = self._buffer
        while True:
            if not buffer:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            n = min(self.batch_size, len(buffer))
            batch = [buffer.popleft() for _ in range(n)]
            self._in_flight = n
            try:
                await self._post(batch)
            finally:
                # Unless put back, the batch was accepted or rejected: none of it counts as dropped.
                self._in_flight = self._over_bound = 0
                self._count()

    async def _post(self, batch: list[Item]) -> None:
        try:
            await self.client.post_readings_body(encode_batch(batch))
        except ValidationFailed as exc:
            self._rejected(batch, exc)
        except PayloadTooLarge as exc:
            self._put_back(batch)
            self.batch_size = max(1, len(batch) // 2)
            self._error(f"batch of {len(batch)} too large ({exc.message}); now sending {self.batch_size} at a time")
        except (Unauthorized, Forbidden) as exc:
            self._put_back(batch)
            self._error(exc.message)
            raise SenderRefused(
                f"the backend refused the ingest key ({exc.message}); create one with `tasker keys create`"
                " and pass it in TASKER_INGEST_KEY or with --key-file"
            ) from None
        except (BackendUnavailable, ApiError) as exc:
            # Unknown statuses are treated like outages: the readings are kept and retried.
            self._put_back(batch)
            if isinstance(exc, BackendUnavailable):
                self._error(exc.message)
            elif exc.status == 404:
                self._error(
                    f"{self.client.base_url} does not take readings (404): is its ingest role running?"
                    " (--ingest-url names the ingest process)"
                )
            else:
                self._error(f"HTTP {exc.status}: {exc.message}")
            await asyncio.sleep(self.backoff.failed())
        else:
            self.stats.sent += len(batch)
            self.backoff.succeeded()

    def _put_back(self, batch: list[Item]) -> None:
        # Back in front, the readings marked over the bound are the oldest: the trim drops and counts them.
        self._in_flight = self._over_bound = 0
        self._buffer.extendleft(reversed(batch))
        self._trim()
        self._count()

    def _rejected(self, batch: list[Item], exc: ValidationFailed) -> None:
        bad = {d["index"] for d in exc.details if isinstance(d.get("index"), int) and 0 <= d["index"] < len(batch)}
        self._error(f"backend rejected a batch: {exc.describe()}")
        log.warning("backend rejected %d readings: %s", len(bad) or len(batch), exc.describe())
        if not bad:
            self.stats.rejected += len(batch)
            return
        # The backend named the bad items: drop just those, the others were never accepted.
        self.stats.rejected += len(bad)
        self._put_back([item for i, item in enumerate(batch) if i not in bad])

    def _error(self, text: str) -> None:
        self.stats.last_error = text
        self.stats.last_error_at = time.monotonic()

    async def drain(self, timeout: float) -> bool:
        """Wait until everything buffered is accepted (or dropped); False on timeout.

        Only meaningful while `run()` is running.
        """
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True
