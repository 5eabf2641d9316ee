"""A job that starts later (`not_before`): scheduled until then, started by its first claim
(or the sweeper's `start_due`), and never run at all once cancelled before it."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, cast

import pytest

from functions.jobs import BatchOutcome, Job, JobStatus, plan_batches, utcnow
from functions.store.firestore import FirestoreJobStore
from functions.store.protocol import Claim, JobQuery, JobStore
from functions.store.sqlite import SqliteJobStore
from tests.contract.conftest import StoreFactory
from tests.contract.factories import LEASE, stats_for

AHEAD = timedelta(hours=2)


def scheduled_job(store: JobStore, batches: int, *, ahead: timedelta = AHEAD) -> Job:
    """A job of `batches` batches planned now, whose start is `ahead` of now."""
    now = utcnow()
    job, _ = store.create_job(
        Job.new(source="noop", collection="docs", not_before=now + ahead, now=now)
    )
    items = [f"doc-{i}" for i in range(2 * batches)]
    return store.add_batches(job.job_id, plan_batches(job.job_id, items, 2), now=now)


def test_a_job_whose_start_is_ahead_is_planned_scheduled(store: JobStore) -> None:
    """Planned before its `not_before`, the job is scheduled: its batches are recorded and
    pending, it has not started, and the status filter finds it."""
    job = scheduled_job(store, 3)

    read = store.get_job(job.job_id)
    assert (read.status, read.total_batches, read.started_at) == (JobStatus.SCHEDULED, 3, None)
    assert read.not_before == job.not_before and read.not_before is not None
    assert store.batch_counts(read).to_dict() == {
        "pending": 3,
        "running": 0,
        "completed": 0,
        "failed": 0,
        "cancelled": 0,
    }
    listed = store.list_jobs(JobQuery.build(statuses=["scheduled"]))
    assert [j.job_id for j in listed.items] == [job.job_id]
    assert store.list_jobs(JobQuery.build(statuses=["running"])).total == 0


def test_a_job_whose_start_has_passed_is_planned_running(store: JobStore) -> None:
    """A `not_before` already behind when the job is planned starts it at once."""
    job = scheduled_job(store, 1, ahead=-timedelta(seconds=5))
    assert job.status is JobStatus.RUNNING and job.started_at is not None
    assert store.claim_batch(f"{job.job_id}_0000", lease=LEASE).granted


def test_a_claim_before_the_start_is_refused_and_writes_nothing(store: JobStore) -> None:
    """An early delivery is refused, naming the start; the batch stays pending with no
    attempt, and the job stays scheduled."""
    job = scheduled_job(store, 2)
    assert job.not_before is not None
    early = job.not_before - timedelta(milliseconds=1)

    claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=early)

    assert not claim.granted
    assert claim.reason == f"scheduled: its job starts at {job.not_before.isoformat()}"
    batch = store.get_batch(f"{job.job_id}_0000")
    assert (batch.status, batch.attempts, batch.started_at) == (JobStatus.PENDING, 0, None)
    assert store.get_job(job.job_id).status is JobStatus.SCHEDULED


def test_the_first_claim_at_the_start_starts_the_job(store: JobStore) -> None:
    """The first claim at `not_before` starts the job (running, started then) and runs;
    the job then completes like any other."""
    job = scheduled_job(store, 2)
    at = job.not_before
    assert at is not None

    first = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=at)

    assert first.granted and first.batch.attempts == 1
    assert (first.job.status, first.job.started_at) == (JobStatus.RUNNING, at)
    assert store.get_job(job.job_id).started_at == at
    second = store.claim_batch(f"{job.job_id}_0001", lease=LEASE, now=at + timedelta(seconds=1))
    assert second.granted
    for claim in (first, second):
        store.finish_batch(
            claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED, stats_for(claim.batch))
        )
    done = store.get_job(job.job_id)
    assert (done.status, done.completed_batches, done.started_at) == (JobStatus.COMPLETED, 2, at)


def test_concurrent_first_claims_start_the_job_once_and_each_batch_runs(store: JobStore) -> None:
    """Every batch of a due job delivered at once: each claim is granted exactly once, and
    the job is running, started at the start time."""
    job = scheduled_job(store, 8)
    at = job.not_before
    assert at is not None

    def claim(index: int) -> bool:
        return store.claim_batch(f"{job.job_id}_{index:04d}", lease=LEASE, now=at).granted

    with ThreadPoolExecutor(8) as pool:
        granted = list(pool.map(claim, range(8)))

    assert granted == [True] * 8
    read = store.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.RUNNING, at)
    assert store.batch_counts(read).running == 8


def test_a_scheduled_job_cancelled_before_its_start_never_runs_a_batch(store: JobStore) -> None:
    """Cancelled while scheduled: a delivery after the start claims nothing and ends its
    batch cancelled, with no attempt; the job stays cancelled."""
    job = scheduled_job(store, 2)
    assert job.not_before is not None
    cancelled = store.cancel_job(job.job_id)
    assert cancelled.status is JobStatus.CANCELLED

    late = job.not_before + timedelta(seconds=1)
    claims = [store.claim_batch(f"{job.job_id}_{i:04d}", lease=LEASE, now=late) for i in (0, 1)]

    assert [(c.granted, c.reason) for c in claims] == [(False, "job is cancelled")] * 2
    for index in (0, 1):
        batch = store.get_batch(f"{job.job_id}_{index:04d}")
        assert (batch.status, batch.attempts, batch.started_at) == (JobStatus.CANCELLED, 0, None)
    read = store.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.CANCELLED, None)
    assert store.batch_counts(read).cancelled == 2
    assert not store.start_due(job.job_id, now=late)


def test_start_due_starts_a_due_scheduled_job_once(store: JobStore) -> None:
    """`start_due` leaves a job alone before its start, starts it at its start, and
    answers False once it runs."""
    job = scheduled_job(store, 1)
    at = job.not_before
    assert at is not None

    assert not store.start_due(job.job_id, now=at - timedelta(seconds=1))
    assert store.get_job(job.job_id).status is JobStatus.SCHEDULED
    assert store.start_due(job.job_id, now=at)
    read = store.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.RUNNING, at)
    assert not store.start_due(job.job_id, now=at)
    assert store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=at).granted


def test_the_sweepers_queries_leave_a_scheduled_job_alone(store: JobStore) -> None:
    """A scheduled job's batches wait: whether their tasks were enqueued or not, neither
    the never-enqueued nor the dropped-task query returns them, however late it asks."""
    job = scheduled_job(store, 2)
    store.mark_enqueued(job.job_id, [0])
    later = utcnow() + timedelta(days=1)

    assert store.find_unenqueued(later) == []
    assert store.find_dropped(later) == []
    assert store.find_expired_leases(later) == []


def test_a_claim_that_found_the_job_scheduled_still_runs_once_another_started_it(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two first deliveries at the start: one finds the job scheduled, then the other
    starts it by claiming its own batch. The first must still claim its batch: refused as
    a duplicate, its task would be acknowledged and the batch never run."""
    first = store_factory()
    other = store_factory()
    job = scheduled_job(first, 2)
    at = job.not_before
    assert at is not None

    def let_the_other_start_it() -> None:
        assert other.claim_batch(f"{job.job_id}_0001", lease=LEASE, now=at).granted

    if isinstance(first, SqliteJobStore):  # between the claim's statement and its why
        refuse = first._refuse_claim

        def other_then_refuse(*args: Any, **kwargs: Any) -> Claim:
            let_the_other_start_it()
            return refuse(*args, **kwargs)

        monkeypatch.setattr(first, "_refuse_claim", other_then_refuse)
    else:  # between the claim's read and its commit
        store = cast(FirestoreJobStore, first)
        read_both = store.db.get_all

        def read_then_other(*args: Any, **kwargs: Any) -> Iterator[Any]:
            snapshots = list(read_both(*args, **kwargs))
            monkeypatch.setattr(store.db, "get_all", read_both)  # only this read races
            let_the_other_start_it()
            return iter(snapshots)

        monkeypatch.setattr(store.db, "get_all", read_then_other)

    claim = first.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=at)

    assert claim.granted, claim.reason
    read = first.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.RUNNING, at)
    assert first.batch_counts(read).running == 2
