"""`SqliteJobStore`: the embedded default. One file, WAL mode, safe for many processes.

Every write runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's single writer lock
up front, so a read-check-write (is this batch already terminal? is the job done?) cannot
interleave with another process's. That is what gives rules 1 and 2 here: counting a batch
and finalizing its job happen in the same transaction as the status check.

Timestamps are stored as integer microseconds since the epoch (UTC), so that they compare and
index as numbers; the schema otherwise mirrors the Firestore documents.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.errors import BatchNotFound, InvalidArgument, InvalidTransition, JobNotFound
from functions.jobs import (
    STAT_FIELDS,
    Batch,
    BatchOutcome,
    Job,
    JobStats,
    JobStatus,
    batch_statuses_leading_to,
    check_job_id,
    check_transition,
    parse_batch_id,
    utcnow,
)
from functions.paging import decode_cursor, encode_cursor
from functions.priority import Priority
from functions.sqlite_db import Database
from functions.store.finalize import expire_at_for, final_fields
from functions.store.job_cursor import decode_job_cursor
from functions.store.protocol import (
    DEFAULT_PAGE_SIZE,
    BatchCounts,
    Claim,
    FinishResult,
    Found,
    JobQuery,
    Page,
    Planned,
    PlanPage,
    check_limit,
    check_progress,
    not_due,
)
from functions.store.shards import MATERIALIZED, counter_shards

_STAT_COLUMNS = tuple(f"stat_{name}" for name in STAT_FIELDS)
# Statuses a job finalizes from. Scheduled: planned by pages, and not one batch (none runs
# before its start, so no other scheduled job has all its batches counted).
_FINALIZABLE = frozenset({JobStatus.RUNNING, JobStatus.SCHEDULED})
# Columns added after the first release, which older files lack.
_LATER_TEXT_COLUMNS = {
    "jobs": {
        "trace_id": "TEXT",
        "callback_attempts": "INTEGER NOT NULL DEFAULT 0",
        "callback_error": "TEXT",
        "callback_pending_since": "INTEGER",
        "priority": "TEXT NOT NULL DEFAULT 'normal'",
        "not_before": "INTEGER",
        "planning": "INTEGER NOT NULL DEFAULT 0",
        "plan_pages": "INTEGER NOT NULL DEFAULT 0",
        "plan_cursor": "TEXT",
        "planned_items": "INTEGER NOT NULL DEFAULT 0",
    },
    "batches": {
        "ran_on": "TEXT",
        "dispatch_rounds": "INTEGER NOT NULL DEFAULT 0",
    },
}


# The batch outcomes each counter shard counts: completed and failed make the job's
# counters; cancelled gives the batch summary of a cancelled job (`batch_counts`).
BATCH_COUNTERS = ("completed", "failed", "cancelled")


def _count_sql(stat_fields: Sequence[str], counters: Sequence[str]) -> str:
    """Adds ({sign}="") or removes ("-") the outcome of batch {row} on its counter shard."""
    columns = (*(f"{c}_batches" for c in counters), *(f"stat_{n}" for n in stat_fields))
    return (
        f"INSERT INTO job_counters (job_id, shard, {', '.join(columns)}) VALUES ("
        "{row}.job_id, {row}.batch_index % (SELECT counter_shards FROM jobs"
        " WHERE job_id = {row}.job_id), "
        + "".join(f"{{sign}}({{row}}.status = '{c}'), " for c in counters)
        + ", ".join(
            f"{{sign}}COALESCE(json_extract({{row}}.stats, '$.{name}'), 0)" for name in stat_fields
        )
        + ") ON CONFLICT (job_id, shard) DO UPDATE SET "
        + ", ".join(f"{c} = {c} + excluded.{c}" for c in columns)
        + ";"
    )


def _triggers(stat_fields: Sequence[str], counters: Sequence[str]) -> list[str]:
    """The counting triggers, which name every counter and stat column. Counting lives in
    the statement that ends a batch (or re-opens it for a retry), so it is atomic with
    it: a batch moving into a terminal state adds its outcome to its shard, and a failed
    batch re-opened by a retry takes its outcome back out."""
    count_sql = _count_sql(stat_fields, counters)
    return [
        "CREATE TRIGGER IF NOT EXISTS count_batch AFTER UPDATE OF status ON batches"
        " WHEN NEW.status IN ('completed', 'failed', 'cancelled')"
        " AND OLD.status NOT IN ('completed', 'failed', 'cancelled')"
        f" BEGIN {count_sql.format(sign='', row='NEW')} END",
        "CREATE TRIGGER IF NOT EXISTS uncount_batch AFTER UPDATE OF status ON batches"
        " WHEN OLD.status = 'failed' AND NEW.status = 'pending'"
        f" BEGIN {count_sql.format(sign='-', row='OLD')} END",
    ]


def schema(
    stat_fields: Sequence[str] = STAT_FIELDS, counters: Sequence[str] = BATCH_COUNTERS
) -> str:
    """The DDL for a store whose stats are `stat_fields` and whose shards count the batch
    outcomes `counters` (older files have fewer of both)."""
    stat_columns = ", ".join(f"stat_{n} INTEGER NOT NULL DEFAULT 0" for n in stat_fields)
    counter_columns = ", ".join(f"{c}_batches INTEGER NOT NULL DEFAULT 0" for c in counters)
    triggers = ";\n".join(_triggers(stat_fields, counters))
    return f"""
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    collection TEXT NOT NULL,
    request TEXT NOT NULL,
    client_id TEXT,
    request_id TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    expire_at INTEGER,
    total_batches INTEGER NOT NULL DEFAULT 0,
    counter_shards INTEGER NOT NULL DEFAULT 1,
    completed_batches INTEGER NOT NULL DEFAULT 0,
    failed_batches INTEGER NOT NULL DEFAULT 0,
    {stat_columns},
    message TEXT,
    error TEXT,
    callback_url TEXT,
    callback_status TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    trace_id TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_error TEXT,
    -- Set while the callback is owed: when its latest attempt (or the finalization) started.
    callback_pending_since INTEGER,
    priority TEXT NOT NULL DEFAULT 'normal',
    not_before INTEGER,
    -- Planning by pages (functions/planner.py).
    planning INTEGER NOT NULL DEFAULT 0,
    plan_pages INTEGER NOT NULL DEFAULT 0,
    plan_cursor TEXT,
    planned_items INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_id, request_id)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, job_id);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source, job_id);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs (client_id, job_id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS batches (
    job_id TEXT NOT NULL,
    batch_index INTEGER NOT NULL,
    items TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    lease_expires_at INTEGER,
    heartbeat_at INTEGER,
    enqueued_at INTEGER,
    stats TEXT NOT NULL DEFAULT '{{}}',
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    error_details TEXT,
    created_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    ran_on TEXT,
    dispatch_rounds INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, batch_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS job_counters (
    job_id TEXT NOT NULL,
    shard INTEGER NOT NULL,
    {counter_columns},
    {stat_columns},
    PRIMARY KEY (job_id, shard)
) WITHOUT ROWID;
{triggers};
-- Partial: only running batches hold leases, so planning (all pending) never touches it.
CREATE INDEX IF NOT EXISTS batches_lease ON batches (lease_expires_at)
    WHERE status = 'running';
-- One job's running batches (its batch summary): as few as the queue runs at once.
CREATE INDEX IF NOT EXISTS batches_running ON batches (job_id) WHERE status = 'running';
-- Partial too: pending batches whose task was enqueued (the dropped-task sweep). Planning
-- inserts batches not enqueued yet, so it never touches it either.
CREATE INDEX IF NOT EXISTS batches_enqueued ON batches (enqueued_at)
    WHERE status = 'pending' AND enqueued_at IS NOT NULL;
"""


_SCHEMA = schema()
# Indexes on later columns, made once `_add_new_columns` has added them to an older file.
# Partial: only jobs whose callback is owed (the sweeper's redelivery query).
_LATER_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_callback_pending ON jobs (callback_pending_since)
    WHERE callback_pending_since IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_priority ON jobs (priority, job_id);
"""


def _us(value: datetime | None) -> int | None:
    if value is None:
        return None
    delta = value.astimezone(UTC) - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _dt(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _json_or_none(value: str | None) -> Any:
    return None if value is None else json.loads(value)


class SqliteJobStore:
    """`JobStore` on one SQLite file. Each thread gets its own connection."""

    def __init__(self, path: str | Path, *, retention: timedelta = timedelta(days=30)) -> None:
        self.path = Path(path)
        self.retention = retention
        self.db = Database(self.path)
        self.db.executescript(_SCHEMA)
        self._add_new_columns()

    def _add_new_columns(self) -> None:
        """Bring a file made by an older Fanout up to today's schema: add the columns it
        lacks and, when new counter columns came, rebuild the counting triggers, which name
        every counter column, and count the batches that ended cancelled before (one
        transaction: no batch ends uncounted in between)."""
        counter_column = "INTEGER NOT NULL DEFAULT 0"
        counters = {
            **dict.fromkeys(_STAT_COLUMNS, counter_column),
            "cancelled_batches": counter_column,
        }
        wanted = {
            "jobs": {
                **dict.fromkeys(_STAT_COLUMNS, counter_column),
                **_LATER_TEXT_COLUMNS["jobs"],
            },
            "job_counters": counters,
            "batches": _LATER_TEXT_COLUMNS["batches"],
        }
        with self.db.transaction() as conn:
            added: set[str] = set()
            for table, columns in wanted.items():
                have = {row["name"] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column, kind in columns.items():
                    if column not in have:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                        added.add(column)
            if added & counters.keys():
                conn.execute("DROP TRIGGER IF EXISTS count_batch")
                conn.execute("DROP TRIGGER IF EXISTS uncount_batch")
                for trigger in _triggers(STAT_FIELDS, BATCH_COUNTERS):
                    conn.execute(trigger)
            if "cancelled_batches" in added:
                # Onto shard 0: a reader sums the shards.
                conn.execute(
                    "INSERT INTO job_counters (job_id, shard, cancelled_batches)"
                    " SELECT job_id, 0, COUNT(*) FROM batches WHERE status = 'cancelled'"
                    " GROUP BY job_id ON CONFLICT (job_id, shard)"
                    " DO UPDATE SET cancelled_batches = excluded.cancelled_batches"
                )
        self.db.executescript(_LATER_INDEXES)

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    # -- row mapping ----------------------------------------------------------------------

    @staticmethod
    def _job(row: sqlite3.Row) -> Job:
        return Job(
            job_id=row["job_id"],
            status=JobStatus(row["status"]),
            source=row["source"],
            collection=row["collection"],
            request=json.loads(row["request"]),
            client_id=row["client_id"],
            request_id=row["request_id"],
            created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
            started_at=_dt(row["started_at"]),
            finished_at=_dt(row["finished_at"]),
            expire_at=_dt(row["expire_at"]),
            total_batches=row["total_batches"],
            completed_batches=row["completed_batches"],
            failed_batches=row["failed_batches"],
            stats=JobStats(*(row[c] for c in _STAT_COLUMNS)),
            message=row["message"],
            error=row["error"],
            callback_url=row["callback_url"],
            callback_status=row["callback_status"],
            callback_attempts=row["callback_attempts"],
            callback_error=row["callback_error"],
            retries=row["retries"],
            trace_id=row["trace_id"],
            priority=Priority(row["priority"]),
            not_before=_dt(row["not_before"]),
            planning=bool(row["planning"]),
            plan_pages=row["plan_pages"],
            plan_cursor=row["plan_cursor"],
            planned_items=row["planned_items"],
            counter_shards=row["counter_shards"] if row["planning"] or row["plan_pages"] else 0,
        )

    @staticmethod
    def _batch(row: sqlite3.Row) -> Batch:
        job_id, index = row["job_id"], row["batch_index"]
        return Batch(
            batch_id=f"{job_id}_{index:04d}",
            job_id=job_id,
            index=index,
            items=tuple(json.loads(row["items"])),
            status=JobStatus(row["status"]),
            attempts=row["attempts"],
            lease_expires_at=_dt(row["lease_expires_at"]),
            heartbeat_at=_dt(row["heartbeat_at"]),
            enqueued_at=_dt(row["enqueued_at"]),
            stats=JobStats.from_dict(json.loads(row["stats"])),
            progress=row["progress"],
            error=row["error"],
            error_details=_json_or_none(row["error_details"]),
            created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
            started_at=_dt(row["started_at"]),
            finished_at=_dt(row["finished_at"]),
            ran_on=row["ran_on"],
            dispatch_rounds=row["dispatch_rounds"],
        )

    def _read_job(self, conn: sqlite3.Connection, job_id: str, *, counters: bool = True) -> Job:
        """The job; with `counters=False` its counters are the parent's (exact only once it
        is finalized), which saves summing the shards where only the status matters."""
        check_job_id(job_id)
        row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        job = self._job(row)
        return self._with_counters(conn, job) if counters else job

    @staticmethod
    def _with_counters(conn: sqlite3.Connection, job: Job) -> Job:
        """`job` with the true sums of its counter shards (functions/store/shards.py)."""
        if job.status in MATERIALIZED:
            return job
        sums = conn.execute(
            f"SELECT COALESCE(SUM(completed_batches), 0), COALESCE(SUM(failed_batches), 0),"
            f" {', '.join(f'COALESCE(SUM({c}), 0)' for c in _STAT_COLUMNS)}"
            " FROM job_counters WHERE job_id = ?",
            (job.job_id,),
        ).fetchone()
        return replace(
            job, completed_batches=sums[0], failed_batches=sums[1], stats=JobStats(*sums[2:])
        )

    def _read_batch(self, conn: sqlite3.Connection, batch_id: str) -> Batch:
        job_id, index = parse_batch_id(batch_id)
        row = conn.execute(
            "SELECT * FROM batches WHERE job_id = ? AND batch_index = ?", (job_id, index)
        ).fetchone()
        if row is None:
            raise BatchNotFound(batch_id)
        return self._batch(row)

    # -- jobs -----------------------------------------------------------------------------

    def create_job(self, job: Job) -> tuple[Job, bool]:
        with self.db.transaction() as conn:
            if job.client_id is not None:
                row = conn.execute(
                    "SELECT * FROM jobs WHERE client_id = ? AND request_id = ?",
                    (job.client_id, job.request_id),
                ).fetchone()
                if row is not None:
                    return self._job(row), False
            conn.execute(
                "INSERT INTO jobs (job_id, status, source, collection, request, client_id,"
                " request_id, created_at, callback_url, trace_id, not_before, priority,"
                " started_at, planning, counter_shards)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job.job_id,
                    job.status.value,
                    job.source,
                    job.collection,
                    json.dumps(dict(job.request)),
                    job.client_id,
                    job.request_id,
                    _us(job.created_at),
                    job.callback_url,
                    job.trace_id,
                    _us(job.not_before),
                    job.priority.value,
                    _us(job.started_at),
                    job.planning,
                    job.counter_shards or 1,
                ),
            )
            return self._read_job(conn, job.job_id), True

    def add_batches(
        self, job_id: str, batches: Sequence[Batch], *, now: datetime | None = None
    ) -> Job:
        now = now or utcnow()
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job.status is not JobStatus.PENDING:
                raise InvalidTransition("job", job.status.value, "running (already planned)")
            for expected, batch in enumerate(batches):
                if batch.job_id != job_id or batch.index != expected:
                    raise InvalidArgument(
                        f"batch {batch.batch_id!r} is not batch {expected} of job {job_id!r}"
                    )
            # One JSON document for all batches, split by SQLite in C: per-row Python work
            # (encoding each batch, converting each timestamp) costs more than the inserts.
            stamps = {created: _us(created) for created in {b.created_at for b in batches}}
            planned = json.dumps([[list(b.items), stamps[b.created_at]] for b in batches])
            conn.execute(
                "INSERT INTO batches (job_id, batch_index, items, status, created_at)"
                " SELECT ?, key, json_extract(value, '$[0]'), 'pending',"
                " json_extract(value, '$[1]') FROM json_each(?)",
                (job_id, planned),
            )
            if batches:
                waits = job.waits_at(now)  # scheduled: its first claim starts it
                conn.execute(
                    "UPDATE jobs SET status = ?, total_batches = ?, counter_shards = ?,"
                    " started_at = ? WHERE job_id = ?",
                    (
                        JobStatus.SCHEDULED.value if waits else JobStatus.RUNNING.value,
                        len(batches),
                        counter_shards(len(batches)),
                        None if waits else _us(now),
                        job_id,
                    ),
                )
            else:
                self._write_final(conn, replace(job, started_at=now), now)
            return self._read_job(conn, job_id)

    def start_due(self, job_id: str, *, now: datetime | None = None) -> bool:
        now = now or utcnow()
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id, counters=False)
            if job.status is not JobStatus.SCHEDULED or job.waits_at(now):
                return False
            return self._start(conn, job_id, now)

    @staticmethod
    def _start(conn: sqlite3.Connection, job_id: str, now: datetime) -> bool:
        """Scheduled -> running, started now. True if this call moved it."""
        cursor = conn.execute(
            "UPDATE jobs SET status = 'running', started_at = ?"
            " WHERE job_id = ? AND status = 'scheduled'",
            (_us(now), job_id),
        )
        return cursor.rowcount == 1

    def fail_unplanned(self, job_id: str, *, error: str, now: datetime | None = None) -> Job:
        now = now or utcnow()
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job.status is not JobStatus.PENDING:
                raise InvalidTransition("job", job.status.value, "failed (never planned)")
            conn.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, expire_at = ?, error = ?,"
                " message = ? WHERE job_id = ?",
                (_us(now), _us(expire_at_for(now, self.retention)), error, error, job_id),
            )
            return self._read_job(conn, job_id)

    def add_plan_page(self, job_id: str, page: PlanPage, *, now: datetime | None = None) -> Planned:
        now = now or utcnow()
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id, counters=False)
            refusal = page.refusal(job)
            if refusal is not None:
                return Planned(False, False, job, refusal)
            if page.batches:
                # As in add_batches: one JSON document, split by SQLite in C.
                created = _us(now)
                planned = json.dumps([list(b.items) for b in page.batches])
                conn.execute(
                    "INSERT INTO batches (job_id, batch_index, items, status, created_at)"
                    " SELECT ?, ? + key, value, 'pending', ? FROM json_each(?)",
                    (job_id, page.batches[0].index, created, planned),
                )
            conn.execute(
                "UPDATE jobs SET total_batches = total_batches + ?, planned_items = planned_items"
                " + ?, plan_pages = plan_pages + 1, plan_cursor = ?, planning = ? WHERE job_id = ?",
                (len(page.batches), page.items, page.cursor, not page.last, job_id),
            )
            # The last page and the last batch meet here: both check the other inside the
            # write lock (finish_batch reads `planning` after counting), so one finalizes.
            final = self._finalize(conn, job_id, now, counted=True) if page.last else None
            job = final.job if final else self._read_job(conn, job_id, counters=False)
            return Planned(True, bool(final and final.finalized), job)

    def fail_planning(
        self, job_id: str, page: int, *, error: str, now: datetime | None = None
    ) -> Job | None:
        now = now or utcnow()
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE jobs SET status = 'failed', finished_at = ?, expire_at = ?,"
                " error = ?, message = ? WHERE job_id = ? AND status IN ('running', 'scheduled')"
                " AND planning = 1"
                " AND plan_pages = ? RETURNING job_id",
                (_us(now), _us(expire_at_for(now, self.retention)), error, error, job_id, page),
            ).fetchall()
            if not rows:
                return None
            job = self._with_counters(conn, self._read_job(conn, job_id, counters=False))
            conn.execute(
                "UPDATE jobs SET completed_batches = ?, failed_batches = ? WHERE job_id = ?",
                (job.completed_batches, job.failed_batches, job_id),
            )
            return self._read_job(conn, job_id)

    def get_job(self, job_id: str) -> Job:
        return self._read_job(self.db.conn(), job_id)

    def get_batch(self, batch_id: str) -> Batch:
        return self._read_batch(self.db.conn(), batch_id)

    def list_jobs(self, query: JobQuery) -> Page[Job]:
        where: list[str] = []
        args: list[Any] = []
        if query.statuses:
            where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
            args.extend(sorted(s.value for s in query.statuses))
        if query.source is not None:
            where.append("source = ?")
            args.append(query.source)
        if query.client_id is not None:
            where.append("client_id = ?")
            args.append(query.client_id)
        if query.priority is not None:
            where.append("priority = ?")
            args.append(query.priority.value)
        page_where, page_args = list(where), list(args)
        if query.cursor:
            page_where.append("job_id < ?")
            page_args.append(decode_job_cursor(query.cursor))
        with self.db.transaction("DEFERRED") as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM jobs {_where(where)}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM jobs {_where(page_where)} ORDER BY job_id DESC LIMIT ?",
                [*page_args, query.limit + 1],
            ).fetchall()
            jobs = [self._with_counters(conn, self._job(r)) for r in rows[: query.limit]]
        more = len(rows) > query.limit
        return Page(jobs, encode_cursor("jobs", jobs[-1].job_id) if more else None, total)

    def list_batches(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Batch]:
        check_limit(limit)
        after = decode_cursor(cursor, "batches", int) if cursor else -1
        where, args = ["job_id = ?"], [job_id]
        if status is not None:
            where.append("status = ?")
            args.append(status.value)
        with self.db.transaction("DEFERRED") as conn:
            self._read_job(conn, job_id)
            total = conn.execute(f"SELECT COUNT(*) FROM batches {_where(where)}", args).fetchone()[
                0
            ]
            rows = conn.execute(
                f"SELECT * FROM batches {_where(where)} AND batch_index > ?"
                " ORDER BY batch_index LIMIT ?",
                [*args, after, limit + 1],
            ).fetchall()
        batches = [self._batch(r) for r in rows[:limit]]
        more = len(rows) > limit
        return Page(batches, encode_cursor("batches", batches[-1].index) if more else None, total)

    def batch_counts(self, job: Job) -> BatchCounts:
        if job.status not in (JobStatus.RUNNING, JobStatus.CANCELLED):
            return BatchCounts.of(job)  # every batch has ended, or none was planned yet
        # The partial index batches_running holds running batches only: the count reads
        # this job's few entries, never its pending or ended batches.
        running = (
            self.db.conn()
            .execute(
                "SELECT COUNT(*) FROM batches INDEXED BY batches_running"
                " WHERE job_id = ? AND status = 'running'",
                (job.job_id,),
            )
            .fetchone()[0]
        )
        if job.status is not JobStatus.CANCELLED:
            return BatchCounts.of(job, running=running)
        cancelled = (
            self.db.conn()
            .execute(
                "SELECT COALESCE(SUM(cancelled_batches), 0) FROM job_counters WHERE job_id = ?",
                (job.job_id,),
            )
            .fetchone()[0]
        )
        return BatchCounts.of(job, running=running, cancelled=cancelled)

    # -- the batch lifecycle --------------------------------------------------------------

    def claim_batch(
        self,
        batch_id: str,
        *,
        lease: timedelta,
        ran_on: str | None = None,
        now: datetime | None = None,
    ) -> Claim:
        now = now or utcnow()
        job_id, _ = parse_batch_id(batch_id)
        # The usual case in one statement (the write lock is held only while SQLite runs
        # it): a pending batch, or one whose lease expired, of a running job.
        rows = self._claim_row(self.db.write, batch_id, lease, ran_on, now)
        if rows:
            return Claim(
                True, self._read_job(self.db.conn(), job_id, counters=False), self._batch(rows[0])
            )
        return self._refuse_claim(batch_id, lease, ran_on, now)

    @staticmethod
    def _claim_row(
        run: Callable[[str, Sequence[object]], list[sqlite3.Row]],
        batch_id: str,
        lease: timedelta,
        ran_on: str | None,
        now: datetime,
    ) -> list[sqlite3.Row]:
        """Claim the batch if it is claimable and its job running: its row, or none."""
        job_id, index = parse_batch_id(batch_id)
        return run(
            "UPDATE batches SET status = 'running', attempts = attempts + 1,"
            " lease_expires_at = ?, heartbeat_at = ?, started_at = COALESCE(started_at, ?),"
            " ran_on = ? WHERE job_id = ? AND batch_index = ? AND (status = 'pending'"
            " OR (status = 'running' AND (lease_expires_at IS NULL OR lease_expires_at <= ?)))"
            " AND (SELECT status FROM jobs WHERE job_id = ?) = 'running' RETURNING *",
            (_us(now + lease), _us(now), _us(now), ran_on, job_id, index, _us(now), job_id),
        )

    def _refuse_claim(
        self, batch_id: str, lease: timedelta, ran_on: str | None, now: datetime
    ) -> Claim:
        """Why a claim was refused (and, for a cancelled job, end the batch cancelled); or,
        for a scheduled job that is due, start it and claim the batch. The job may have
        started since the claim's first statement (a concurrent first claim started it):
        then the batch is claimed here, under the lock."""
        with self.db.transaction() as conn:
            batch = self._read_batch(conn, batch_id)
            job = self._read_job(conn, batch.job_id, counters=False)
            if job.status is JobStatus.SCHEDULED:
                if job.waits_at(now):
                    return Claim(False, job, batch, not_due(job))
                self._start(conn, job.job_id, now)
                job = self._read_job(conn, job.job_id, counters=False)
            if job.status is JobStatus.RUNNING:
                rows = self._claim_row(_in(conn), batch_id, lease, ran_on, now)
                if rows:
                    return Claim(True, job, self._batch(rows[0]))
            if job.status is JobStatus.CANCELLED:
                if not batch.is_terminal:
                    self._end_batch(_in(conn), batch, BatchOutcome(JobStatus.CANCELLED), now)
                    batch = self._read_batch(conn, batch_id)
                return Claim(False, job, batch, "job is cancelled")
            if batch.is_terminal:
                return Claim(False, job, batch, f"batch is {batch.status.value}")
            if job.is_terminal:
                return Claim(False, job, batch, f"job is {job.status.value}")
            if (
                batch.status is JobStatus.RUNNING
                and batch.lease_expires_at
                and (batch.lease_expires_at > now)
            ):
                return Claim(
                    False,
                    job,
                    batch,
                    f"leased by attempt {batch.attempts} until "
                    f"{batch.lease_expires_at.isoformat()}",
                )
            # The batch was claimable a moment ago and a concurrent claim took it.
            return Claim(False, job, batch, "claimed by a concurrent delivery")

    def record_progress(
        self,
        batch: Batch,
        *,
        progress: float,
        stats: JobStats,
        lease: timedelta,
        now: datetime | None = None,
    ) -> bool:
        check_progress(progress)
        now = now or utcnow()
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE batches SET progress = ?, stats = ?, heartbeat_at = ?,"
                " lease_expires_at = ? WHERE job_id = ? AND batch_index = ?"
                " AND status = 'running' AND attempts = ?"
                " AND (SELECT status FROM jobs WHERE job_id = ?) = 'running'",
                (
                    progress,
                    json.dumps(stats.to_dict()),
                    _us(now),
                    _us(now + lease),
                    batch.job_id,
                    batch.index,
                    batch.attempts,
                    batch.job_id,
                ),
            )
            return cursor.rowcount == 1

    def release_lease(self, batch: Batch, *, now: datetime | None = None) -> bool:
        with self.db.transaction() as conn:
            cursor = conn.execute(
                "UPDATE batches SET lease_expires_at = ? WHERE job_id = ? AND batch_index = ?"
                " AND status = 'running' AND attempts = ?",
                (_us(now or utcnow()), batch.job_id, batch.index, batch.attempts),
            )
            return cursor.rowcount == 1

    def finish_batch(
        self, job: Job, batch: Batch, outcome: BatchOutcome, *, now: datetime | None = None
    ) -> FinishResult:
        now = now or utcnow()
        if not batch.is_terminal:  # a terminal copy is a duplicate, answered below
            check_transition("batch", batch.status, outcome.status)
        if not self._end_batch(self.db.write, batch, outcome, now):
            current = self.get_batch(batch.batch_id)
            if current.is_terminal:
                return FinishResult(False, False, job)
            check_transition("batch", current.status, outcome.status)
            raise AssertionError(f"batch {batch.batch_id} could not be finished")
        # Is the job complete? One cheap read (no lock) before finalizing takes the lock.
        conn = self.db.conn()
        status, planning, total, done = conn.execute(
            "SELECT status, planning, total_batches, (SELECT COALESCE(SUM(completed_batches"
            " + failed_batches), 0) FROM job_counters WHERE job_id = jobs.job_id)"
            " FROM jobs WHERE job_id = ?",
            (job.job_id,),
        ).fetchone()
        if status != JobStatus.RUNNING.value or planning or done < total:
            return FinishResult(True, False, job)
        with self.db.transaction() as conn:
            return self._finalize(conn, job.job_id, now, counted=True)

    def finalize_if_complete(self, job_id: str, *, now: datetime | None = None) -> FinishResult:
        with self.db.transaction() as conn:
            return self._finalize(conn, job_id, now or utcnow(), counted=False)

    @staticmethod
    def _end_batch(
        run: Callable[[str, Sequence[object]], list[sqlite3.Row]],
        batch: Batch,
        outcome: BatchOutcome,
        now: datetime,
    ) -> bool:
        """End the batch with `outcome` if its current status allows it; the count_batch
        trigger counts it in the same statement. False if it did not apply (the batch was
        already terminal, or the transition is not allowed). `run` executes one statement:
        on its own, or inside the caller's transaction."""
        sources = sorted(s.value for s in batch_statuses_leading_to(outcome.status))
        rows = run(
            "UPDATE batches SET status = ?, stats = ?, error = ?, error_details = ?,"
            " finished_at = ?, lease_expires_at = NULL,"
            " progress = CASE WHEN ? = 'completed' THEN 1.0 ELSE progress END"
            " WHERE job_id = ? AND batch_index = ?"
            f" AND status IN ({', '.join('?' * len(sources))}) RETURNING batch_index",
            (
                outcome.status.value,
                json.dumps(outcome.stats.to_dict()),
                outcome.error,
                json.dumps(dict(outcome.error_details)) if outcome.error_details else None,
                _us(now),
                outcome.status.value,
                batch.job_id,
                batch.index,
                *sources,
            ),
        )
        return bool(rows)

    def _finalize(
        self, conn: sqlite3.Connection, job_id: str, now: datetime, *, counted: bool
    ) -> FinishResult:
        job = self._read_job(conn, job_id)
        if job.status not in _FINALIZABLE or not job.all_counted:
            return FinishResult(counted, False, job)
        self._write_final(conn, replace(job, started_at=job.started_at or now), now)
        return FinishResult(counted, True, self._read_job(conn, job_id))

    def _write_final(self, conn: sqlite3.Connection, job: Job, now: datetime) -> None:
        fields = final_fields(job, now, self.retention)
        stat_sets = ", ".join(f"{c} = ?" for c in _STAT_COLUMNS)
        conn.execute(
            "UPDATE jobs SET status = ?, started_at = ?, finished_at = ?, expire_at = ?,"
            f" error = ?, message = ?, completed_batches = ?, failed_batches = ?, {stat_sets}"
            " WHERE job_id = ?",
            (
                fields.status.value,
                _us(job.started_at),
                _us(now),
                _us(fields.expire_at),
                fields.error,
                fields.message,
                job.completed_batches,
                job.failed_batches,
                *job.stats.values(),
                job.job_id,
            ),
        )
        # Each finalization owes its callback (a retried job's again): attempts start over.
        conn.execute(
            "UPDATE jobs SET callback_attempts = 0, callback_status = NULL, callback_error = NULL,"
            " callback_pending_since = ? WHERE job_id = ? AND callback_url IS NOT NULL",
            (_us(now), job.job_id),
        )

    # -- operator actions -----------------------------------------------------------------

    def cancel_job(self, job_id: str, *, now: datetime | None = None) -> Job:
        now = now or utcnow()
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            check_transition("job", job.status, JobStatus.CANCELLED)
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, expire_at = ?,"
                " message = 'cancelled' WHERE job_id = ?",
                (_us(now), _us(expire_at_for(now, self.retention)), job_id),
            )
            return self._read_job(conn, job_id)

    def retry_failed(self, job_id: str, *, now: datetime | None = None) -> list[Batch]:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if job.status is not JobStatus.FAILED:
                raise InvalidTransition("job", job.status.value, "running (retry)")
            rows = conn.execute(
                "SELECT * FROM batches WHERE job_id = ? AND status = 'failed' ORDER BY batch_index",
                (job_id,),
            ).fetchall()
            failed = [self._batch(r) for r in rows]
            if not failed:
                raise InvalidArgument(f"job {job_id!r} has no failed batches to retry")
            conn.execute(
                "UPDATE batches SET status = 'pending', attempts = 0, lease_expires_at = NULL,"
                " heartbeat_at = NULL, enqueued_at = NULL, dispatch_rounds = 0,"
                " stats = '{}', progress = 0,"
                " error = NULL, error_details = NULL, started_at = NULL, finished_at = NULL"
                " WHERE job_id = ? AND status = 'failed'",
                (job_id,),
            )
            conn.execute(
                "UPDATE jobs SET status = 'running', finished_at = NULL, expire_at = NULL,"
                " error = NULL, message = NULL, retries = retries + 1 WHERE job_id = ?",
                (job_id,),
            )
            return [
                self._batch(r)
                for r in conn.execute(
                    "SELECT * FROM batches WHERE job_id = ? AND batch_index IN"
                    f" ({', '.join('?' * len(failed))}) ORDER BY batch_index",
                    (job_id, *(b.index for b in failed)),
                )
            ]

    def mark_enqueued(
        self, job_id: str, indexes: Sequence[int], *, now: datetime | None = None
    ) -> None:
        stamp = _us(now or utcnow())
        with self.db.transaction() as conn:
            self._read_job(conn, job_id)
            conn.executemany(
                "UPDATE batches SET enqueued_at = ? WHERE job_id = ? AND batch_index = ?",
                ((stamp, job_id, index) for index in indexes),
            )

    def delete_job(self, job_id: str) -> None:
        with self.db.transaction() as conn:
            job = self._read_job(conn, job_id)
            if not job.is_terminal:
                raise InvalidTransition("job", job.status.value, "deleted (cancel it first)")
            for table in ("batches", "job_counters", "jobs"):
                conn.execute(f"DELETE FROM {table} WHERE job_id = ?", (job_id,))

    def delete_finished_before(self, cutoff: datetime, *, chunk_size: int = 100) -> int:
        if chunk_size < 1:
            raise InvalidArgument(f"chunk_size must be at least 1, got {chunk_size}")
        deleted = 0
        while True:
            with self.db.transaction() as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT job_id FROM jobs WHERE finished_at < ? LIMIT ?",
                        (_us(cutoff), chunk_size),
                    )
                ]
                marks = ", ".join("?" * len(ids))
                for table in ("batches", "job_counters", "jobs"):
                    conn.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", ids)
            deleted += len(ids)
            if len(ids) < chunk_size:
                return deleted

    def find_finished_before(self, cutoff: datetime, *, limit: int = 5) -> Found[Job]:
        with self.db.transaction("DEFERRED") as conn:
            total = conn.execute(
                "SELECT COUNT(*) FROM jobs WHERE finished_at < ?", (_us(cutoff),)
            ).fetchone()[0]
            rows = conn.execute(
                "SELECT * FROM jobs WHERE finished_at < ? ORDER BY finished_at, job_id LIMIT ?",
                (_us(cutoff), limit),
            ).fetchall()
            return Found([self._with_counters(conn, self._job(r)) for r in rows], total)

    # -- callbacks ------------------------------------------------------------------------

    def claim_callback(self, job: Job, *, now: datetime | None = None) -> Job | None:
        rows = self.db.write(
            "UPDATE jobs SET callback_attempts = callback_attempts + 1,"
            " callback_pending_since = ? WHERE job_id = ? AND retries = ?"
            " AND callback_attempts = ? AND callback_pending_since IS NOT NULL"
            " AND status IN ('completed', 'failed') RETURNING *",
            (_us(now or utcnow()), check_job_id(job.job_id), job.retries, job.callback_attempts),
        )
        return self._job(rows[0]) if rows else None

    def record_callback(self, job: Job, *, status: str, error: str | None, owed: bool) -> None:
        self.db.write(
            "UPDATE jobs SET callback_status = ?, callback_error = ?,"
            " callback_pending_since = CASE WHEN ? THEN callback_pending_since END"
            " WHERE job_id = ? AND retries = ? AND (? OR (callback_attempts = ?"
            " AND callback_pending_since IS NOT NULL))",
            (
                status,
                error,
                owed,
                check_job_id(job.job_id),
                job.retries,
                error is None,
                job.callback_attempts,
            ),
        )

    def find_undelivered_callbacks(
        self, started_before: datetime, *, limit: int = 100
    ) -> list[Job]:
        # The partial index jobs_callback_pending holds owed callbacks only; the planner
        # would rather walk every finished job by status.
        rows = self.db.conn().execute(
            "SELECT * FROM jobs INDEXED BY jobs_callback_pending"
            " WHERE callback_pending_since < ? AND status IN ('completed', 'failed')"
            " ORDER BY callback_pending_since LIMIT ?",
            (_us(started_before), limit),
        )
        return [self._job(row) for row in rows]

    # -- the sweeper's queries ------------------------------------------------------------

    def find_expired_leases(self, now: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        return self._stale("b.status = 'running' AND b.lease_expires_at < ?", (_us(now),), limit)

    def find_unenqueued(self, older_than: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        return self._stale(
            "b.status = 'pending' AND b.enqueued_at IS NULL AND j.started_at < ?",
            (_us(older_than),),
            limit,
        )

    def find_dropped(
        self, enqueued_before: datetime, *, limit: int = 500
    ) -> list[tuple[Job, Batch]]:
        # Walks the partial index batches_enqueued from its oldest entry (the planner would
        # rather scan every batch of every running job): about `limit` entries are read.
        with self.db.transaction("DEFERRED") as conn:
            rows = conn.execute(
                "SELECT b.* FROM batches b INDEXED BY batches_enqueued"
                " JOIN jobs j ON j.job_id = b.job_id"
                " WHERE b.status = 'pending' AND b.enqueued_at < ?"
                " AND j.status IN ('running', 'cancelled')"
                " ORDER BY b.enqueued_at, b.job_id, b.batch_index LIMIT ?",
                (_us(enqueued_before), limit),
            ).fetchall()
            batches = [self._batch(r) for r in rows]
            jobs = {b.job_id: self._read_job(conn, b.job_id) for b in batches}
        return [(jobs[b.job_id], b) for b in batches]

    def mark_redispatched(
        self, job: Job, batch: Batch, *, now: datetime | None = None
    ) -> Batch | None:
        rows = self.db.write(
            "UPDATE batches SET dispatch_rounds = dispatch_rounds + 1, enqueued_at = ?"
            " WHERE job_id = ? AND batch_index = ? AND status = 'pending'"
            " AND dispatch_rounds = ? AND enqueued_at IS ? RETURNING *",
            (
                _us(now or utcnow()),
                batch.job_id,
                batch.index,
                batch.dispatch_rounds,
                _us(batch.enqueued_at),
            ),
        )
        return self._batch(rows[0]) if rows else None

    def _stale(self, condition: str, args: tuple[Any, ...], limit: int) -> list[tuple[Job, Batch]]:
        with self.db.transaction("DEFERRED") as conn:
            rows = conn.execute(
                "SELECT b.* FROM batches b JOIN jobs j ON j.job_id = b.job_id"
                f" WHERE j.status = 'running' AND {condition}"
                " ORDER BY b.job_id, b.batch_index LIMIT ?",
                (*args, limit),
            ).fetchall()
            batches = [self._batch(r) for r in rows]
            jobs = {b.job_id: self._read_job(conn, b.job_id) for b in batches}
        return [(jobs[b.job_id], b) for b in batches]


def _in(conn: sqlite3.Connection) -> Callable[[str, Sequence[object]], list[sqlite3.Row]]:
    """Runs statements inside `conn`'s open transaction."""
    return lambda sql, params: conn.execute(sql, params).fetchall()


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else "WHERE 1 = 1"
