"""`LocalTaskQueue`: Cloud Tasks' queue as a table in the job store's SQLite file.

Enqueuers (any process) insert rows; one dispatcher process (`dispatcher.py`) claims due rows
and POSTs them. Every write is a `BEGIN IMMEDIATE` transaction, so claims, settlements and
enqueues from several processes serialise on SQLite's writer lock. A row moves
`queued -> dispatching -> done | failed`, or back to `queued` to be retried.

`schedule_time` is Cloud Tasks' field: when the next attempt is due. Like Cloud Tasks, a retry
moves it to the retry time, and the dispatcher sends it as `X-CloudTasks-TaskETA`.

`priority` stands for the Cloud Tasks queue a task would be in: each class is claimed on its
own (`claim(priority=...)`), oldest due first, and the dispatcher shares its slots between
the classes (`dispatcher.SlotShares`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from functions.config import DispatchSettings
from functions.jobs import utcnow
from functions.priority import Priority
from functions.queue.protocol import EnqueueResult, Task, name_problem, size_problem
from functions.sqlite_db import Database

# Cloud Tasks frees a name about an hour after its task finished.
DEDUP_WINDOW = timedelta(hours=1)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue_tasks (
    name TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    state TEXT NOT NULL,
    schedule_time INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    responses INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    claimed_at INTEGER,
    finished_at INTEGER,
    last_status INTEGER,
    last_error TEXT,
    priority TEXT NOT NULL DEFAULT 'normal'
);
-- Serves the claim (state = 'queued' ORDER BY schedule_time), start-up recovery and counts().
CREATE INDEX IF NOT EXISTS queue_tasks_state ON queue_tasks (state, schedule_time);
CREATE INDEX IF NOT EXISTS queue_tasks_finished ON queue_tasks (finished_at)
    WHERE finished_at IS NOT NULL;
"""
# After the column exists (a queue made by an older Fanout gains it in `_add_priority`).
_PRIORITY_INDEX = """
-- Serves the claim of one class and `due_by_priority` (the earliest due task per class).
CREATE INDEX IF NOT EXISTS queue_tasks_priority ON queue_tasks (state, priority, schedule_time);
"""


