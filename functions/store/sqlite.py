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
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    check_job_id,
    check_transition,
    parse_batch_id,
    utcnow,
)
from functions.store.cursor import decode_cursor, decode_job_cursor, encode_cursor
from functions.store.finalize import expire_at_for, final_fields
from functions.store.protocol import (
    DEFAULT_PAGE_SIZE,
    Claim,
    FinishResult,
    JobQuery,
    Page,
    check_limit,
    check_progress,
)

_STAT_COLUMNS = tuple(f"stat_{name}" for name in STAT_FIELDS)

_SCHEMA = f"""
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
    completed_batches INTEGER NOT NULL DEFAULT 0,
    failed_batches INTEGER NOT NULL DEFAULT 0,
    {", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in _STAT_COLUMNS)},
    message TEXT,
    error TEXT,
    callback_url TEXT,
    callback_status TEXT,
    retries INTEGER NOT NULL DEFAULT 0,
    UNIQUE (client_id, request_id)
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, job_id);
CREATE INDEX IF NOT EXISTS jobs_source ON jobs (source, job_id);
CREATE INDEX IF NOT EXISTS jobs_client ON jobs (client_id, job_id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE TABLE IF NOT EXISTS batches (
    job_id TEXT NOT NULL REFERENCES jobs (job_id),
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
    PRIMARY KEY (job_id, batch_index)
) WITHOUT ROWID;
-- Partial: only running batches hold leases, so planning (all pending) never touches it.
CREATE INDEX IF NOT EXISTS batches_lease ON batches (lease_expires_at)
    WHERE status = 'running';
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
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn().executescript(_SCHEMA)

    # -- plumbing -------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves.
            conn = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=60000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _tx(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A transaction; rolled back on any error, so a failed call writes nothing."""
        conn = self._conn()
        conn.execute(f"BEGIN {mode}")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

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
            retries=row["retries"],
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
        )

    def _read_job(self, conn: sqlite3.Connection, job_id: str) -> Job:
        check_job_id(job_id)
        row = conn.execute("SELECT * FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id)
        return self._job(row)

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
        with self._tx() as conn:
            if job.client_id is not None:
                row = conn.execute(
                    "SELECT * FROM jobs WHERE client_id = ? AND request_id = ?",
                    (job.client_id, job.request_id),
                ).fetchone()
                if row is not None:
                    return self._job(row), False
            conn.execute(
                "INSERT INTO jobs (job_id, status, source, collection, request, client_id,"
                " request_id, created_at, callback_url) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                ),
            )
            return self._read_job(conn, job.job_id), True

    def add_batches(
        self, job_id: str, batches: Sequence[Batch], *, now: datetime | None = None
    ) -> Job:
        now = now or utcnow()
        with self._tx() as conn:
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
                conn.execute(
                    "UPDATE jobs SET status = 'running', total_batches = ?, started_at = ?"
                    " WHERE job_id = ?",
                    (len(batches), _us(now), job_id),
                )
            else:
                self._write_final(conn, replace(job, started_at=now), now)
            return self._read_job(conn, job_id)

    def get_job(self, job_id: str) -> Job:
        return self._read_job(self._conn(), job_id)

    def get_batch(self, batch_id: str) -> Batch:
        return self._read_batch(self._conn(), batch_id)

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
        page_where, page_args = list(where), list(args)
        if query.cursor:
            page_where.append("job_id < ?")
            page_args.append(decode_job_cursor(query.cursor))
        with self._tx("DEFERRED") as conn:
            total = conn.execute(f"SELECT COUNT(*) FROM jobs {_where(where)}", args).fetchone()[0]
            rows = conn.execute(
                f"SELECT * FROM jobs {_where(page_where)} ORDER BY job_id DESC LIMIT ?",
                [*page_args, query.limit + 1],
            ).fetchall()
        jobs = [self._job(r) for r in rows[: query.limit]]
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
        with self._tx("DEFERRED") as conn:
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

    # -- the batch lifecycle --------------------------------------------------------------

    def claim_batch(self, batch_id: str, *, lease: timedelta, now: datetime | None = None) -> Claim:
        now = now or utcnow()
        with self._tx() as conn:
            batch = self._read_batch(conn, batch_id)
            job = self._read_job(conn, batch.job_id)
            if job.status is JobStatus.CANCELLED:
                if not batch.is_terminal:
                    self._end_batch(conn, batch, BatchOutcome(JobStatus.CANCELLED), now)
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
            conn.execute(
                "UPDATE batches SET status = 'running', attempts = attempts + 1,"
                " lease_expires_at = ?, heartbeat_at = ?, started_at = COALESCE(started_at, ?)"
                " WHERE job_id = ? AND batch_index = ?",
                (_us(now + lease), _us(now), _us(now), batch.job_id, batch.index),
            )
            return Claim(True, job, self._read_batch(conn, batch_id))

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
        with self._tx() as conn:
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

    def finish_batch(
        self, job: Job, batch: Batch, outcome: BatchOutcome, *, now: datetime | None = None
    ) -> FinishResult:
        now = now or utcnow()
        with self._tx() as conn:
            current = self._read_batch(conn, batch.batch_id)
            if current.is_terminal:
                return FinishResult(False, False, self._read_job(conn, job.job_id))
            self._end_batch(conn, current, outcome, now)
            return self._finalize(conn, job.job_id, now, counted=True)

    def finalize_if_complete(self, job_id: str, *, now: datetime | None = None) -> FinishResult:
        with self._tx() as conn:
            return self._finalize(conn, job_id, now or utcnow(), counted=False)

    def _end_batch(
        self, conn: sqlite3.Connection, batch: Batch, outcome: BatchOutcome, now: datetime
    ) -> None:
        """Write the batch's terminal state and count it into the job, in the caller's
        transaction (which has already checked that the batch was not terminal)."""
        check_transition("batch", batch.status, outcome.status)
        conn.execute(
            "UPDATE batches SET status = ?, stats = ?, error = ?, error_details = ?,"
            " finished_at = ?, lease_expires_at = NULL,"
            " progress = CASE WHEN ? = 'completed' THEN 1.0 ELSE progress END"
            " WHERE job_id = ? AND batch_index = ?",
            (
                outcome.status.value,
                json.dumps(outcome.stats.to_dict()),
                outcome.error,
                json.dumps(dict(outcome.error_details)) if outcome.error_details else None,
                _us(now),
                outcome.status.value,
                batch.job_id,
                batch.index,
            ),
        )
        stat_sets = ", ".join(f"{c} = {c} + ?" for c in _STAT_COLUMNS)
        conn.execute(
            f"UPDATE jobs SET completed_batches = completed_batches + ?,"
            f" failed_batches = failed_batches + ?, {stat_sets} WHERE job_id = ?",
            (
                int(outcome.status is JobStatus.COMPLETED),
                int(outcome.status is JobStatus.FAILED),
                *outcome.stats.values(),
                batch.job_id,
            ),
        )

    def _finalize(
        self, conn: sqlite3.Connection, job_id: str, now: datetime, *, counted: bool
    ) -> FinishResult:
        job = self._read_job(conn, job_id)
        if job.status is not JobStatus.RUNNING or job.done_batches < job.total_batches:
            return FinishResult(counted, False, job)
        self._write_final(conn, job, now)
        return FinishResult(counted, True, self._read_job(conn, job_id))

    def _write_final(self, conn: sqlite3.Connection, job: Job, now: datetime) -> None:
        fields = final_fields(job, now, self.retention)
        conn.execute(
            "UPDATE jobs SET status = ?, started_at = ?, finished_at = ?, expire_at = ?,"
            " error = ?, message = ? WHERE job_id = ?",
            (
                fields.status.value,
                _us(job.started_at),
                _us(now),
                _us(fields.expire_at),
                fields.error,
                fields.message,
                job.job_id,
            ),
        )

    # -- operator actions -----------------------------------------------------------------

    def cancel_job(self, job_id: str, *, now: datetime | None = None) -> Job:
        now = now or utcnow()
        with self._tx() as conn:
            job = self._read_job(conn, job_id)
            check_transition("job", job.status, JobStatus.CANCELLED)
            conn.execute(
                "UPDATE jobs SET status = 'cancelled', finished_at = ?, expire_at = ?,"
                " message = 'cancelled' WHERE job_id = ?",
                (_us(now), _us(expire_at_for(now, self.retention)), job_id),
            )
            return self._read_job(conn, job_id)

    def retry_failed(self, job_id: str, *, now: datetime | None = None) -> list[Batch]:
        with self._tx() as conn:
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
                " heartbeat_at = NULL, enqueued_at = NULL, stats = '{}', progress = 0,"
                " error = NULL, error_details = NULL, started_at = NULL, finished_at = NULL"
                " WHERE job_id = ? AND status = 'failed'",
                (job_id,),
            )
            undo = JobStats.total(b.stats for b in failed)
            stat_sets = ", ".join(f"{c} = {c} - ?" for c in _STAT_COLUMNS)
            conn.execute(
                f"UPDATE jobs SET status = 'running', failed_batches = failed_batches - ?,"
                f" {stat_sets}, finished_at = NULL, expire_at = NULL, error = NULL,"
                f" message = NULL, retries = retries + 1 WHERE job_id = ?",
                (len(failed), *undo.values(), job_id),
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
        with self._tx() as conn:
            self._read_job(conn, job_id)
            conn.executemany(
                "UPDATE batches SET enqueued_at = ? WHERE job_id = ? AND batch_index = ?",
                ((stamp, job_id, index) for index in indexes),
            )

    def delete_job(self, job_id: str) -> None:
        with self._tx() as conn:
            job = self._read_job(conn, job_id)
            if not job.is_terminal:
                raise InvalidTransition("job", job.status.value, "deleted (cancel it first)")
            conn.execute("DELETE FROM batches WHERE job_id = ?", (job_id,))
            conn.execute("DELETE FROM jobs WHERE job_id = ?", (job_id,))

    def delete_finished_before(self, cutoff: datetime, *, chunk_size: int = 100) -> int:
        if chunk_size < 1:
            raise InvalidArgument(f"chunk_size must be at least 1, got {chunk_size}")
        deleted = 0
        while True:
            with self._tx() as conn:
                ids = [
                    r[0]
                    for r in conn.execute(
                        "SELECT job_id FROM jobs WHERE finished_at < ? LIMIT ?",
                        (_us(cutoff), chunk_size),
                    )
                ]
                marks = ", ".join("?" * len(ids))
                conn.execute(f"DELETE FROM batches WHERE job_id IN ({marks})", ids)
                conn.execute(f"DELETE FROM jobs WHERE job_id IN ({marks})", ids)
            deleted += len(ids)
            if len(ids) < chunk_size:
                return deleted

    # -- the sweeper's queries ------------------------------------------------------------

    def find_expired_leases(self, now: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        return self._stale("b.status = 'running' AND b.lease_expires_at < ?", (_us(now),), limit)

    def find_unenqueued(self, older_than: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        return self._stale(
            "b.status = 'pending' AND b.enqueued_at IS NULL AND j.started_at < ?",
            (_us(older_than),),
            limit,
        )

    def _stale(self, condition: str, args: tuple[Any, ...], limit: int) -> list[tuple[Job, Batch]]:
        with self._tx("DEFERRED") as conn:
            rows = conn.execute(
                "SELECT b.* FROM batches b JOIN jobs j ON j.job_id = b.job_id"
                f" WHERE j.status = 'running' AND {condition}"
                " ORDER BY b.job_id, b.batch_index LIMIT ?",
                (*args, limit),
            ).fetchall()
            batches = [self._batch(r) for r in rows]
            jobs = {b.job_id: self._read_job(conn, b.job_id) for b in batches}
        return [(jobs[b.job_id], b) for b in batches]


def _where(clauses: list[str]) -> str:
    return f"WHERE {' AND '.join(clauses)}" if clauses else "WHERE 1 = 1"
