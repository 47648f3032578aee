"""The ports: what the backend's core needs from a broker and from its two stores.

Each port has an embedded adapter (in-process queue, SQLite) and a distributed one (RabbitMQ,
Cassandra, MongoDB) under `backend/adapters/`; both pass the same contract tests under
`tests/contract/`. The core (`backend/services/`, `backend/roles/`) imports only this module,
never a driver.

Every method may raise `Unavailable` when the service behind it cannot be reached; callers
retry with backoff (packager) or answer 503 (HTTP).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tasker.domain import Reading


class Unavailable(Exception):
    """The broker or a store cannot be reached right now. The message says which and why."""


class Conflict(Exception):
    """A write broke a uniqueness rule (e.g. a server name already taken)."""


class NotFound(Exception):
    """The thing asked for does not exist."""


class Undecodable(Exception):
    """A broker message cannot be decoded; the consumer dead-letters it instead of retrying."""


# --- broker -----------------------------------------------------------------------------------


class Delivery(Protocol):
    body: bytes
    redelivered: bool


# A work handler returns normally -> the message is acked. It raises Undecodable -> the message
# goes to the dead-letter queue (and is counted). Anything else -> the message is requeued
# (nacked) and delivered again, to this or another consumer, after the handler's own backoff.
WorkHandler = Callable[[Delivery], Awaitable[None]]
EventHandler = Callable[[bytes], Awaitable[None]]


class Broker(Protocol):
    """Durable work queues (one per metric) plus best-effort fan-out events.

    Work queues: `publish_work` returns only once the broker has durably accepted the message
    (publisher confirm); `consume_work` delivers each message to exactly one of the competing
    consumers (across processes, for RabbitMQ) with at most `prefetch` unacked at a time, and
    redelivers it if the consumer fails or dies before acking.

    Events (`publish_event` / `subscribe_events`): every subscriber that is connected receives
    every event published on that channel after it subscribed; nothing is stored for absent ones.
    Used for live readings and chat fan-out between `api` processes.
    """

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Return if the broker answers; raise Unavailable (with the reason) otherwise."""

    async def publish_work(self, queue: str, body: bytes) -> None: ...

    async def consume_work(self, queue: str, handler: WorkHandler, prefetch: int) -> None:
        """Start consuming in the background; returns once the consumer is registered."""

    async def dead_letter(self, queue: str, body: bytes, reason: str) -> None:
        """Put `body` in the dead-letter queue as a message refused from work queue `queue`, with
        `reason`, and count it in `dead_lettered`; return once the broker holds it as it holds
        its other dead letters (RabbitMQ: persistent and confirmed; the embedded broker: in
        memory, for inspection) or raise Unavailable. The packager sends the readings a store refuses
        this way, alone, then acks the message they came in, whose other readings are stored."""

    async def publish_event(self, channel: str, body: bytes) -> None: ...

    async def subscribe_events(self, channel: str, handler: EventHandler) -> None: ...

    async def queue_depth(self, queue: str) -> int:
        """Messages waiting (not yet delivered or unacked) in a work queue."""

    def dead_lettered(self) -> int:
        """Messages this process sent to the dead-letter queue since it started (whole
        undecodable messages and `dead_letter` calls alike)."""


# --- time series ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """A downsampled range: buckets of `resolution_s` seconds as (start_ms, min, avg, max)."""

    resolution_s: int
    points: list[tuple[int, float, float, float]]


@dataclass(frozen=True, slots=True)
class RawPage:
    """Raw readings newest first, and the cursor of the next (older) page, None at the end."""

    readings: list[Reading]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Latest:
    ts_ms: int
    value: float


MinuteBucket = tuple[str, str, int]
"""A 60 s rollup bucket: (server_id, metric, start_ms), start_ms a multiple of 60,000."""

_MINUTE_MS = 60_000  # backend.downsample.MINUTE_MS (which imports this module)


def minutes_of(readings: Iterable[Reading]) -> set[MinuteBucket]:
    """The 60 s buckets `readings` fall in: what `recompute_rollups` must cover after they are
    written raw."""
    return {(r.server_id, r.metric, r.ts_ms - r.ts_ms % _MINUTE_MS) for r in readings}


