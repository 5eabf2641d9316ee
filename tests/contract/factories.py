"""Small builders the contract tests share."""

from __future__ import annotations

from datetime import timedelta

from functions.jobs import Batch, BatchOutcome, Job, JobStats, JobStatus, plan_batches
from functions.priority import Priority
from functions.store.protocol import FinishResult, JobStore

LEASE = timedelta(minutes=5)


def new_job(
    store: JobStore,
    *,
    source: str = "noop",
    client_id: str | None = None,
    request_id: str | None = None,
    priority: Priority = Priority.NORMAL,
) -> Job:
    job, created = store.create_job(
        Job.new(
            source=source,
            collection="docs",
            request={"items": 1},
            client_id=client_id,
            request_id=request_id,
            priority=priority,
        )
    )
    assert created
    return job


def planned_job(
    store: JobStore,
    batches: int,
    *,
    items_per_batch: int = 2,
    source: str = "noop",
    priority: Priority = Priority.NORMAL,
) -> Job:
    """A running job with `batches` batches of `items_per_batch` items each."""
    job = new_job(store, source=source, priority=priority)
    items = [f"doc-{i}" for i in range(batches * items_per_batch)]
    return store.add_batches(job.job_id, plan_batches(job.job_id, items, items_per_batch))


def stats_for(batch: Batch) -> JobStats:
    """Deterministic per-batch stats, so sums are checkable."""
    n = len(batch.items)
    return JobStats(files=n, processed=n, failed=0, chunks=3 * n, documents=n)


def run(
    store: JobStore, job: Job, index: int, status: JobStatus = JobStatus.COMPLETED
) -> FinishResult:
    """Claim batch `index` and finish it with `status`."""
    claim = store.claim_batch(f"{job.job_id}_{index:04d}", lease=LEASE)
    assert claim.granted, claim.reason
    return store.finish_batch(
        claim.job,
        claim.batch,
        BatchOutcome(
            status, stats_for(claim.batch), error="boom" if status is JobStatus.FAILED else None
        ),
    )
