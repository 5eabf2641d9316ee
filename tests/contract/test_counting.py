"""Rules 1 and 2: each batch counts into its job exactly once; the job finalizes once."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

from functions.jobs import BatchOutcome, JobStats, JobStatus
from functions.store.protocol import FinishResult, JobStore
from tests.contract.conftest import StoreFactory
from tests.contract.factories import LEASE, new_job, planned_job, run, stats_for


def test_duplicate_finishes_from_16_threads_count_each_batch_once(
    store_factory: StoreFactory,
) -> None:
    """300 batches, each finished twice, from 16 threads in random order: the job ends with
    exactly 300 completed batches, stats summed once per batch, and one finalizer."""
    store = store_factory()
    job = planned_job(store, 300)
    claims = [store.claim_batch(f"{job.job_id}_{i:04d}", lease=LEASE) for i in range(300)]
    assert all(c.granted for c in claims)
    deliveries = [c for c in claims for _ in range(2)]
    random.Random(7).shuffle(deliveries)
    # Each thread uses its own store instance, as separate function instances would.
    stores = [store_factory() for _ in range(16)]

    def deliver(n: int) -> FinishResult:
        claim = deliveries[n]
        return stores[n % 16].finish_batch(
            claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED, stats_for(claim.batch))
        )

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(deliver, range(len(deliveries))))

    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED
    assert final.completed_batches == 300
    assert final.failed_batches == 0
    assert final.stats == JobStats(files=600, processed=600, chunks=1800, documents=600)
    assert sum(r.counted for r in results) == 300
    assert sum(r.finalized for r in results) == 1
    assert final.finished_at is not None and final.expire_at is not None


def test_concurrent_duplicate_claims_grant_one_lease(store_factory: StoreFactory) -> None:
    """Two deliveries of the same task claiming at once: exactly one gets the batch."""
    store = store_factory()
    job = planned_job(store, 40)
    stores = [store_factory() for _ in range(8)]
    ids = [f"{job.job_id}_{i:04d}" for i in range(40)] * 2
    random.Random(3).shuffle(ids)
    with ThreadPoolExecutor(8) as pool:
        claims = list(
            pool.map(lambda n: stores[n % 8].claim_batch(ids[n], lease=LEASE), range(len(ids)))
        )
    granted = [c.batch.batch_id for c in claims if c.granted]
    assert sorted(granted) == sorted(set(ids))
    assert all(store.get_batch(b).attempts == 1 for b in set(ids))


def test_mix_of_completed_and_failed_finalizes_failed_with_counts(store: JobStore) -> None:
    """A job whose batches end 7 completed and 3 failed finalizes once as failed, 7/3."""
    job = planned_job(store, 10)
    results = [
        run(store, job, i, JobStatus.FAILED if i % 4 == 1 else JobStatus.COMPLETED)
        for i in range(10)
    ]
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.FAILED
    assert (final.completed_batches, final.failed_batches) == (7, 3)
    assert final.error == "3 of 10 batches failed"
    assert [r.finalized for r in results] == [False] * 9 + [True]
    assert results[-1].job.status is JobStatus.FAILED
    failed = store.get_batch(f"{job.job_id}_0001")
    assert failed.status is JobStatus.FAILED and failed.error == "boom"


def test_job_is_running_with_true_sums_until_last_batch(store: JobStore) -> None:
    """Before the last batch, the job is running and shows the true partial sums."""
    job = planned_job(store, 40)  # past the sharding threshold on Firestore
    for i in range(39):
        run(store, job, i)
    partial = store.get_job(job.job_id)
    assert partial.status is JobStatus.RUNNING
    assert partial.completed_batches == 39
    assert partial.stats.files == 78
    assert partial.progress == 39 / 40
    assert run(store, job, 39).finalized


def test_shards_complete_one_by_one_and_only_the_jobs_last_batch_finalizes(
    store: JobStore,
) -> None:
    """70 batches count into 3 shards of 24, 23 and 23 batches (index % 3). Finished shard
    by shard, a completed shard leaves the job running with its exact sums, and only the
    job's last batch finalizes it."""
    job = planned_job(store, 70)
    results = []
    for n, i in enumerate(sorted(range(70), key=lambda i: (i % 3, i)), start=1):
        results.append(run(store, job, i))
        if n in (24, 47):  # shards 0, then 1, just completed
            partial = store.get_job(job.job_id)
            assert partial.status is JobStatus.RUNNING
            assert (partial.completed_batches, partial.stats.files) == (n, 2 * n)
    assert [r.finalized for r in results] == [False] * 69 + [True]
    assert all(r.counted for r in results)
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED and final.completed_batches == 70


def test_finishing_a_terminal_batch_changes_nothing(store: JobStore) -> None:
    """A late duplicate (even claiming another outcome) neither counts nor rewrites."""
    job = planned_job(store, 2)
    claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE)
    first = store.finish_batch(
        claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED, stats_for(claim.batch))
    )
    second = store.finish_batch(
        claim.job, claim.batch, BatchOutcome(JobStatus.FAILED, error="late")
    )
    assert (first.counted, second.counted) == (True, False)
    batch = store.get_batch(f"{job.job_id}_0000")
    assert batch.status is JobStatus.COMPLETED and batch.error is None
    assert store.get_job(job.job_id).failed_batches == 0


def test_finalize_if_complete_is_a_no_op_on_a_finalized_job(store: JobStore) -> None:
    """The sweeper's safety net never finalizes a second time."""
    job = planned_job(store, 3)
    for i in range(3):
        run(store, job, i)
    again = store.finalize_if_complete(job.job_id)
    assert not again.finalized
    assert again.job.status is JobStatus.COMPLETED


def test_job_with_no_batches_completes_at_once(store: JobStore) -> None:
    """Planning zero batches completes the job immediately, with zero counts."""
    job = store.add_batches(new_job(store).job_id, [])
    assert job.status is JobStatus.COMPLETED
    assert store.get_job(job.job_id).status is JobStatus.COMPLETED
    assert store.get_job(job.job_id).progress == 1.0


def test_a_duplicate_holding_a_terminal_copy_is_not_counted(store: JobStore) -> None:
    """A late delivery whose copy of the batch is already terminal is answered as a
    duplicate (not counted), not as an illegal transition."""
    job = planned_job(store, 2)
    run(store, job, 0)
    finished = store.get_batch(f"{job.job_id}_0000")
    again = store.finish_batch(job, finished, BatchOutcome(JobStatus.COMPLETED))
    assert not again.counted and not again.finalized
    assert store.get_job(job.job_id).completed_batches == 1
