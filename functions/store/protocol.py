"""The `JobStore` protocol: what every backend does, and the small value types it speaks.

The contract suite (`tests/contract/`) runs one set of tests against every implementation;
a behaviour that only one backend has is a bug.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Generic, Protocol, TypeVar

from functions.errors import InvalidArgument
from functions.jobs import (
    BATCH_STATUSES,
    Batch,
    BatchOutcome,
    Job,
    JobStats,
    JobStatus,
    parse_status,
)
from functions.priority import Priority, parse_priority

T = TypeVar("T")

MAX_PAGE_SIZE = 200
DEFAULT_PAGE_SIZE = 50


def check_limit(limit: int) -> int:
    """`limit` unchanged if it is a valid page size; `InvalidArgument` otherwise."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")
    return limit


def check_progress(progress: float) -> None:
    """`InvalidArgument` unless 0 <= progress <= 1."""
    if not 0.0 <= progress <= 1.0:
        raise InvalidArgument(f"progress must be between 0 and 1, got {progress}")


def not_due(job: Job) -> str:
    """Why a claim of a scheduled job is refused before its `not_before`. Starts with
    "scheduled", which the worker answers as "try again later"."""
    assert job.not_before is not None
    return f"scheduled: its job starts at {job.not_before.isoformat()}"


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Filters and page for `list_jobs`. Build it with `JobQuery.build` to validate input."""

    statuses: frozenset[JobStatus] = frozenset()
    source: str | None = None
    client_id: str | None = None
    priority: Priority | None = None
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None

    @classmethod
    def build(
        cls,
        *,
        statuses: Iterable[str] = (),
        source: str | None = None,
        client_id: str | None = None,
        priority: str | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> JobQuery:
        return cls(
            statuses=frozenset(parse_status(s) for s in statuses),
            source=source or None,
            client_id=client_id or None,
            priority=parse_priority(priority) if priority else None,
            limit=check_limit(limit),
            cursor=cursor or None,
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing, newest or lowest first; `next_cursor` is None on the last page.
    `total` counts every record matching the filters, across all pages."""

    items: list[T]
    next_cursor: str | None
    total: int


@dataclass(frozen=True, slots=True)
class Found(Generic[T]):
    """The first records a query matches (at most the limit asked for), and how many it
    matches in all."""

    first: list[T]
    total: int


