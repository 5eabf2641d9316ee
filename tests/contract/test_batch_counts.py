"""The batch summary of `GET /jobs/{id}`: how many of a job's batches are in each status,
exact, in a fixed number of store reads whatever the job's size."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from functions.jobs import BATCH_STATUSES, BatchOutcome, Job, JobStats, JobStatus
from functions.sqlite_db import counting_work
from functions.store.firestore import FirestoreJobStore
from functions.store.protocol import BatchCounts, JobStore
from functions.store.sqlite import SqliteJobStore
from tests.contract.factories import LEASE, planned_job, run

# Every RPC a Firestore read (or write) can take.
FIRESTORE_RPCS = (
    "batch_get_documents",
    "get_document",
    "list_documents",
    "run_query",
    "run_aggregation_query",
    "begin_transaction",
    "commit",
    "rollback",
)


def _claim(store: JobStore, job: Job, *indexes: int) -> None:
    for index in indexes:
        assert store.claim_batch(f"{job.job_id}_{index:04d}", lease=LEASE).granted


def _by_listing(store: JobStore, job: Job) -> dict[str, int]:
    """The counts the slow way: one listing total per status (what the API used to do)."""
    return {
        s.value: store.list_batches(job.job_id, status=s, limit=1).total for s in BATCH_STATUSES
    }


def _counts(store: JobStore, job_id: str) -> BatchCounts:
    return store.batch_counts(store.get_job(job_id))


def test_counts_match_the_batches_while_a_job_runs(store: JobStore) -> None:
    """40 batches (several counter shards): 5 completed, 3 failed, 4 running, 28 pending,
    the same as counting each status's batches one by one."""
    job = planned_job(store, 40)
    for i in range(5):
        run(store, job, i)
    for i in range(5, 8):
        run(store, job, i, JobStatus.FAILED)
    _claim(store, job, 8, 9, 10, 11)
    counts = _counts(store, job.job_id)
    assert counts == BatchCounts(pending=28, running=4, completed=5, failed=3, cancelled=0)
    assert counts.to_dict() == _by_listing(store, job)
    assert list(counts.to_dict()) == ["pending", "running", "completed", "failed", "cancelled"]


def test_a_cancelled_job_counts_the_batches_its_cancel_ended(store: JobStore) -> None:
    """After a cancel, refused deliveries end their batches cancelled, and so does a
    running batch whose next progress write is refused; one that finishes first still
    counts as completed. Batches whose task has not come yet stay pending."""
    job = planned_job(store, 40)
    run(store, job, 0)
    run(store, job, 1, JobStatus.FAILED)
    _claim(store, job, 2, 3, 4)
    store.cancel_job(job.job_id)
    for i in range(5, 15):
        assert store.claim_batch(f"{job.job_id}_{i:04d}", lease=LEASE).reason == "job is cancelled"
    running = store.get_batch(f"{job.job_id}_0002")
    assert not store.record_progress(running, progress=0.5, stats=JobStats(), lease=LEASE)
    store.finish_batch(store.get_job(job.job_id), running, BatchOutcome(JobStatus.CANCELLED))
    late = store.get_batch(f"{job.job_id}_0003")
    store.finish_batch(store.get_job(job.job_id), late, BatchOutcome(JobStatus.COMPLETED))
    counts = _counts(store, job.job_id)
    assert counts == BatchCounts(pending=25, running=1, completed=2, failed=1, cancelled=11)
    assert counts.to_dict() == _by_listing(store, job)


def test_finished_retried_and_unplanned_jobs(store: JobStore) -> None:
    """A finished job's counts are its counters; a retry moves its failed batches back to
    pending; a job not planned yet has no batches."""
    job = planned_job(store, 6)
    for i in range(6):
        run(store, job, i, JobStatus.FAILED if i in (2, 4) else JobStatus.COMPLETED)
    assert _counts(store, job.job_id) == BatchCounts(completed=4, failed=2)
    store.retry_failed(job.job_id)
    assert _counts(store, job.job_id) == BatchCounts(pending=2, completed=4)
    run(store, job, 2)
    assert _counts(store, job.job_id) == BatchCounts(pending=1, completed=5)
    assert _counts(store, job.job_id).to_dict() == _by_listing(store, job)
    run(store, job, 4)
    assert _counts(store, job.job_id) == BatchCounts(completed=6)
    unplanned, _ = store.create_job(Job.new(source="noop", collection="docs"))
    assert store.batch_counts(unplanned) == BatchCounts()


@dataclass
class Cost:
    """What reading the counts cost: statements (SQLite) or RPCs (Firestore), and, for
    SQLite, the virtual machine steps, which grow with every row or index entry read."""

    calls: int = 0
    steps: int = 0


@contextmanager
def _cost(store: JobStore) -> Iterator[Cost]:
    cost = Cost()
    if isinstance(store, SqliteJobStore):
        with counting_work(store.db.conn()) as work:  # this thread's: the store's
            try:
                yield cost
            finally:
                cost.calls, cost.steps = work.statements, work.vm_steps
        return
    assert isinstance(store, FirestoreJobStore)
    api = store.db._firestore_api
    originals = {name: getattr(api, name) for name in FIRESTORE_RPCS}

    def counted(fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            cost.calls += 1
            return fn(*args, **kwargs)

        return call

    for name, fn in originals.items():
        setattr(api, name, counted(fn))
    try:
        yield cost
    finally:
        for name, fn in originals.items():
            setattr(api, name, fn)


def test_the_reads_do_not_grow_with_the_job(store: JobStore) -> None:
    """A 20-batch and a 600-batch job, each with 2 completed and 3 running batches: the
    counts take the same reads (the same SQLite steps, so no scan of the job's batches);
    a running job takes one read, a cancelled one two, a finished one none."""
    costs = {}
    jobs = {}
    for size in (20, 600):
        job = planned_job(store, size, items_per_batch=1)
        run(store, job, 0)
        run(store, job, 1)
        _claim(store, job, 2, 3, 4)
        jobs[size] = read = store.get_job(job.job_id)
        with _cost(store) as cost:
            assert store.batch_counts(read) == BatchCounts(pending=size - 5, running=3, completed=2)
        costs[size] = cost
    assert costs[20] == costs[600]
    assert costs[20].calls == 1
    for size, job in jobs.items():
        cancelled = store.cancel_job(job.job_id)
        with _cost(store) as cost:
            assert store.batch_counts(cancelled).running == 3
        assert cost.calls == 2, size
    finished = planned_job(store, 1)
    run(store, finished, 0)
    read = store.get_job(finished.job_id)
    with _cost(store) as cost:
        assert store.batch_counts(read) == BatchCounts(completed=1)
    assert cost == Cost()
