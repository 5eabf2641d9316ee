"""Operator actions: cancel, retry, delete, and deleting expired jobs."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.errors import InvalidArgument, InvalidTransition, JobNotFound
from functions.jobs import BatchOutcome, Job, JobStats, JobStatus, plan_batches, utcnow
from functions.store.protocol import JobQuery, JobStore
from tests.contract.factories import LEASE, new_job, planned_job, run, stats_for


def test_cancel_stops_new_claims_and_is_final(store: JobStore) -> None:
    """A cancelled job refuses every later claim (the batch ends cancelled), stays
    cancelled when in-flight batches finish, and cannot be cancelled twice."""
    job = planned_job(store, 3)
    in_flight = store.claim_batch(f"{job.job_id}_0000", lease=LEASE)
    cancelled = store.cancel_job(job.job_id)
    assert cancelled.status is JobStatus.CANCELLED and cancelled.finished_at is not None
    refused = store.claim_batch(f"{job.job_id}_0001", lease=LEASE)
    assert not refused.granted and refused.reason == "job is cancelled"
    assert store.get_batch(f"{job.job_id}_0001").status is JobStatus.CANCELLED
    late = store.finish_batch(
        in_flight.job,
        in_flight.batch,
        BatchOutcome(JobStatus.COMPLETED, stats_for(in_flight.batch)),
    )
    assert late.counted and not late.finalized
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.CANCELLED and final.completed_batches == 1
    assert not store.record_progress(in_flight.batch, progress=0.5, stats=JobStats(), lease=LEASE)
    with pytest.raises(InvalidTransition):
        store.cancel_job(job.job_id)


def test_cancelling_a_finished_job_is_an_illegal_transition(store: JobStore) -> None:
    """Terminal states are stable: a completed job cannot be cancelled."""
    job = planned_job(store, 1)
    run(store, job, 0)
    with pytest.raises(InvalidTransition, match="job is completed; cannot move to cancelled"):
        store.cancel_job(job.job_id)
    assert store.get_job(job.job_id).status is JobStatus.COMPLETED
    with pytest.raises(JobNotFound):
        store.cancel_job("20260101-000000-000000-deadbeef")


def test_retry_reopens_failed_batches_and_completes_the_job(store: JobStore) -> None:
    """Retry re-opens only the failed batches, un-counts them, and a successful re-run
    completes the job with exact counts and stats."""
    job = planned_job(store, 5)
    for i in range(5):
        run(store, job, i, JobStatus.FAILED if i in (1, 3) else JobStatus.COMPLETED)
    assert store.get_job(job.job_id).status is JobStatus.FAILED
    reopened = store.retry_failed(job.job_id)
    assert [b.index for b in reopened] == [1, 3]
    assert all(b.status is JobStatus.PENDING and b.attempts == 0 for b in reopened)
    running = store.get_job(job.job_id)
    assert running.status is JobStatus.RUNNING and running.retries == 1
    assert (running.completed_batches, running.failed_batches) == (3, 0)
    assert running.stats.files == 6
    assert store.get_batch(f"{job.job_id}_0001").error is None
    results = [run(store, job, i) for i in (1, 3)]
    assert [r.finalized for r in results] == [False, True]
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED and final.error is None
    assert (final.completed_batches, final.failed_batches) == (5, 0)
    assert final.stats == JobStats(files=10, processed=10, chunks=30, documents=10)


def test_a_retry_across_shards_finalizes_once_more(store: JobStore) -> None:
    """70 batches in 3 shards; batches 4 and 5 (shards 1 and 2) fail. The retry takes them
    out of their shards, which are incomplete again, and the re-run finalizes the job once,
    completed, with exact sums."""
    job = planned_job(store, 70)
    first = [
        run(store, job, i, JobStatus.FAILED if i in (4, 5) else JobStatus.COMPLETED)
        for i in range(70)
    ]
    assert [r.finalized for r in first] == [False] * 69 + [True]
    assert store.get_job(job.job_id).status is JobStatus.FAILED
    store.retry_failed(job.job_id)
    again = [run(store, job, i) for i in (5, 4)]
    assert [r.finalized for r in again] == [False, True]
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED
    assert (final.completed_batches, final.failed_batches) == (70, 0)
    assert final.stats == JobStats(files=140, processed=140, chunks=420, documents=140)


def test_retry_is_refused_unless_the_job_failed(store: JobStore) -> None:
    """Only a failed job can be retried; refusing changes nothing."""
    job = planned_job(store, 1)
    with pytest.raises(InvalidTransition):
        store.retry_failed(job.job_id)
    run(store, job, 0)
    with pytest.raises(InvalidTransition):
        store.retry_failed(job.job_id)
    assert store.get_job(job.job_id).status is JobStatus.COMPLETED


def test_delete_removes_the_job_and_its_batches(store: JobStore) -> None:
    """A deleted job and its batches are gone, its idempotency key is free again, and a
    running job must be cancelled first."""
    job = planned_job(store, 3)
    with pytest.raises(InvalidTransition, match="cancel it first"):
        store.delete_job(job.job_id)
    store.cancel_job(job.job_id)
    store.delete_job(job.job_id)
    with pytest.raises(JobNotFound):
        store.get_job(job.job_id)
    with pytest.raises(JobNotFound):
        store.list_batches(job.job_id)
    with pytest.raises(JobNotFound):
        store.delete_job(job.job_id)
    keyed = new_job(store, client_id="acme", request_id="k")
    store.cancel_job(keyed.job_id)
    store.delete_job(keyed.job_id)
    fresh, created = store.create_job(
        Job.new(source="noop", collection="c", client_id="acme", request_id="k")
    )
    assert created and fresh.job_id != keyed.job_id


def test_delete_finished_before_deletes_only_old_jobs_in_chunks(store: JobStore) -> None:
    """Jobs finished before the cutoff go, in chunks; newer and unfinished jobs stay."""
    now = utcnow()
    old = []
    for _ in range(5):
        job = planned_job(store, 2)
        for i in range(2):
            claim = store.claim_batch(
                f"{job.job_id}_{i:04d}", lease=LEASE, now=now - timedelta(days=40)
            )
            store.finish_batch(
                claim.job,
                claim.batch,
                BatchOutcome(JobStatus.COMPLETED),
                now=now - timedelta(days=40),
            )
        old.append(job.job_id)
    recent = planned_job(store, 1)
    run(store, recent, 0)
    running = planned_job(store, 1)
    deleted = store.delete_finished_before(now - timedelta(days=30), chunk_size=2)
    assert deleted == 5
    remaining = {j.job_id for j in store.list_jobs(JobQuery.build()).items}
    assert remaining == {recent.job_id, running.job_id}
    with pytest.raises(JobNotFound):
        store.list_batches(old[0])
    assert store.delete_finished_before(now - timedelta(days=30)) == 0
    with pytest.raises(InvalidArgument):
        store.delete_finished_before(now, chunk_size=0)


def test_a_job_never_planned_can_be_failed_once_and_then_not_started(store: JobStore) -> None:
    """A job stuck pending (its planner died) is failed by the sweeper's call; a planner
    resuming too late cannot start it, and a started job cannot be failed this way."""
    stuck = new_job(store)
    failed = store.fail_unplanned(stuck.job_id, error="planning did not finish")
    assert failed.status is JobStatus.FAILED and failed.error == "planning did not finish"
    assert failed.finished_at is not None
    with pytest.raises(InvalidTransition):
        store.add_batches(stuck.job_id, plan_batches(stuck.job_id, ["a"], 1))
    assert store.get_job(stuck.job_id).status is JobStatus.FAILED
    started = planned_job(store, 1)
    with pytest.raises(InvalidTransition):
        store.fail_unplanned(started.job_id, error="x")
    assert store.get_job(started.job_id).status is JobStatus.RUNNING
