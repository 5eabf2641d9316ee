"""The job model: a parent `Job`, its `Batch` sub-jobs, their statuses and stats. Pure: no I/O.

Both stores persist these dataclasses; neither adds behaviour to them. Timestamps are aware UTC
`datetime`s everywhere (the stores keep them as real timestamps, never strings).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal, Self

from functions.errors import BatchNotFound, InvalidArgument, InvalidTransition, JobNotFound
from functions.named_values import parse_named
from functions.priority import Priority


class JobStatus(StrEnum):
    """Status of a job and of each of its batches."""

    PENDING = "pending"
    # Planned, waiting for its `not_before`: no batch runs before then.
    SCHEDULED = "scheduled"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


# The statuses a batch can have: a job waits scheduled, its batches wait pending.
BATCH_STATUSES: tuple[JobStatus, ...] = tuple(s for s in JobStatus if s is not JobStatus.SCHEDULED)

TERMINAL: frozenset[JobStatus] = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
)

# Terminal states are stable (rule 5): only an explicit retry leaves FAILED.
_JOB_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    # A job with nothing to do completes straight from PENDING.
    JobStatus.PENDING: frozenset(
        {
            JobStatus.SCHEDULED,
            JobStatus.RUNNING,
            JobStatus.COMPLETED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
        }
    ),
    # Its first claim at or after `not_before` starts it (or the sweeper, if none comes).
    JobStatus.SCHEDULED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.FAILED: frozenset({JobStatus.RUNNING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}
_BATCH_TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED}),
    JobStatus.SCHEDULED: frozenset(),  # not a batch status (BATCH_STATUSES)
    # RUNNING -> RUNNING is a re-claim after the previous lease expired.
    JobStatus.RUNNING: frozenset(
        {JobStatus.RUNNING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.FAILED: frozenset({JobStatus.PENDING}),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def parse_status(value: str) -> JobStatus:
    """The `JobStatus` named by `value`; `InvalidArgument` naming the allowed values otherwise."""
    return parse_named(JobStatus, value, "status")


def batch_statuses_leading_to(new: JobStatus) -> frozenset[JobStatus]:
    """The batch statuses from which a batch may move to `new`."""
    return frozenset(s for s, targets in _BATCH_TRANSITIONS.items() if new in targets)


def check_transition(kind: Literal["job", "batch"], current: JobStatus, new: JobStatus) -> None:
    """Raise `InvalidTransition` unless a `kind` may move from `current` to `new`."""
    table = _JOB_TRANSITIONS if kind == "job" else _BATCH_TRANSITIONS
    if new not in table[current]:
        raise InvalidTransition(kind, current.value, new.value)


@dataclass(frozen=True, slots=True)
class JobStats:
    """What the work did, summed over items. `processed` counts items whose results are
    stored; `failed` failed items, not batches; `skipped` items the processor has no use
    for (an unknown file type); `unchanged` items that had not changed since they were
    ingested, so were not processed again; `bytes_read` the source bytes read; `embedded`
    the chunks whose vectors were computed (the others kept theirs)."""

    files: int = 0
    processed: int = 0
    failed: int = 0
    chunks: int = 0
    documents: int = 0
    skipped: int = 0
    bytes_read: int = 0
    unchanged: int = 0
    embedded: int = 0

    @property
    def ended(self) -> int:
        """Items done with: processed (their results stored), failed, skipped, unchanged."""
        return self.processed + self.failed + self.skipped + self.unchanged

    def __add__(self, other: JobStats) -> JobStats:
        return JobStats(*(a + b for a, b in zip(self.values(), other.values(), strict=True)))

    def __sub__(self, other: JobStats) -> JobStats:
        return JobStats(*(a - b for a, b in zip(self.values(), other.values(), strict=True)))

    def values(self) -> tuple[int, ...]:
        return tuple(getattr(self, name) for name in STAT_FIELDS)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> JobStats:
        data = data or {}
        return cls(**{name: int(data.get(name) or 0) for name in STAT_FIELDS})

    @classmethod
    def total(cls, parts: Iterable[JobStats]) -> JobStats:
        result = cls()
        for part in parts:
            result = result + part
        return result


STAT_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobStats))

# A job planned by pages counts into this many shards from its first batch on, since its
# size is unknown until planning ends (functions/store/shards.py's cap).
MAX_PLANNED_SHARDS = 64

_JOB_ID = re.compile(r"^\d{8}-\d{6}-\d{6}-[0-9a-f]{8}$")
_BATCH_ID = re.compile(r"^(?P<job>\d{8}-\d{6}-\d{6}-[0-9a-f]{8})_(?P<index>\d{4,})$")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id(now: datetime) -> str:
    """A job id that sorts by creation time (like Dataflow's), so that "newest first" is an
    order on one field, which keyset pagination can follow on every backend. The random tail
    keeps ids unique within one microsecond."""
    return f"{now.astimezone(UTC):%Y%m%d-%H%M%S-%f}-{secrets.token_hex(4)}"


def check_job_id(job_id: str) -> str:
    """`job_id` unchanged if it is well formed; `JobNotFound` otherwise (no such job can exist,
    and a stray '/' must never reach a Firestore document path)."""
    if not _JOB_ID.match(job_id):
        raise JobNotFound(job_id)
    return job_id


def batch_id_for(job_id: str, index: int) -> str:
    return f"{job_id}_{index:04d}"


def parse_batch_id(batch_id: str) -> tuple[str, int]:
    """The (job id, batch index) of a batch id; `BatchNotFound` if it is malformed."""
    match = _BATCH_ID.match(batch_id)
    if not match:
        raise BatchNotFound(batch_id)
    return match["job"], int(match["index"])


def _as_datetime(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _with_datetimes(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    out = {k: v for k, v in data.items() if k in names}
    for key in (
        "created_at",
        "started_at",
        "finished_at",
        "expire_at",
        "lease_expires_at",
        "heartbeat_at",
        "enqueued_at",
        "not_before",
    ):
        if key in out:
            out[key] = _as_datetime(out[key])
    return out


@dataclass(frozen=True, slots=True)
class Job:
    """The parent job. Counters are the true sums over its batches as the store read them."""

    job_id: str
    source: str
    collection: str
    created_at: datetime
    status: JobStatus = JobStatus.PENDING
    request: Mapping[str, Any] = field(default_factory=dict)
    client_id: str | None = None
    request_id: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expire_at: datetime | None = None
    total_batches: int = 0
    completed_batches: int = 0
    failed_batches: int = 0
    stats: JobStats = field(default_factory=JobStats)
    message: str | None = None
    error: str | None = None
    callback_url: str | None = None
    # How delivering the callback went ("delivered: HTTP 200", "failed: ..."), how many
    # delivery attempts started since the job last finalized, and the last one's error
    # (None once delivered).
    callback_status: str | None = None
    callback_attempts: int = 0
    callback_error: str | None = None
    retries: int = 0
    # The W3C trace every line of this job is logged under (functions/observability/).
    trace_id: str | None = None
    # Which queue class its batches wait in (functions/priority.py).
    priority: Priority = Priority.NORMAL
    # When it may start (the request's `not_before`): while that is ahead the job is
    # scheduled, and no batch runs before it.
    not_before: datetime | None = None
    # Planning by pages (functions/planner.py): True while pages of its source remain to be
    # read; how many pages are written, where the next one starts in the source (opaque to
    # all but the planner), and how many items the written pages hold.
    planning: bool = False
    plan_pages: int = 0
    plan_cursor: str | None = None
    planned_items: int = 0
    # How many counter shards it counts into, fixed before its first batch runs; 0: derived
    # from total_batches (a job planned in one go). See functions/store/shards.py.
    counter_shards: int = 0

    @classmethod
    def new(
        cls,
        *,
        source: str,
        collection: str,
        request: Mapping[str, Any] | None = None,
        client_id: str | None = None,
        request_id: str | None = None,
        callback_url: str | None = None,
        trace_id: str | None = None,
        priority: Priority = Priority.NORMAL,
        not_before: datetime | None = None,
        now: datetime | None = None,
        planning: bool = False,
    ) -> Job:
        created = now or utcnow()
        if (client_id is None) != (request_id is None):
            raise InvalidArgument("client_id and request_id go together: give both or neither")
        # A job planned by pages runs from the start: its batches may run while later pages
        # are still being read. With a later start it is scheduled instead (planning goes
        # on; its first claim at or after `not_before` starts it).
        waits = not_before is not None and created < not_before
        status = JobStatus.PENDING
        if planning:
            status = JobStatus.SCHEDULED if waits else JobStatus.RUNNING
        return cls(
            job_id=new_job_id(created),
            source=source,
            collection=collection,
            created_at=created,
            status=status,
            started_at=created if status is JobStatus.RUNNING else None,
            request=dict(request or {}),
            client_id=client_id,
            request_id=request_id,
            callback_url=callback_url,
            trace_id=trace_id,
            priority=priority,
            not_before=not_before,
            planning=planning,
            counter_shards=MAX_PLANNED_SHARDS if planning else 0,
        )

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def done_batches(self) -> int:
        return self.completed_batches + self.failed_batches

    @property
    def progress(self) -> float:
        """Share of batches that reached a terminal state, 0..1."""
        if self.total_batches == 0:
            return 1.0 if self.status is JobStatus.COMPLETED else 0.0
        return min(1.0, self.done_batches / self.total_batches)

    def waits_at(self, now: datetime) -> bool:
        """True while `now` is before its `not_before`: no batch of it may run yet."""
        return self.not_before is not None and now < self.not_before

    def duration(self, now: datetime | None = None) -> timedelta | None:
        """Time from start to finish (or to `now` while it runs); None before it starts."""
        if self.started_at is None:
            return None
        return (self.finished_at or now or utcnow()) - self.started_at

    @property
    def all_counted(self) -> bool:
        """Planning has ended and every planned batch has ended: the job may finalize."""
        return not self.planning and self.done_batches >= self.total_batches

    def final_status(self) -> JobStatus:
        """The terminal status the job reaches once every batch is terminal."""
        return JobStatus.FAILED if self.failed_batches else JobStatus.COMPLETED

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        data["priority"] = self.priority.value
        data["stats"] = self.stats.to_dict()
        data["request"] = dict(self.request)
        data["progress"] = self.progress
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        values = _with_datetimes(cls, data)
        values["status"] = JobStatus(values.get("status", JobStatus.PENDING))
        # Jobs recorded before priorities existed ran in the one queue there was: normal.
        values["priority"] = Priority(values.get("priority") or Priority.NORMAL)
        values["stats"] = JobStats.from_dict(data.get("stats"))
        values["request"] = dict(data.get("request") or {})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Batch:
    """One sub-job: a slice of the job's items, run by one task invocation at a time."""

    batch_id: str
    job_id: str
    index: int
    items: tuple[str, ...]
    created_at: datetime
    status: JobStatus = JobStatus.PENDING
    attempts: int = 0
    lease_expires_at: datetime | None = None
    heartbeat_at: datetime | None = None
    # When its task falls due: when it was enqueued, or its job's later start (not_before).
    enqueued_at: datetime | None = None
    stats: JobStats = field(default_factory=JobStats)
    progress: float = 0.0
    error: str | None = None
    error_details: Mapping[str, Any] | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # Where its latest attempt ran: revision and instance, or host and pid locally.
    ran_on: str | None = None
    # How often the sweeper enqueued it again after the queue dropped its task (every
    # attempt failed to reach the worker); part of the task name, reset by a retry.
    dispatch_rounds: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def still_as_found(self, found: Batch) -> bool:
        """True if this fresh read is still the pending batch a sweep found dropped: no
        delivery claimed it and no other sweep re-dispatched it since."""
        return (
            self.status is JobStatus.PENDING
            and self.dispatch_rounds == found.dispatch_rounds
            and self.enqueued_at == found.enqueued_at
        )

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["status"] = self.status.value
        data["stats"] = self.stats.to_dict()
        data["items"] = list(self.items)
        data["error_details"] = dict(self.error_details) if self.error_details else None
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        values = _with_datetimes(cls, data)
        values["status"] = JobStatus(values.get("status", JobStatus.PENDING))
        values["stats"] = JobStats.from_dict(data.get("stats"))
        values["items"] = tuple(data.get("items") or ())
        return cls(**values)


class BatchCut:
    """Where a plan starts a new batch: after `batch_size` items and, when sizes are known,
    before the item that would take the batch past `max_bytes`. The one rule of
    `plan_batches` and of a planner page, which stops before the batch it has no room for."""

    def __init__(self, batch_size: int, max_bytes: int | None = None) -> None:
        if batch_size < 1:
            raise InvalidArgument(f"batch_size must be at least 1, got {batch_size}")
        self.batch_size = batch_size
        self.max_bytes = max_bytes
        self.batches = 0
        self._items = 0
        self._bytes = 0

    def starts_batch(self, size: int = 0) -> bool:
        """Take the next item, of `size` bytes; True if it starts a new batch."""
        new = not self.batches or self._items >= self.batch_size
        if not new and self.max_bytes is not None and self._bytes + size > self.max_bytes:
            new = True
        if new:
            self.batches += 1
            self._items = self._bytes = 0
        self._items += 1
        self._bytes += size
        return new


def plan_batches(
    job_id: str,
    items: Sequence[str],
    batch_size: int,
    now: datetime | None = None,
    *,
    sizes: Sequence[int] | None = None,
    max_bytes: int | None = None,
    first_index: int = 0,
) -> list[Batch]:
    """Split `items` into batches, in order: at most `batch_size` items each and, when
    `sizes` are known, at most `max_bytes` of them, so that a giant file runs in a batch
    of its own instead of holding up hundreds of small ones."""
    cut = BatchCut(batch_size, max_bytes if sizes is not None else None)
    created = now or utcnow()
    groups: list[list[str]] = []
    for position, item in enumerate(items):
        if cut.starts_batch(sizes[position] if sizes is not None else 0):
            groups.append([])
        groups[-1].append(item)
    return [
        Batch(
            batch_id=batch_id_for(job_id, index),
            job_id=job_id,
            index=index,
            items=tuple(group),
            created_at=created,
        )
        for index, group in enumerate(groups, start=first_index)
    ]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """How a batch ended: what the worker (or the sweeper) reports to `finish_batch`."""

    status: JobStatus
    stats: JobStats = field(default_factory=JobStats)
    error: str | None = None
    error_details: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in TERMINAL:
            raise InvalidArgument(f"a batch ends completed, failed or cancelled, not {self.status}")
