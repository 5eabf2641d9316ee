"""The embedded store is shared by several processes (functions, dispatcher, CLI)."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

from functions.jobs import BatchOutcome, JobStats, JobStatus
from functions.store.sqlite import SqliteJobStore
from tests.contract.factories import LEASE, planned_job, stats_for


def _finish_all(path: str, job_id: str, indexes: list[int], seed: int) -> tuple[int, int]:
    """One worker process: finish every given batch; return (counted, finalized)."""
    store = SqliteJobStore(path)
    job = store.get_job(job_id)
    order = list(indexes)
    random.Random(seed).shuffle(order)
    counted = finalized = 0
    for index in order:
        batch = store.get_batch(f"{job_id}_{index:04d}")
        result = store.finish_batch(job, batch, BatchOutcome(JobStatus.COMPLETED, stats_for(batch)))
        counted += result.counted
        finalized += result.finalized
    store.close()
    return counted, finalized


def test_duplicate_finishes_from_4_processes_count_each_batch_once(tmp_path: Path) -> None:
    """300 batches, each finished twice, split across 4 processes in random order."""
    path = tmp_path / "jobs.sqlite3"
    store = SqliteJobStore(path)
    job = planned_job(store, 300)
    for i in range(300):
        assert store.claim_batch(f"{job.job_id}_{i:04d}", lease=LEASE).granted
    deliveries = list(range(300)) * 2
    random.Random(11).shuffle(deliveries)
    shares = [deliveries[k::4] for k in range(4)]
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        results = pool.starmap(
            _finish_all, [(str(path), job.job_id, share, k) for k, share in enumerate(shares)]
        )
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED
    assert final.completed_batches == 300
    assert final.stats == JobStats(files=600, processed=600, chunks=1800, documents=600)
    assert sum(c for c, _ in results) == 300
    assert sum(f for _, f in results) == 1
