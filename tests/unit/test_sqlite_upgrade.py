"""A SQLite file written by an older Fanout (fewer stats) keeps working after an upgrade."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from functions.jobs import STAT_FIELDS, BatchOutcome, Job, JobStats, JobStatus, plan_batches
from functions.sqlite_db import Database
from functions.store.protocol import BatchCounts
from functions.store.sqlite import SqliteJobStore, _triggers, schema

OLD_STATS = ("files", "processed", "failed", "chunks", "documents")


def test_a_file_from_before_the_new_stats_gains_them_and_counts_them(tmp_path: Path) -> None:
    """Opening an older file adds the new stat columns and rebuilds the counting triggers,
    so a job finished afterwards adds up every stat, the new ones included."""
    path = tmp_path / "old.sqlite3"
    old = Database(path)
    old.executescript(schema(OLD_STATS))
    old.close()
    store = SqliteJobStore(path)
    job, _ = store.create_job(Job.new(source="documents", collection="c"))
    store.add_batches(job.job_id, plan_batches(job.job_id, ["a", "b"], 1))
    for index in (0, 1):
        claim = store.claim_batch(f"{job.job_id}_{index:04d}", lease=timedelta(minutes=1))
        stats = JobStats(files=1, processed=1, skipped=2, bytes_read=100)
        store.finish_batch(claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED, stats))
    final = store.get_job(job.job_id)
    assert final.status is JobStatus.COMPLETED
    assert final.stats == JobStats(files=2, processed=2, skipped=4, bytes_read=200)
    store.close()


def test_a_file_from_before_traces_gains_the_trace_and_where_a_batch_ran(tmp_path: Path) -> None:
    """Opening a file made before jobs kept a trace (and batches where they ran) adds both
    columns, and a job recorded afterwards keeps them."""
    path = tmp_path / "old.sqlite3"
    old = Database(path)
    old.executescript(schema(OLD_STATS))
    old.executescript(
        "ALTER TABLE jobs DROP COLUMN trace_id; ALTER TABLE batches DROP COLUMN ran_on;"
    )
    old.close()
    store = SqliteJobStore(path)
    job, _ = store.create_job(Job.new(source="noop", collection="c", trace_id="ab" * 16))
    store.add_batches(job.job_id, plan_batches(job.job_id, ["a"], 1))
    claim = store.claim_batch(f"{job.job_id}_0000", lease=timedelta(minutes=1), ran_on="host pid 7")
    assert store.get_job(job.job_id).trace_id == "ab" * 16
    assert claim.batch.ran_on == store.get_batch(f"{job.job_id}_0000").ran_on == "host pid 7"
    store.close()


def test_a_file_from_before_cancelled_counts_counts_its_cancelled_batches(
    tmp_path: Path,
) -> None:
    """A file whose counter shards did not count cancelled batches (made here by the real
    store, then taken back to the old schema) gains the counter on opening, with the
    batches cancelled before counted in, and counts the ones cancelled afterwards."""
    path = tmp_path / "old.sqlite3"
    store = SqliteJobStore(path)
    job, _ = store.create_job(Job.new(source="noop", collection="c"))
    store.add_batches(job.job_id, plan_batches(job.job_id, list("abcdef"), 1))
    lease = timedelta(minutes=1)
    claim = store.claim_batch(f"{job.job_id}_0000", lease=lease)
    store.finish_batch(claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED))
    store.cancel_job(job.job_id)
    for index in (1, 2):
        assert not store.claim_batch(f"{job.job_id}_{index:04d}", lease=lease).granted
    store.close()
    old = Database(path)
    old.executescript(
        "DROP TRIGGER count_batch; DROP TRIGGER uncount_batch;"
        " ALTER TABLE job_counters DROP COLUMN cancelled_batches;"
        + ";".join(_triggers(STAT_FIELDS, ("completed", "failed")))
    )
    old.close()

    store = SqliteJobStore(path)
    assert store.batch_counts(store.get_job(job.job_id)) == BatchCounts(
        pending=3, completed=1, cancelled=2
    )
    assert not store.claim_batch(f"{job.job_id}_0003", lease=lease).granted
    assert store.batch_counts(store.get_job(job.job_id)) == BatchCounts(
        pending=2, completed=1, cancelled=3
    )
    store.close()