class TimeSeriesStore(Protocol):
    """Readings, their rollups and each server's latest values.

    `write` is an idempotent upsert keyed by (server_id, metric, ts_ms): writing a reading twice,
    from one packager or two at once, leaves one reading; rollups (at least 60 s and 3600 s
    buckets with min/avg/max/count) stay equal to an aggregate of the raw readings.

    What a reader sees: once `write` returns, its readings are in raw queries, every 60 s and
    3600 s bucket it touched has been recomputed from the raw rows as they stood when that
    recomputation began, and `latest` holds the newest of them (unless a newer reading was
    there). Writes racing on one bucket (two packagers, a redelivery) each recompute it after
    their raw rows are in, and the recomputation that began last wins, so once the writes have
    returned the rollups equal an aggregate of the raw readings; until then a reader may see a
    bucket without the readings of a write still in progress (SQLite, with one transaction
    per write, never shows that). The packager hands many messages to one `write` and acks them
    only after it returns, so under load a reading becomes queryable a write's duration later.
    The packager itself uses `write_raw` and `recompute_rollups` (see there): raw queries and
    `latest` see a reading once `write_raw` returns, the rollups once the recomputation
    covering its minute has returned, and the packager acks only after both.
    """

    async def start(self) -> None:
        """Connect and create/migrate the schema, idempotently."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    async def write(self, readings: Sequence[Reading]) -> None:
        """Store readings (any mix of servers and metrics) with their rollups: `write_raw`,
        then `recompute_rollups` of every minute they touch. Return only once durable. Raises
        ValueError for readings the store cannot hold (e.g. a value beyond Cassandra's 32-bit
        float), which no retry would change: the packager dead-letters their message."""

    async def write_raw(self, readings: Sequence[Reading]) -> None:
        """Store readings and latest values like `write`, without touching the rollups: the
        caller owes a `recompute_rollups` covering `minutes_of(readings)`. The packager writes
        this way and recomputes the minutes dirtied by many writes together, at most once per
        interval (`backend.services.rollups`); until then history of those minutes lags."""

    async def recompute_rollups(
        self, minutes: Collection[MinuteBucket], hours_of: Collection[MinuteBucket] | None = None
    ) -> None:
        """Recompute each given 60 s bucket from its raw rows as they stand when the
        recomputation begins, then each 3600 s bucket holding one of `hours_of` (by default
        `minutes`; the packager passes the minutes of several earlier rounds, or none) from its
        60 s rollups. Of recomputations racing on a bucket, the one that began last wins.
        Return once durable."""

    async def history(self, server_id: str, metric: str, from_ms: int, to_ms: int, max_points: int) -> Series:
        """The range [from_ms, to_ms) at the coarsest of the store's resolutions (1 s raw,
        60 s, 3600 s) that still gives at least `max_points` buckets, then downsampled server
        side to at most `max_points` epoch-aligned buckets. Raw rows are read only for ranges
        of 6 h or less, and a rollup only when it needs at most 50,000 rows (the rule lives in
        `backend/downsample.py`). Raises ValueError for an empty range or max_points < 1."""

    async def raw(
        self,
        server_id: str,
        metric: str,
        from_ms: int,
        to_ms: int,
        limit: int,
        cursor: str | None = None,
    ) -> RawPage:
        """Raw readings in [from_ms, to_ms), newest first, `limit` per page; the cursor is opaque."""

    async def latest(self, server_ids: Sequence[str] | None = None) -> dict[tuple[str, str], Latest]:
        """Each server's newest value per metric (for the fleet view), keyed by (server, metric)."""

    async def purge(self, server_id: str) -> None:
        """Delete every reading and rollup of a server (`tasker servers rm --purge`)."""


# --- registry ---------------------------------------------------------------------------------


@dataclass(slots=True)
class ServerRecord:
    """A registered server as stored; validation happens before it gets here."""

    id: str
    name: str
    region: str
    site: str
    energy_source: str
    carbon_intensity_g_per_kwh: float
    carbon_intensity_source: str
    pue: float
    idle_watts: float
    max_watts: float
    cores: int
    tags: list[str]
    created_at_ms: int
    created_by: str
    updated_at_ms: int
    owner: str = ""
    """The user who may change and delete it (admins may too); an admin can hand it over.
    Empty in records stored before servers had owners: then `created_by` owns it."""


@dataclass(slots=True)
class AuditRecord:
    """One change to the registry: who did what to which thing, and when."""

    id: str
    """Sortable by time: zero-padded ts_ms, then random characters (unique in both registries)."""
    ts_ms: int
    actor: str
    action: str
    """e.g. server.added, server.updated, server.removed, server.purged, server.transferred."""
    target: str
    detail: str


