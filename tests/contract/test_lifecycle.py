"""Creating, planning, claiming and progress: the batch lifecycle every backend shares."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.errors import BatchNotFound, InvalidArgument, InvalidTransition, JobNotFound
from functions.jobs import Batch, BatchOutcome, Job, JobStats, JobStatus, plan_batches, utcnow
from functions.store.protocol import JobQuery, JobStore
from tests.contract.factories import LEASE, new_job, planned_job


def test_create_is_idempotent_on_client_and_request_id(store: JobStore) -> None:
    """The same (client_id, request_id) returns the first job and creates no second one."""
    first = new_job(store, client_id="acme", request_id="r-1")
    again, created = store.create_job(
        Job.new(source="other", collection="c", client_id="acme", request_id="r-1")
    )
    assert not created
    assert again.job_id == first.job_id and again.source == "noop"
    other, created = store.create_job(
        Job.new(source="noop", collection="c", client_id="acme", request_id="r-2")
    )
    assert created and other.job_id != first.job_id
    assert store.list_jobs(JobQuery.build(client_id="acme")).total == 2


def test_get_returns_what_was_stored(store: JobStore) -> None:
    """A stored job reads back field for field, with real timestamps."""
    job = Job.new(
        source="noop",
        collection="docs",
        request={"items": ["a"], "n": 2},
        client_id="c",
        request_id="r",
        callback_url="https://example.com/cb",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    )
    stored, _ = store.create_job(job)
    read = store.get_job(job.job_id)
    assert read == stored == job
    assert read.created_at.tzinfo is not None


def test_unknown_and_malformed_ids_are_not_found(store: JobStore) -> None:
    """Unknown ids, and ids that could never exist (a '/' included), raise NotFound."""
    with pytest.raises(JobNotFound):
        store.get_job("20260101-000000-000000-deadbeef")
    with pytest.raises(JobNotFound):
        store.get_job("../jobs/x")
    with pytest.raises(BatchNotFound):
        store.get_batch("20260101-000000-000000-deadbeef_0000")
    with pytest.raises(BatchNotFound):
        store.get_batch("nonsense")
    job = planned_job(store, 2)
    with pytest.raises(BatchNotFound):
        store.get_batch(f"{job.job_id}_0002")
    with pytest.raises(BatchNotFound):
        store.claim_batch(f"{job.job_id}_0009", lease=LEASE)


def test_add_batches_starts_the_job_and_stores_every_batch(store: JobStore) -> None:
    """Planning records each batch with its items, pending, and moves the job to running."""
    job = new_job(store)
    items = [f"doc-{i}" for i in range(25)]
    running = store.add_batches(job.job_id, plan_batches(job.job_id, items, 10))
    assert running.status is JobStatus.RUNNING and running.total_batches == 3
    assert store.get_job(job.job_id).started_at is not None
    last = store.get_batch(f"{job.job_id}_0002")
    assert last.items == tuple(items[20:]) and last.status is JobStatus.PENDING
    assert last.attempts == 0 and last.index == 2


def test_add_batches_twice_or_foreign_batches_is_refused(store: JobStore) -> None:
    """A job is planned once; batches of another job or out of order are refused, and a
    refused call writes nothing."""
    job = new_job(store)
    other = new_job(store)
    with pytest.raises(InvalidArgument):
        store.add_batches(job.job_id, plan_batches(other.job_id, ["a"], 1))
    assert store.get_job(job.job_id).status is JobStatus.PENDING
    assert store.list_batches(job.job_id).total == 0
    store.add_batches(job.job_id, plan_batches(job.job_id, ["a", "b"], 1))
    with pytest.raises(InvalidTransition):
        store.add_batches(job.job_id, plan_batches(job.job_id, ["x"], 1))
    assert store.get_batch(f"{job.job_id}_0000").items == ("a",)
    with pytest.raises(JobNotFound):
        store.add_batches("20260101-000000-000000-deadbeef", [])


def test_claim_takes_a_lease_and_counts_attempts(store: JobStore) -> None:
    """A claim sets running, attempts + 1 and a lease; a second claim is refused while the
    lease holds."""
    job = planned_job(store, 1)
    now = utcnow()
    claim = store.claim_batch(f"{job.job_id}_0000", lease=timedelta(seconds=30), now=now)
    assert claim.granted
    assert claim.batch.status is JobStatus.RUNNING and claim.batch.attempts == 1
    stored = store.get_batch(claim.batch.batch_id)
    assert stored.attempts == 1 and stored.lease_expires_at == now + timedelta(seconds=30)
    duplicate = store.claim_batch(
        claim.batch.batch_id, lease=LEASE, now=now + timedelta(seconds=10)
    )
    assert not duplicate.granted and "leased" in (duplicate.reason or "")
    assert store.get_batch(claim.batch.batch_id).attempts == 1


def test_expired_lease_is_found_and_can_be_claimed_again(store: JobStore) -> None:
    """After the lease expires the sweeper finds the batch, and a new claim gets attempt 2."""
    job = planned_job(store, 3)
    now = utcnow()
    store.claim_batch(f"{job.job_id}_0001", lease=timedelta(seconds=60), now=now)
    store.claim_batch(f"{job.job_id}_0002", lease=timedelta(seconds=600), now=now)
    assert store.find_expired_leases(now + timedelta(seconds=30)) == []
    expired = store.find_expired_leases(now + timedelta(seconds=61))
    assert [(j.job_id, b.batch_id) for j, b in expired] == [(job.job_id, f"{job.job_id}_0001")]
    reclaim = store.claim_batch(f"{job.job_id}_0001", lease=LEASE, now=now + timedelta(seconds=61))
    assert reclaim.granted and reclaim.batch.attempts == 2
    # The sweeper can fail a batch whose attempts are exhausted; the job then finalizes.
    stale_job, stale = expired[0]
    store.finish_batch(
        stale_job, reclaim.batch, BatchOutcome(JobStatus.FAILED, error="attempts exhausted")
    )
    assert store.get_batch(stale.batch_id).status is JobStatus.FAILED


def test_claim_is_refused_for_terminal_batches(store: JobStore) -> None:
    """A completed batch is never claimed again (terminal states are stable)."""
    job = planned_job(store, 2)
    claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE)
    store.finish_batch(claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED))
    again = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=utcnow() + timedelta(hours=1))
    assert not again.granted and again.reason == "batch is completed"
    assert store.get_batch(f"{job.job_id}_0000").attempts == 1


def test_progress_is_saved_and_extends_the_lease(store: JobStore) -> None:
    """The lease holder's progress is stored; a stale attempt's progress is refused."""
    job = planned_job(store, 1)
    now = utcnow()
    claim = store.claim_batch(f"{job.job_id}_0000", lease=timedelta(seconds=30), now=now)
    later = now + timedelta(seconds=20)
    kept = store.record_progress(
        claim.batch,
        progress=0.5,
        stats=JobStats(processed=1),
        lease=timedelta(seconds=30),
        now=later,
    )
    assert kept
    batch = store.get_batch(claim.batch.batch_id)
    assert batch.progress == 0.5 and batch.stats.processed == 1
    assert batch.lease_expires_at == later + timedelta(seconds=30)
    stale = Batch.from_dict({**claim.batch.to_dict(), "attempts": 0})
    assert not store.record_progress(stale, progress=0.9, stats=JobStats(), lease=LEASE)
    assert store.get_batch(claim.batch.batch_id).progress == 0.5


def test_progress_out_of_range_is_refused(store: JobStore) -> None:
    """Progress is a share: values outside 0..1 raise InvalidArgument and write nothing."""
    job = planned_job(store, 1)
    claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE)
    with pytest.raises(InvalidArgument):
        store.record_progress(claim.batch, progress=1.5, stats=JobStats(), lease=LEASE)
    assert store.get_batch(claim.batch.batch_id).progress == 0.0


def test_completing_a_batch_that_was_never_claimed_is_an_illegal_transition(
    store: JobStore,
) -> None:
    """pending -> completed skips the run; it raises and counts nothing."""
    job = planned_job(store, 2)
    pending = store.get_batch(f"{job.job_id}_0000")
    with pytest.raises(InvalidTransition):
        store.finish_batch(job, pending, BatchOutcome(JobStatus.COMPLETED))
    assert store.get_job(job.job_id).completed_batches == 0
    assert store.get_batch(pending.batch_id).status is JobStatus.PENDING


def test_unenqueued_batches_are_found_once_the_grace_period_passed(store: JobStore) -> None:
    """Batches recorded but never enqueued are found; enqueued ones are not."""
    job = planned_job(store, 4)
    store.mark_enqueued(job.job_id, [0, 2])
    started = store.get_job(job.job_id).started_at
    assert started is not None
    assert store.find_unenqueued(started) == []
    found = store.find_unenqueued(started + timedelta(seconds=1))
    assert [b.index for _, b in found] == [1, 3]
    assert store.get_batch(f"{job.job_id}_0000").enqueued_at is not None


def test_released_lease_lets_the_retry_claim_at_once(store: JobStore) -> None:
    """After a transient failure the worker releases its lease; the queue's retry then
    claims the batch (attempt 2) instead of finding it leased. A stale attempt cannot
    release a newer attempt's lease."""
    job = planned_job(store, 1)
    now = utcnow()
    first = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=now)
    assert store.release_lease(first.batch, now=now)
    retry = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=now + timedelta(seconds=1))
    assert retry.granted and retry.batch.attempts == 2
    assert not store.release_lease(first.batch)
    assert not store.claim_batch(f"{job.job_id}_0000", lease=LEASE).granted


def test_a_claim_records_where_its_attempt_runs(store: JobStore) -> None:
    """Each attempt records where it ran; a later attempt replaces the earlier place, and
    the batch keeps it after it ends (it shows in the API)."""
    job = planned_job(store, 1)
    batch_id = f"{job.job_id}_0000"
    first = store.claim_batch(batch_id, lease=timedelta(seconds=1), ran_on="rev-1/instance a")
    assert first.batch.ran_on == store.get_batch(batch_id).ran_on == "rev-1/instance a"
    later = utcnow() + timedelta(seconds=2)  # the first lease has expired
    second = store.claim_batch(batch_id, lease=LEASE, ran_on="rev-1/instance b", now=later)
    assert second.granted and second.batch.attempts == 2
    store.finish_batch(second.job, second.batch, BatchOutcome(JobStatus.COMPLETED))
    assert store.get_batch(batch_id).ran_on == "rev-1/instance b"
