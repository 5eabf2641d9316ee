"""SQLite and dropped tasks: a file made before batches counted their dispatch rounds gains
the column, and the sweeper's query reads the partial index, not every batch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from functions.jobs import Job, plan_batches, utcnow
from functions.sqlite_db import Database
from functions.store.sqlite import SqliteJobStore, schema


def test_a_file_from_before_dispatch_rounds_gains_them(tmp_path: Path) -> None:
    """Opening an older file adds dispatch_rounds (0 for the batches it holds), and the
    sweeper's bump then counts from there."""
    path = tmp_path / "old.sqlite3"
    old = Database(path)
    old.executescript(schema())
    old.executescript("ALTER TABLE batches DROP COLUMN dispatch_rounds;")
    old.close()
    store = SqliteJobStore(path)
    job, _ = store.create_job(Job.new(source="noop", collection="c"))
    job = store.add_batches(job.job_id, plan_batches(job.job_id, ["a"], 1))
    store.mark_enqueued(job.job_id, [0], now=utcnow() - timedelta(hours=1))
    ((found_job, batch),) = store.find_dropped(utcnow())
    assert batch.dispatch_rounds == 0
    bumped = store.mark_redispatched(found_job, batch)
    assert bumped is not None and bumped.dispatch_rounds == 1
    store.close()


def test_the_dropped_query_walks_the_partial_index(tmp_path: Path) -> None:
    """The query starts from the oldest enqueued pending batch (batches_enqueued), whatever
    the planner would have chosen: its reads grow with the limit, not with the jobs."""
    store = SqliteJobStore(tmp_path / "fanout.sqlite3")
    statements: list[str] = []
    conn = store.db.conn()
    conn.set_trace_callback(statements.append)
    store.find_dropped(utcnow())
    conn.set_trace_callback(None)
    (query,) = [s for s in statements if s.lstrip().startswith("SELECT b.*")]
    plan = [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + query)]
    assert plan[0] == "SEARCH b USING INDEX batches_enqueued (enqueued_at<?)", plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
    store.close()