@dataclass(slots=True)
class UserRecord:
    username: str
    role: str  # admin | sysadmin | engineer
    password_hash: str
    created_at_ms: int
    must_change_password: bool = False
    """Every call but the password change is refused (403) until the user chooses a new one:
    the first admin, accounts made with a generated password, a password the policy refuses."""
    disabled_at_ms: int | None = None
    """Set while the account is disabled: it cannot log in and its sessions are refused."""
    password_changed_at_ms: int | None = None
    """When the password was last set after the account was made (None: never)."""


@dataclass(slots=True)
class SessionRecord:
    token_hash: str
    username: str
    role: str
    expires_at_ms: int
    created_at_ms: int
    client: str = ""
    """The address the login came from, as the api process saw it ("" if unknown)."""


@dataclass(slots=True)
class IngestKeyRecord:
    key_id: str
    key_hash: str
    label: str
    created_by: str
    created_at_ms: int
    revoked_at_ms: int | None = None
    server_id: str | None = None
    """The one server whose readings this key may post and whose agent it may act as; None:
    readings for any server, and no agent."""


@dataclass(slots=True)
class ChatMessage:
    conversation: str  # the sysadmin's username: one support conversation each
    id: int  # server-assigned, 1, 2, 3, ... per conversation, without gaps (both adapters)
    sender: str
    sender_role: str
    text: str
    ts_ms: int
    client_key: str  # client-generated idempotency key
    extra: dict[str, Any] = field(default_factory=dict)


TASK_STATES = ("queued", "planned", "running", "done", "failed", "cancelled", "unschedulable")
"""A task's life: queued (not placed yet), planned, running, then done or failed; cancelled by
its owner; unschedulable (with the reason) when no server can meet its constraints."""
OPEN_STATES = frozenset({"queued", "planned", "unschedulable"})
"""States the scheduler re-plans on every round (running tasks keep or resume their place)."""
FINISHED_TASK_STATES = frozenset({"done", "failed", "cancelled"})
"""States a task is left in for good (unless a writer changes it again)."""
TASK_VERSION_KEEP_MS = 10 * 60_000
"""How long MongoDB keeps a superseded task version (see `Registry.update_task`)."""


def no_plan() -> dict[str, Any]:
    """The plan fields of a task with no placement (submitted, queued again, unschedulable)."""
    return {
        "server_id": None,
        "pieces": [],
        "co2_g": None,
        "energy_kwh": None,
        "run_now_co2_g": None,
        "run_now_server_id": None,
        "explanation": "",
    }


@dataclass(slots=True)
class TaskRecord:
    """A submitted task and its current plan; validation happens before it gets here.

    Every write bumps `version` (compare-and-set, see `Registry.update_task`); `plan_epoch` is
    the scheduler lease epoch under which the plan fields were last written (0: never planned).
    `pieces` are [start_ms, end_ms) intervals on `server_id`.
    """

    id: str
    name: str
    owner: str
    cores: int
    duration_s: int
    earliest_start_ms: int
    deadline_ms: int
    interruptible: bool
    regions: list[str]
    tags: list[str]
    command: list[str] | None
    state: str
    reason: str
    server_id: str | None
    pieces: list[list[int]]
    co2_g: float | None
    energy_kwh: float | None
    run_now_co2_g: float | None
    run_now_server_id: str | None
    explanation: str
    plan_epoch: int
    created_at_ms: int
    updated_at_ms: int
    version: int
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    cwd: str | None = None
    """Working directory the agent starts `command` in (None: the agent's own)."""
    env: dict[str, str] = field(default_factory=dict)
    """Variables the agent adds to its environment for `command`."""
    runs: list[list[int]] = field(default_factory=list)
    """[start_ms, end_ms) intervals the task really ran, as its agent reported them."""
    run_since_ms: int | None = None
    """Start of the run in progress (None: not running, or paused)."""
    exit_code: int | None = None
    output_tail: str = ""
    """The last few KiB of the command's stdout and stderr, from its agent."""
    agent_epoch: int = 0
    """The `agent:{server}` lease epoch under which the last run event was accepted."""
    measured_co2_g: float | None = None
    """CO2 attributed to the task from its server's power readings over its runs."""
    measured_energy_kwh: float | None = None
    measured_at_ms: int | None = None
    """When the measurement was made (None: not yet)."""

    @classmethod
    def submitted(
        cls,
        *,
        id: str,
        name: str,
        owner: str,
        cores: int,
        duration_s: int,
        earliest_start_ms: int,
        deadline_ms: int,
        interruptible: bool,
        now_ms: int,
        regions: list[str] | None = None,
        tags: list[str] | None = None,
        command: list[str] | None = None,
        reason: str = "",
        **extra: Any,
    ) -> TaskRecord:
        """A task just submitted: queued, with no plan, at version 1."""
        return cls(
            id=id,
            name=name,
            owner=owner,
            cores=cores,
            duration_s=duration_s,
            earliest_start_ms=earliest_start_ms,
            deadline_ms=deadline_ms,
            interruptible=interruptible,
            regions=regions or [],
            tags=tags or [],
            command=command,
            state="queued",
            reason=reason,
            **no_plan(),
            plan_epoch=0,
            created_at_ms=now_ms,
            updated_at_ms=now_ms,
            version=1,
            **extra,
        )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """Who holds a named lease, until when, under which fencing epoch."""

    name: str
    holder: str
    epoch: int
    expires_at_ms: int