@dataclass(frozen=True, slots=True)
class BatchCounts:
    """How many of a job's batches are in each status."""

    pending: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @classmethod
    def of(cls, job: Job, *, running: int = 0, cancelled: int = 0) -> BatchCounts:
        """The counts of `job`, given how many of its batches are running and cancelled:
        completed and failed are the job's own counters, and pending is the rest (never
        below zero, for reads that were not one snapshot)."""
        ended = job.completed_batches + job.failed_batches
        return cls(
            pending=max(0, job.total_batches - ended - running - cancelled),
            running=running,
            completed=job.completed_batches,
            failed=job.failed_batches,
            cancelled=cancelled,
        )

    def to_dict(self) -> dict[str, int]:
        """Keyed by status value, in the order of `BATCH_STATUSES`."""
        return {status.value: getattr(self, status.value) for status in BATCH_STATUSES}


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to a claim. When `granted`, `batch` holds the new lease and attempt and the
    caller owns the batch until the lease expires; otherwise `reason` says why not (a
    duplicate delivery, a terminal batch, a cancelled job) and the caller does nothing."""

    granted: bool
    job: Job
    batch: Batch
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class FinishResult:
    """The answer to `finish_batch`. `counted` is True for exactly one call per batch outcome;
    `finalized` is True for exactly one call per job: the one that must send the callback."""

    counted: bool
    finalized: bool
    job: Job


@dataclass(frozen=True, slots=True)
class PlanPage:
    """One page of a job's plan (functions/planner.py): page `number`'s batches, which
    continue the job's batch indexes; how many items they hold; where the next page starts
    in the source (`cursor`); and whether it is the last page."""

    number: int
    batches: Sequence[Batch]
    items: int
    cursor: str | None
    last: bool

    def refusal(self, job: Job) -> str | None:
        """Why `job` takes no such page now (a duplicate, an ended job), or None."""
        if job.is_terminal:
            return f"job is {job.status.value}"
        if not job.planning or job.plan_pages > self.number:
            return f"page {self.number} is already planned"
        if job.plan_pages < self.number:
            return f"page {job.plan_pages} is not planned yet"
        for offset, batch in enumerate(self.batches):
            if batch.job_id != job.job_id or batch.index != job.total_batches + offset:
                raise InvalidArgument(
                    f"batch {batch.batch_id!r} is not batch {job.total_batches + offset}"
                    f" of job {job.job_id!r}"
                )
        return None


@dataclass(frozen=True, slots=True)
class Planned:
    """The answer to `add_plan_page`. `written` is True for exactly one call per page (the
    others get `reason`); `finalized` is True for the call whose last page found every
    batch already counted: it must send the callback."""

    written: bool
    finalized: bool
    job: Job
    reason: str | None = None


class JobStore(Protocol):
    """Durable job state. Every method is safe to call from many threads and processes."""

    def create_job(self, job: Job) -> tuple[Job, bool]:
        """Record `job`. If a job with the same (client_id, request_id) exists, return it and
        False instead (rule 6); otherwise the stored job and True."""
        ...

    def add_batches(
        self, job_id: str, batches: Sequence[Batch], *, now: datetime | None = None
    ) -> Job:
        """Record the planned batches of a pending job and start it (status running,
        total_batches set), or, while `now` is before its `not_before`, schedule it
        (status scheduled, total_batches set, started_at unset). With no batches the job
        completes at once."""
        ...

    def start_due(self, job_id: str, *, now: datetime | None = None) -> bool:
        """Start a scheduled job whose `not_before` is at or before `now` (status running,
        started_at `now`), the way its first claim would. True if this call started it;
        False when it is not scheduled (any more) or not due yet. The sweeper's step for
        a due job no delivery started (its tasks dropped), so that recovery treats it as
        any running job."""
        ...

    def fail_unplanned(self, job_id: str, *, error: str, now: datetime | None = None) -> Job:
        """Fail a job still pending because its planning never finished (the submitting
        instance died). Refused once planning has started the job: exactly one of the two
        wins."""
        ...

    def add_plan_page(self, job_id: str, page: PlanPage, *, now: datetime | None = None) -> Planned:
        """Write one page of a planning job's plan at once, or nothing (a planner killed
        mid-page leaves no part of it): its batches, pending and not enqueued; the job's
        total_batches, planned_items, plan_pages and plan_cursor; and, for the last page,
        `planning` False. Only page `job.plan_pages` is taken, once: a duplicate delivery,
        a page out of turn and a page of an ended job are answered `written` False. The
        last page finalizes the job if every batch has already counted: with
        `finish_batch`, which finalizes only once planning has ended, exactly one of the
        two finalizes (rule 2)."""
        ...

    def fail_planning(
        self, job_id: str, page: int, *, error: str, now: datetime | None = None
    ) -> Job | None:
        """Fail a planning job whose page `page` (its next) cannot be planned (its source
        cannot be read): failed, with `error`. It keeps `planning` true, which says its plan
        never ended (a retry is refused). None (and nothing changed) if the job is no longer
        planning that page."""
        ...

    def get_job(self, job_id: str) -> Job: ...

    def get_batch(self, batch_id: str) -> Batch: ...

    def list_jobs(self, query: JobQuery) -> Page[Job]:
        """Jobs newest first, filtered, keyset-paginated (every job once across pages, even
        while new jobs are being created)."""
        ...

    def list_batches(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Batch]:
        """A job's batches in index order."""
        ...

    def batch_counts(self, job: Job) -> BatchCounts:
        """How many of `job`'s batches are in each status, in a fixed number of reads that
        does not grow with the job's size. `job` is as `get_job` read it, and its counters
        give completed and failed (exact: each batch counts once, rule 1), so the answer
        agrees with the job it comes with. Running is read: a count of the job's running
        batches, which the queue's dispatch concurrency bounds whatever the job's size.
        Cancelled is counted into the counter shards as batches end, like completed and
        failed, and read only for a cancelled job: only cancelling a job ends its batches
        cancelled, and a cancelled job never runs again. Pending is the rest. A completed
        or failed job has every batch ended, and a job not planned yet has none: neither
        reads anything."""
        ...

    def claim_batch(
        self,
        batch_id: str,
        *,
        lease: timedelta,
        ran_on: str | None = None,
        now: datetime | None = None,
    ) -> Claim:
        """Take the batch for one attempt: attempts + 1, status running, lease until
        now + `lease`, and `ran_on` (where the attempt runs) recorded. Refused while
        another lease holds, once the batch is terminal, when the job is cancelled (the
        batch then ends cancelled), and while `now` is before a scheduled job's
        `not_before` (reason "scheduled: ..."; nothing written). The first claim of a
        scheduled job at or after its `not_before` starts the job (status running,
        started_at `now`) in the same write as the claim."""
        ...

    def record_progress(
        self,
        batch: Batch,
        *,
        progress: float,
        stats: JobStats,
        lease: timedelta,
        now: datetime | None = None,
    ) -> bool:
        """Save a running batch's progress and extend its lease. False (and nothing written)
        when the caller should stop: its attempt lost the lease, or the job was cancelled."""
        ...

    def release_lease(self, batch: Batch, *, now: datetime | None = None) -> bool:
        """End the lease of `batch`'s attempt early (after a transient failure), so that the
        queue's retry can claim it at once. False if that attempt no longer holds it."""
        ...

    def claim_callback(self, job: Job, *, now: datetime | None = None) -> Job | None:
        """Start the next delivery attempt of a finalized job's callback: `callback_attempts`
        + 1, the attempt's start (`now`) recorded. Only if the stored job is still as `job`
        shows it (same retry round, same attempts) and its callback is still owed (one
        conditional write): of concurrent claims exactly one wins, and the others (and a
        claim that read the job before a delivery was recorded) get None and send nothing.
        Returns the job as claimed. Finalizing a job with a callback_url makes it owed, with
        attempts 0, status and error cleared."""
        ...

    def record_callback(self, job: Job, *, status: str, error: str | None, owed: bool) -> None:
        """Record how the attempt `job` claimed went: its status and error (None once
        delivered), and whether the callback is still owed (False once delivered, refused,
        rejected or given up). A failure is recorded only while that attempt is still the
        job's latest; a delivery always is, and ends the deliveries."""
        ...

    def find_undelivered_callbacks(
        self, started_before: datetime, *, limit: int = 100
    ) -> list[Job]:
        """Completed and failed jobs whose callback is still owed and whose latest attempt
        (or finalization, before any) started before `started_before`, oldest first, at
        most `limit`: the sweeper passes now minus a lease, so an attempt still in flight is
        left alone. Reads stay bounded by `limit` (an index on the owed callbacks)."""
        ...

    def finish_batch(
        self, job: Job, batch: Batch, outcome: BatchOutcome, *, now: datetime | None = None
    ) -> FinishResult:
        """End the batch and count it into the job exactly once (rule 1); the call that
        counts the last batch also finalizes the job, exactly once (rule 2)."""
        ...

    def finalize_if_complete(self, job_id: str, *, now: datetime | None = None) -> FinishResult:
        """Finalize a running job whose batches are all terminal (the sweeper's safety net
        for a worker that died between counting and finalizing)."""
        ...

    def cancel_job(self, job_id: str, *, now: datetime | None = None) -> Job:
        """Move a job that is not terminal to cancelled; no batch starts after this."""
        ...

    def retry_failed(self, job_id: str, *, now: datetime | None = None) -> list[Batch]:
        """Re-open a failed job's failed batches (pending, attempts 0, dispatch_rounds 0, not
        enqueued) and set the job running again. Returns the re-opened batches, for the
        caller to enqueue."""
        ...

    def mark_enqueued(
        self, job_id: str, indexes: Sequence[int], *, now: datetime | None = None
    ) -> None:
        """Record that the queue accepted the tasks of these batches."""
        ...

    def delete_job(self, job_id: str) -> None:
        """Delete a terminal job with its batches and counters."""
        ...

    def delete_finished_before(self, cutoff: datetime, *, chunk_size: int = 100) -> int:
        """Delete every job that finished before `cutoff`, `chunk_size` jobs at a time.
        Returns how many were deleted."""
        ...

    def find_finished_before(self, cutoff: datetime, *, limit: int = 5) -> Found[Job]:
        """The jobs `delete_finished_before(cutoff)` would delete: the first `limit` to
        have finished, and how many there are. Reads nothing else (a dry run of the
        cleanup)."""
        ...

    def find_expired_leases(self, now: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        """Running batches of running jobs whose lease expired before `now`."""
        ...

    def find_unenqueued(self, older_than: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        """Pending batches never marked enqueued, of running jobs started before
        `older_than` (so a fan-out still in progress is left alone)."""
        ...

    def find_dropped(
        self, enqueued_before: datetime, *, limit: int = 500
    ) -> list[tuple[Job, Batch]]:
        """Pending batches marked enqueued before `enqueued_before`, oldest enqueue first,
        at most `limit`: the sweeper passes now minus the queue's whole retry window, so
        their task ran out of attempts without any reaching the worker (a delivery that
        reaches it claims the batch). Only batches of running jobs, and of cancelled ones:
        a cancelled job's batch whose task was dropped stays pending until the sweeper ends
        it, and left out it would hold its place at the front of this query for ever.
        Reads stay bounded by `limit` (an index on the pending batches' enqueue time), not
        by how many jobs run."""
        ...

    def mark_redispatched(
        self, job: Job, batch: Batch, *, now: datetime | None = None
    ) -> Batch | None:
        """Record that the sweeper enqueued a dropped batch again: `dispatch_rounds` + 1 and
        `enqueued_at` = `now`, only if the batch is still pending with the `dispatch_rounds`
        and `enqueued_at` that `batch` holds (one conditional write). Of several sweeps that
        found the same batch, exactly one wins; the others (and any sweep that read it
        before a delivery claimed it) get None and change nothing. Returns the batch as
        written."""
        ...

    def close(self) -> None: ...
