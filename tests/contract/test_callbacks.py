"""Callback delivery state, on every backend: finalizing owes a callback, a claim takes
one attempt (exactly one of concurrent claims wins), recording ends or keeps the debt, and
the sweeper's query finds exactly the owed callbacks whose latest attempt is old enough."""

from __future__ import annotations

import threading
from datetime import timedelta

from functions.jobs import Job, JobStatus, plan_batches, utcnow
from functions.store.protocol import JobStore
from tests.contract.conftest import StoreFactory
from tests.contract.factories import run

LATER = timedelta(hours=1)
URL = "https://receiver.example.com/hook"


def finished_job(
    store: JobStore, status: JobStatus = JobStatus.COMPLETED, *, url: str | None = URL
) -> Job:
    """A one-batch job with a callback URL, finalized with `status`."""
    job, _ = store.create_job(Job.new(source="noop", collection="docs", callback_url=url))
    store.add_batches(job.job_id, plan_batches(job.job_id, ["a", "b"], 2))
    result = run(store, job, 0, status)
    assert result.finalized
    return result.job


def owed(store: JobStore) -> list[str]:
    return [job.job_id for job in store.find_undelivered_callbacks(utcnow() + LATER)]


def test_finalizing_a_job_with_a_callback_owes_it(store: JobStore) -> None:
    """A finalized job with a callback_url is owed its callback, attempts 0; a job without
    one, or still running, never is. The sweeper's query leaves alone what finalized after
    its cutoff."""
    job = finished_job(store)
    assert (job.callback_attempts, job.callback_status, job.callback_error) == (0, None, None)
    finished_job(store, url=None)
    running, _ = store.create_job(Job.new(source="noop", collection="docs", callback_url=URL))
    store.add_batches(running.job_id, plan_batches(running.job_id, ["a"], 1))
    assert owed(store) == [job.job_id]
    assert store.find_undelivered_callbacks(utcnow() - LATER) == []


def test_a_claim_takes_one_attempt_and_a_stale_claim_gets_nothing(store: JobStore) -> None:
    """Claiming increments the attempts; a second claim from the same read of the job is
    refused, and one from the claimed job takes the next attempt."""
    job = finished_job(store)
    first = store.claim_callback(job)
    assert first is not None and first.callback_attempts == 1
    assert first.status is JobStatus.COMPLETED and first.callback_url == URL
    assert store.claim_callback(job) is None
    second = store.claim_callback(first)
    assert second is not None and second.callback_attempts == 2
    assert store.get_job(job.job_id).callback_attempts == 2


def test_concurrent_claims_of_one_attempt_have_one_winner(store_factory: StoreFactory) -> None:
    """Eight claims of the same attempt, at once, through separate store instances: one
    wins, the job shows one attempt."""
    store = store_factory()
    job = finished_job(store)
    stores = [store_factory() for _ in range(8)]
    start = threading.Barrier(len(stores))
    won: list[Job | None] = [None] * len(stores)

    def claim(index: int) -> None:
        start.wait()
        won[index] = stores[index].claim_callback(job)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(claimed is not None for claimed in won) == 1
    assert store.get_job(job.job_id).callback_attempts == 1


def test_a_delivery_ends_the_deliveries(store: JobStore) -> None:
    """Recorded delivered, the callback is no longer owed and no claim succeeds."""
    claimed = store.claim_callback(finished_job(store))
    assert claimed is not None
    store.record_callback(claimed, status="delivered: HTTP 200", error=None, owed=False)
    stored = store.get_job(claimed.job_id)
    assert (stored.callback_status, stored.callback_error) == ("delivered: HTTP 200", None)
    assert stored.callback_attempts == 1
    assert owed(store) == []
    assert store.claim_callback(stored) is None


def test_a_failed_attempt_stays_owed_until_given_up(store: JobStore) -> None:
    """A retryable failure keeps the callback owed, from the attempt's start; the next
    claim takes attempt 2. A failure recorded as given up ends it."""
    job = finished_job(store, JobStatus.FAILED)
    claimed_at = utcnow()
    claimed = store.claim_callback(job, now=claimed_at)
    assert claimed is not None
    store.record_callback(claimed, status="failed: HTTP 503", error="failed: HTTP 503", owed=True)
    stored = store.get_job(job.job_id)
    assert (stored.callback_status, stored.callback_error) == (
        "failed: HTTP 503",
        "failed: HTTP 503",
    )
    assert store.find_undelivered_callbacks(claimed_at) == []
    assert owed(store) == [job.job_id]
    again = store.claim_callback(stored)
    assert again is not None and again.callback_attempts == 2
    store.record_callback(
        again, status="rejected: HTTP 404", error="rejected: HTTP 404", owed=False
    )
    assert owed(store) == []
    assert store.get_job(job.job_id).callback_error == "rejected: HTTP 404"


def test_a_late_attempt_records_its_delivery_but_not_its_failure(store: JobStore) -> None:
    """Once a newer attempt was claimed, an older attempt's failure is dropped; its delivery
    still counts (the receiver has it) and ends the deliveries."""
    first = store.claim_callback(finished_job(store))
    assert first is not None
    second = store.claim_callback(first)
    assert second is not None
    store.record_callback(first, status="failed: timed out", error="failed: timed out", owed=True)
    assert store.get_job(first.job_id).callback_status is None
    store.record_callback(first, status="delivered: HTTP 204", error=None, owed=False)
    assert store.get_job(first.job_id).callback_status == "delivered: HTTP 204"
    store.record_callback(second, status="failed: HTTP 500", error="failed: HTTP 500", owed=True)
    assert store.get_job(first.job_id).callback_status == "delivered: HTTP 204"
    assert owed(store) == []


def test_a_retry_owes_a_new_callback_once_it_finalizes_again(store: JobStore) -> None:
    """A failed job's callback, delivered; the retry re-opens it (nothing owed while it
    runs, and a claim from before the retry gets nothing); finalizing again owes a new
    callback with attempts from 0."""
    job = finished_job(store, JobStatus.FAILED)
    claimed = store.claim_callback(job)
    assert claimed is not None
    store.record_callback(claimed, status="failed: HTTP 502", error="failed: HTTP 502", owed=True)
    store.retry_failed(job.job_id)
    assert owed(store) == []
    retried = store.get_job(job.job_id)
    assert store.claim_callback(retried) is None
    result = run(store, retried, 0)
    assert result.finalized
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED and final.retries == 1
    assert (final.callback_attempts, final.callback_status, final.callback_error) == (0, None, None)
    assert owed(store) == [job.job_id]
    assert store.claim_callback(claimed) is None
    fresh = store.claim_callback(final)
    assert fresh is not None and fresh.callback_attempts == 1


def test_the_sweepers_query_is_oldest_first_and_bounded(store: JobStore) -> None:
    """Owed callbacks come oldest attempt first, at most `limit`."""
    jobs = [finished_job(store) for _ in range(3)]
    base = utcnow()
    for offset, job in zip((2, 0, 1), jobs, strict=True):
        claimed = store.claim_callback(job, now=base + timedelta(seconds=offset))
        assert claimed is not None
        store.record_callback(claimed, status="failed: x", error="failed: x", owed=True)
    found = store.find_undelivered_callbacks(base + LATER, limit=2)
    assert [j.job_id for j in found] == [jobs[1].job_id, jobs[2].job_id]
