"""Dropped tasks (rule 4): a batch still pending long after its task was enqueued lost that
task, and the sweeper enqueues it again. The store finds such batches and records each
re-dispatch with one conditional write, so that concurrent sweeps agree on the round."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

import pytest

from functions.jobs import Batch, BatchOutcome, JobStatus, utcnow
from functions.store.firestore import FirestoreJobStore
from functions.store.protocol import JobStore
from tests.contract.conftest import StoreFactory
from tests.contract.factories import LEASE, planned_job, run

NO_COLLECTION_GROUPS = "collection-group queries find nothing (only a top-level collection)"


def _found(store: JobStore, cutoff: datetime, *, limit: int = 500) -> list[tuple[str, str, int]]:
    return [
        (job.job_id, job.status.value, batch.index)
        for job, batch in store.find_dropped(cutoff, limit=limit)
    ]


@pytest.mark.firestore_gap(NO_COLLECTION_GROUPS)
def test_pending_batches_enqueued_before_the_cutoff_are_found(store: JobStore) -> None:
    """Found: pending batches enqueued before the cutoff, of running jobs and of cancelled
    ones (which the sweeper ends), oldest enqueue first. Not found: batches enqueued later,
    never enqueued, or claimed since."""
    t0 = utcnow() - timedelta(minutes=10)
    running = planned_job(store, 4)
    store.mark_enqueued(running.job_id, [0, 1, 2], now=t0)
    store.claim_batch(f"{running.job_id}_0002", lease=LEASE)  # reached the worker
    later = planned_job(store, 1)
    store.mark_enqueued(later.job_id, [0], now=t0 + timedelta(seconds=10))
    cancelled = planned_job(store, 1)
    store.mark_enqueued(cancelled.job_id, [0], now=t0 - timedelta(seconds=5))
    store.cancel_job(cancelled.job_id)
    done = planned_job(store, 1)
    store.mark_enqueued(done.job_id, [0], now=t0 - timedelta(seconds=5))
    run(store, done, 0)

    assert _found(store, t0) == [(cancelled.job_id, "cancelled", 0)]
    assert _found(store, t0 + timedelta(seconds=1)) == [
        (cancelled.job_id, "cancelled", 0),
        (running.job_id, "running", 0),
        (running.job_id, "running", 1),
    ]
    assert len(_found(store, t0 + timedelta(seconds=11))) == 4
    job, batch = store.find_dropped(t0 + timedelta(seconds=1))[1]
    assert job.job_id == running.job_id and job.total_batches == 4
    assert batch.enqueued_at == t0 and batch.dispatch_rounds == 0 and batch.items


@pytest.mark.firestore_gap(NO_COLLECTION_GROUPS)
def test_the_query_returns_at_most_limit_batches(store: JobStore) -> None:
    """The sweeper reads a page at a time: `limit` caps the answer, oldest first."""
    t0 = utcnow() - timedelta(minutes=10)
    job = planned_job(store, 5)
    for index in range(5):
        store.mark_enqueued(job.job_id, [index], now=t0 + timedelta(seconds=index))
    cutoff = t0 + timedelta(minutes=1)
    assert [index for _, _, index in _found(store, cutoff, limit=2)] == [0, 1]
    assert [index for _, _, index in _found(store, cutoff, limit=10)] == [0, 1, 2, 3, 4]


def test_a_redispatch_is_recorded_once_per_round(store: JobStore) -> None:
    """The bump applies to the batch as the sweeper read it: a second sweep holding the
    same copy is refused, the new copy moves on to the next round, and a batch claimed
    since (its task did reach the worker) is left alone."""
    job = planned_job(store, 2)
    t0 = utcnow() - timedelta(minutes=10)
    store.mark_enqueued(job.job_id, [0, 1], now=t0)
    read = store.get_batch(f"{job.job_id}_0000")
    t1 = t0 + timedelta(minutes=5)
    bumped = store.mark_redispatched(job, read, now=t1)
    assert bumped is not None
    assert (bumped.dispatch_rounds, bumped.enqueued_at) == (1, t1)
    assert store.mark_redispatched(job, read, now=t1 + timedelta(seconds=1)) is None
    stored = store.get_batch(read.batch_id)
    assert (stored.status, stored.dispatch_rounds, stored.enqueued_at) == (
        JobStatus.PENDING,
        1,
        t1,
    )
    again = store.mark_redispatched(job, stored, now=t1 + timedelta(minutes=5))
    assert again is not None and again.dispatch_rounds == 2
    assert store.get_batch(read.batch_id).dispatch_rounds == 2

    other = store.get_batch(f"{job.job_id}_0001")
    store.claim_batch(other.batch_id, lease=LEASE)
    assert store.mark_redispatched(job, other, now=t1) is None
    claimed = store.get_batch(other.batch_id)
    assert (claimed.status, claimed.dispatch_rounds, claimed.enqueued_at) == (
        JobStatus.RUNNING,
        0,
        t0,
    )


def test_concurrent_sweeps_bump_a_round_once(store_factory: StoreFactory) -> None:
    """Eight sweeps on two clients re-dispatch the same batch at once: one wins, the
    round goes up by one."""
    stores = [store_factory(), store_factory()]
    job = planned_job(stores[0], 1)
    stores[0].mark_enqueued(job.job_id, [0], now=utcnow() - timedelta(minutes=10))
    read = stores[0].get_batch(f"{job.job_id}_0000")
    start = threading.Barrier(8)
    results: list[Batch | None] = []
    lock = threading.Lock()

    def sweep(store: JobStore) -> None:
        start.wait()
        result = store.mark_redispatched(job, read)
        with lock:
            results.append(result)

    threads = [threading.Thread(target=sweep, args=(stores[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8
    assert sum(r is not None for r in results) == 1
    assert stores[1].get_batch(read.batch_id).dispatch_rounds == 1


def test_retry_resets_the_dispatch_rounds(store: JobStore) -> None:
    """A batch failed after its rounds ran out starts again from round 0 on retry, not
    enqueued, so the re-run gets every round again."""
    job = planned_job(store, 2)
    t0 = utcnow() - timedelta(minutes=10)
    store.mark_enqueued(job.job_id, [0, 1], now=t0)
    batch = store.get_batch(f"{job.job_id}_0000")
    for minutes in (1, 2):
        bumped = store.mark_redispatched(job, batch, now=t0 + timedelta(minutes=minutes))
        assert bumped is not None
        batch = bumped
    result = store.finish_batch(
        job, batch, BatchOutcome(JobStatus.FAILED, error="the worker could not be reached")
    )
    assert result.counted
    run(store, job, 1)
    assert store.get_job(job.job_id).status is JobStatus.FAILED
    (reopened,) = store.retry_failed(job.job_id)
    assert (reopened.index, reopened.dispatch_rounds, reopened.enqueued_at) == (0, 0, None)
    stored = store.get_batch(reopened.batch_id)
    assert (stored.status, stored.dispatch_rounds, stored.enqueued_at) == (
        JobStatus.PENDING,
        0,
        None,
    )


@pytest.mark.firestore_only("SQLite checks and bumps the round in one statement")
@pytest.mark.firestore_gap("last_update_time preconditions are ignored")
def test_a_redispatch_that_read_the_batch_before_a_claim_changes_nothing(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep reads a pending batch; a late delivery of its task then claims it. The
    sweep's bump must be refused: the batch is running, its task was not dropped."""
    worker = store_factory()
    sweeper = cast(FirestoreJobStore, store_factory())
    job = planned_job(worker, 1)
    worker.mark_enqueued(job.job_id, [0], now=utcnow() - timedelta(minutes=10))
    found = worker.get_batch(f"{job.job_id}_0000")
    read_batch = sweeper.db.get_all

    def read_then_let_the_delivery_claim(*args: Any, **kwargs: Any) -> Iterator[Any]:
        snapshots = list(read_batch(*args, **kwargs))
        monkeypatch.setattr(sweeper.db, "get_all", read_batch)  # only this read races
        assert worker.claim_batch(found.batch_id, lease=LEASE).granted
        return iter(snapshots)

    monkeypatch.setattr(sweeper.db, "get_all", read_then_let_the_delivery_claim)
    assert sweeper.mark_redispatched(job, found) is None
    batch = worker.get_batch(found.batch_id)
    assert (batch.status, batch.attempts, batch.dispatch_rounds) == (JobStatus.RUNNING, 1, 0)
    assert batch.enqueued_at == found.enqueued_at