class Registry(Protocol):
    """Servers, users, sessions, ingest keys, chat messages, tasks, leases and grid traces.

    Only plain values cross this port: adapters never interpret a field's content as a query
    (no operator injection into MongoDB, no string-built SQL).
    """

    async def start(self) -> None:
        """Connect and create indexes/tables, idempotently."""

    async def close(self) -> None: ...

    async def ping(self) -> None: ...

    # servers
    async def add_server(self, server: ServerRecord) -> None:
        """Raises Conflict when the name (or id) is taken."""

    async def get_server(self, server_id: str) -> ServerRecord:
        """Raises NotFound."""

    async def list_servers(self) -> list[ServerRecord]: ...

    async def replace_server(self, server: ServerRecord) -> None:
        """Overwrite by id. Raises NotFound, or Conflict when the new name is taken."""

    async def delete_server(self, server_id: str) -> None:
        """Raises NotFound."""

    async def server_ids(self) -> set[str]:
        """Ids of every registered server (ingest validates against it, cached briefly)."""

    # users and sessions
    async def add_user(self, user: UserRecord) -> None:
        """Raises Conflict when the username is taken."""

    async def get_user(self, username: str) -> UserRecord | None: ...

    async def list_users(self) -> list[UserRecord]: ...

    async def set_password_hash(
        self, username: str, password_hash: str, *, must_change_password: bool = False, changed_at_ms: int | None = None
    ) -> None:
        """Replace a user's password hash and set its must-change flag (and, when given, when it
        changed). Raises NotFound."""

    async def set_must_change_password(self, username: str, must_change: bool) -> None:
        """Set or clear the flag alone (the hash is left as it is). Raises NotFound."""

    async def set_user_disabled(self, username: str, disabled_at_ms: int | None) -> None:
        """Disable a user from `disabled_at_ms` (a second disable keeps the first time), or
        enable it with None. Raises NotFound."""

    async def delete_user(self, username: str) -> None:
        """Forget a user (its sessions are the caller's to delete). Raises NotFound."""

    async def add_session(self, session: SessionRecord) -> None: ...

    async def get_session(self, token_hash: str) -> SessionRecord | None:
        """The session, expired or not; the caller checks expiry."""

    async def delete_session(self, token_hash: str) -> None: ...

    async def list_sessions(self, username: str) -> list[SessionRecord]:
        """The user's sessions, expired or not, oldest first ([] for an unknown user)."""

    async def delete_user_sessions(self, username: str, keep: str | None = None) -> int:
        """Delete every session of `username` except the one whose token hash is `keep`;
        returns how many went."""

    async def purge_expired_sessions(self, now_ms: int) -> int:
        """Delete every session with expires_at_ms <= now_ms; returns how many went. (FerretDB
        has no TTL index, so the auth service calls this periodically.)"""

    # ingest keys
    async def add_ingest_key(self, key: IngestKeyRecord) -> None: ...

    async def get_ingest_key(self, key_id: str) -> IngestKeyRecord | None: ...

    async def list_ingest_keys(self) -> list[IngestKeyRecord]: ...

    async def revoke_ingest_key(self, key_id: str, at_ms: int) -> None:
        """Raises NotFound."""

    # chat
    async def append_chat(
        self,
        conversation: str,
        sender: str,
        sender_role: str,
        text: str,
        ts_ms: int,
        client_key: str,
        extra: dict[str, Any] | None = None,
    ) -> tuple[ChatMessage, bool]:
        """Store a message with the next id of its conversation. When a message with the same
        (conversation, sender, client_key) exists, store nothing and return it with False;
        otherwise return the new message with True. Ids never repeat or go backwards, even with
        two api processes appending at once."""

    async def chat_after(self, conversation: str, after_id: int, limit: int) -> list[ChatMessage]:
        """Messages with id > after_id, oldest first."""

    async def chat_before(self, conversation: str, before_id: int | None, limit: int) -> list[ChatMessage]:
        """The `limit` messages just before before_id (or the newest), oldest first."""

    async def list_conversations(self) -> list[tuple[str, int, int]]:
        """(conversation, last id, last ts_ms) of every conversation, newest activity first."""

    async def set_read_marker(self, conversation: str, username: str, last_read_id: int) -> None:
        """Remember how far a user has read (never moves backwards)."""

    async def read_markers(self, username: str) -> dict[str, int]:
        """conversation -> last read id, for one user."""

    # audit
    async def append_audit(self, entry: AuditRecord) -> None:
        """Keep one audit entry (ids are unique; appending the same id twice keeps one)."""

    async def list_audit(self, limit: int, before_id: str | None = None) -> list[AuditRecord]:
        """The newest `limit` entries with id < before_id (or the newest), newest first."""

    # tasks (see TaskRecord): the scheduler plans them, the api stores and cancels them
    async def add_task(self, task: TaskRecord) -> None:
        """Store a new task (its version is 1). Raises Conflict when the id is taken."""

    async def get_task(self, task_id: str) -> TaskRecord:
        """The task as last written. Raises NotFound."""

    async def list_tasks(
        self, owner: str | None = None, states: Collection[str] | None = None, updated_since_ms: int | None = None
    ) -> list[TaskRecord]:
        """Tasks (of one owner, in some states, last written at or after `updated_since_ms`:
        their `updated_at_ms`), oldest first (created_at_ms, then id)."""

    async def archive_tasks(self, before_ms: int) -> int:
        """Set aside the finished tasks (done, failed, cancelled) last written before
        `before_ms`, so that reads of unfinished or recently written tasks no longer go through
        them; how many it set aside. Nothing a caller sees changes: they are read and updated as
        before. (MongoDB moves them to other collections, a few hundred a call; SQLite's indexes
        already skip them, and it does nothing: 0.)"""

    async def update_task(self, task: TaskRecord, expected_version: int) -> bool:
        """Compare-and-set: store `task` (whose version must be expected_version + 1) only if
        the stored version is still `expected_version` and the stored plan_epoch is not above
        `task.plan_epoch`; False otherwise, and nothing changes. So of two writers that read the
        same version exactly one wins, and a scheduler whose lease was taken over (a lower
        epoch) cannot overwrite a plan made under the newer lease. Raises NotFound, and
        ValueError when the version is not expected_version + 1. (MongoDB: an update built on a
        read more than TASK_VERSION_KEEP_MS old may be refused even if nobody else wrote.)"""

    # leases: at most one unexpired holder per name, each takeover with a higher fencing epoch
    async def acquire_lease(self, name: str, holder: str, now_ms: int, ttl_ms: int) -> int | None:
        """Take or renew the lease until now_ms + ttl_ms; the fencing epoch while `holder` has
        it, None while another holds an unexpired one. A renewal keeps the epoch; every takeover
        (of an expired or released lease, or the first one) gets a higher epoch than any before.
        A holder whose own lease expired before it renewed gets a new epoch, like anyone else."""

    async def release_lease(self, name: str, holder: str, epoch: int) -> None:
        """Give the lease up early (on shutdown) if `holder` still has it at `epoch`."""

    async def get_lease(self, name: str) -> LeaseRecord | None:
        """The lease as it stands (expired or not), None if never taken."""

    # grid carbon-intensity traces, per region (`tasker grid import`)
    async def replace_grid_trace(self, region: str, rows: Sequence[tuple[int, float]]) -> None:
        """Replace the whole trace of `region` by rows (ts_ms, g_per_kwh); an empty list
        removes it. A reader sees the old or the new trace, never a mix."""

    async def grid_trace(self) -> dict[str, list[tuple[int, float]]]:
        """Every region's trace: region -> rows (ts_ms, g_per_kwh) sorted by ts_ms."""