class TaskState(StrEnum):
    QUEUED = "queued"
    DISPATCHING = "dispatching"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class QueuedTask:
    """A task as the queue holds it. `attempts` counts finished dispatches (sent as
    X-CloudTasks-TaskRetryCount); `responses` those that got an HTTP answer
    (X-CloudTasks-TaskExecutionCount)."""

    name: str
    url: str
    body: bytes
    headers: Mapping[str, str]
    state: TaskState
    schedule_time: datetime
    attempts: int
    responses: int
    created_at: datetime
    claimed_at: datetime | None = None
    finished_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one dispatch got: an HTTP status, or none (timeout, connection error)."""

    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def backoff(attempts: int, dispatch: DispatchSettings) -> timedelta:
    """Delay before the next try after `attempts` failed ones (Cloud Tasks' doubling)."""
    # In float seconds, with the exponent bounded: a timedelta overflows long before.
    doubled = dispatch.min_backoff.total_seconds() * 2.0 ** min(attempts - 1, 1000)
    return timedelta(seconds=min(dispatch.max_backoff.total_seconds(), doubled))


def check_task(task: Task) -> str | None:
    """Why the queue refuses this task, or None when it accepts it."""
    if problem := name_problem(task.name):
        return problem
    parts = urlsplit(task.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"task url must be an absolute http(s) URL, got {task.url!r}"
    # Roughly the size Cloud Tasks measures: the whole task, not only its body.
    size = len(task.name) + len(task.url.encode()) + len(task.body)
    size += sum(len(k.encode()) + len(v.encode()) for k, v in task.headers.items())
    return size_problem(size)


def _us(value: datetime) -> int:
    # A naive datetime is taken as UTC, as protobuf's Timestamp does for Cloud Tasks.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    delta = value - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _dt(value: int | None) -> datetime | None:
    if value is None:
        return None
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=value)


def _task(row: sqlite3.Row) -> QueuedTask:
    return QueuedTask(
        name=row["name"],
        url=row["url"],
        body=bytes(row["body"]),
        headers=json.loads(row["headers"]),
        state=TaskState(row["state"]),
        schedule_time=_dt(row["schedule_time"]),  # type: ignore[arg-type]
        attempts=row["attempts"],
        responses=row["responses"],
        created_at=_dt(row["created_at"]),  # type: ignore[arg-type]
        claimed_at=_dt(row["claimed_at"]),
        finished_at=_dt(row["finished_at"]),
        last_status=row["last_status"],
        last_error=row["last_error"],
        priority=Priority(row["priority"]),
    )


class LocalTaskQueue:
    """`TaskQueue` on one SQLite file (WAL). Each thread gets its own connection."""

    def __init__(self, path: str | Path, dispatch: DispatchSettings) -> None:
        self.path = Path(path)
        self.dispatch = dispatch
        self.db = Database(self.path)
        self.db.executescript(_SCHEMA)
        self._add_priority()
        self.db.executescript(_PRIORITY_INDEX)

    def _add_priority(self) -> None:
        """A queue file from before priorities lacks the column: its tasks are normal."""
        with self.db.transaction() as conn:
            have = {row["name"] for row in conn.execute("PRAGMA table_info(queue_tasks)")}
            if "priority" not in have:
                conn.execute(
                    "ALTER TABLE queue_tasks ADD COLUMN priority TEXT NOT NULL DEFAULT 'normal'"
                )

    # -- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    # -- the TaskQueue protocol -----------------------------------------------------------

    def enqueue(self, tasks: Sequence[Task], *, now: datetime | None = None) -> EnqueueResult:
        """Insert every acceptable task in one transaction. A name already held (in any
        state, within the dedup window) counts as enqueued and changes nothing."""
        now_us = _us(now or utcnow())
        failed: dict[str, str] = {}
        names: list[str] = []
        rows: list[tuple[object, ...]] = []
        for task in tasks:
            reason = check_task(task)
            if reason is not None:
                failed[task.name] = reason
                continue
            due = now_us if task.schedule_time is None else _us(task.schedule_time)
            headers = json.dumps(dict(task.headers))
            names.append(task.name)
            rows.append((task.name, task.url, task.body, headers, due, now_us, task.priority.value))
        with self.db.transaction() as conn:
            self._purge(conn, now_us)
            conn.executemany(
                "INSERT INTO queue_tasks (name, url, body, headers, state, schedule_time,"
                " created_at, priority) VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)"
                " ON CONFLICT (name) DO NOTHING",
                rows,
            )
        return EnqueueResult(enqueued=list(dict.fromkeys(names)), failed=failed)

    def purge(self, *, now: datetime | None = None) -> int:
        """Forget tasks that finished more than `DEDUP_WINDOW` ago, freeing their names."""
        with self.db.transaction() as conn:
            return self._purge(conn, _us(now or utcnow()))

    @staticmethod
    def _purge(conn: sqlite3.Connection, now_us: int) -> int:
        cutoff = now_us - DEDUP_WINDOW // timedelta(microseconds=1)
        cursor = conn.execute(
            "DELETE FROM queue_tasks WHERE finished_at IS NOT NULL AND finished_at < ?",
            (cutoff,),
        )
        return cursor.rowcount

    # -- reading (monitoring, tests) ------------------------------------------------------

    def get(self, name: str) -> QueuedTask | None:
        row = self.db.conn().execute("SELECT * FROM queue_tasks WHERE name = ?", (name,)).fetchone()
        return None if row is None else _task(row)

    def task_gone(self, name: str, priority: Priority = Priority.NORMAL) -> bool | None:
        """True unless the task is still queued or being delivered (one table holds every
        class, so `priority` is not needed to find it): a failed task used up
        its attempts, a done one was answered, and a missing one was purged or never
        created; none of them will be delivered again."""
        task = self.get(name)
        return task is None or task.state in (TaskState.DONE, TaskState.FAILED)

    def counts(self) -> dict[TaskState, int]:
        """How many tasks are in each state (every state present)."""
        rows = self.db.conn().execute("SELECT state, COUNT(*) FROM queue_tasks GROUP BY state")
        found = {TaskState(state): n for state, n in rows}
        return {state: found.get(state, 0) for state in TaskState}

    # -- the dispatcher's side ------------------------------------------------------------

    def requeue_in_flight(self) -> list[str]:
        """Put back tasks a previous dispatcher claimed but never settled (it crashed or
        stopped mid-request): their outcome is unknown, so they are delivered again. Only
        the dispatcher holding the queue's lock may call this."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE queue_tasks SET state = 'queued', claimed_at = NULL"
                " WHERE state = 'dispatching' RETURNING name"
            ).fetchall()
        return sorted(row[0] for row in rows)

    def claim(
        self, limit: int, *, priority: Priority | None = None, now: datetime | None = None
    ) -> list[QueuedTask]:
        """Mark up to `limit` due tasks (of `priority` only, when given) as dispatching
        (durably, before any request), the earliest due first."""
        if limit < 1:
            return []
        now_us = _us(now or utcnow())
        of_class = "" if priority is None else " AND priority = ?"
        args: tuple[object, ...] = (now_us, now_us, limit)
        if priority is not None:
            args = (now_us, now_us, priority.value, limit)
        with self.db.transaction() as conn:
            rows = conn.execute(
                "UPDATE queue_tasks SET state = 'dispatching', claimed_at = ? WHERE name IN"
                " (SELECT name FROM queue_tasks WHERE state = 'queued' AND schedule_time <= ?"
                f"{of_class} ORDER BY schedule_time, rowid LIMIT ?) RETURNING *",
                args,
            ).fetchall()
        return sorted((_task(r) for r in rows), key=lambda t: (t.schedule_time, t.name))

    def due_by_priority(self) -> dict[Priority, datetime]:
        """When the earliest queued task of each class is due; classes with nothing queued
        are left out. One index seek per class."""
        conn = self.db.conn()
        due: dict[Priority, datetime] = {}
        for priority in Priority:
            row = conn.execute(
                "SELECT MIN(schedule_time) FROM queue_tasks WHERE state = 'queued'"
                " AND priority = ?",
                (priority.value,),
            ).fetchone()
            if row[0] is not None:
                due[priority] = _dt(row[0])  # type: ignore[assignment]
        return due

    def next_due(self) -> datetime | None:
        """When the earliest queued task is due, or None when nothing is queued."""
        row = (
            self.db.conn()
            .execute("SELECT MIN(schedule_time) FROM queue_tasks WHERE state = 'queued'")
            .fetchone()
        )
        return _dt(row[0])

    def settle(
        self, task: QueuedTask, attempt: Attempt, *, now: datetime | None = None
    ) -> QueuedTask | None:
        """Record one dispatch of a claimed task (see `settle_many`)."""
        return self.settle_many([(task, attempt)], now=now)[0]

    def settle_many(
        self, results: Sequence[tuple[QueuedTask, Attempt]], *, now: datetime | None = None
    ) -> list[QueuedTask | None]:
        """Record dispatches of claimed tasks, in one transaction: done on 2xx; otherwise
        retry after the backoff, or failed once `max_attempts` is reached. Returns each task
        as it is now, or None where the claim no longer holds (the task was recovered
        meanwhile). One transaction for all that finished together keeps the dispatcher's
        writes per task low under load."""
        now = now or utcnow()
        settled: list[QueuedTask | None] = []
        with self.db.transaction() as conn:
            for task, attempt in results:
                attempts = task.attempts + 1
                responses = task.responses + (attempt.status is not None)
                if attempt.ok:
                    state, due, finished = TaskState.DONE, task.schedule_time, now
                elif attempts >= self.dispatch.max_attempts:
                    state, due, finished = TaskState.FAILED, task.schedule_time, now
                else:
                    state = TaskState.QUEUED
                    due, finished = now + backoff(attempts, self.dispatch), None
                row = conn.execute(
                    "UPDATE queue_tasks SET state = ?, schedule_time = ?, attempts = ?,"
                    " responses = ?, finished_at = ?, last_status = ?, last_error = ?,"
                    " claimed_at = NULL WHERE name = ? AND state = 'dispatching'"
                    " AND claimed_at = ? RETURNING *",
                    (
                        state.value,
                        _us(due),
                        attempts,
                        responses,
                        None if finished is None else _us(finished),
                        attempt.status,
                        attempt.error,
                        task.name,
                        None if task.claimed_at is None else _us(task.claimed_at),
                    ),
                ).fetchone()
                settled.append(None if row is None else _task(row))
        return settled
