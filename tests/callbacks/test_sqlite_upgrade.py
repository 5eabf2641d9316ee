"""A SQLite file from before callback redelivery gains its columns and index on opening,
and a job finished afterwards is owed its callback like any other."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from functions.jobs import BatchOutcome, Job, JobStatus, plan_batches, utcnow
from functions.sqlite_db import Database
from functions.store.sqlite import SqliteJobStore, schema

COLUMNS = ("callback_attempts", "callback_error", "callback_pending_since")


def test_a_file_from_before_redelivery_gains_the_callback_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    old = Database(path)
    old.executescript(schema())
    old.executescript("".join(f"ALTER TABLE jobs DROP COLUMN {c};" for c in COLUMNS))
    old.close()
    store = SqliteJobStore(path)
    conn = store.db.conn()
    columns = {row["name"] for row in conn.execute("PRAGMA table_info(jobs)")}
    assert set(COLUMNS) <= columns
    indexes = {row["name"] for row in conn.execute("PRAGMA index_list(jobs)")}
    assert "jobs_callback_pending" in indexes
    job, _ = store.create_job(
        Job.new(source="noop", collection="c", callback_url="https://example.com/hook")
    )
    store.add_batches(job.job_id, plan_batches(job.job_id, ["a"], 1))
    claim = store.claim_batch(f"{job.job_id}_0000", lease=timedelta(minutes=1))
    store.finish_batch(claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED))
    owed = store.find_undelivered_callbacks(utcnow() + timedelta(hours=1))
    assert [j.job_id for j in owed] == [job.job_id]
    assert owed[0].callback_attempts == 0
    store.close()
