"""SQLite plumbing shared by the embedded store and the local queue: one WAL file used by
several processes, one connection per thread, and write transactions that take the lock
up front (`BEGIN IMMEDIATE`).

Lock hand-over is done here rather than by SQLite's busy handler: that handler sleeps in
steps of 1, 2, 5, 10 ... 100 ms, which under steady multi-process contention (dispatcher
and worker writing at once) wastes most of the time. We retry with short, growing pauses.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

LOCK_TIMEOUT = 60.0
_FIRST_PAUSE = 0.0001
_MAX_PAUSE = 0.005


def _busy(error: sqlite3.OperationalError) -> bool:
    return "locked" in str(error) or "busy" in str(error)


class Database:
    """One SQLite file in WAL mode; each thread gets its own connection."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        # SQLite admits one writer at a time: threads of this process queue here (a wait
        # that wakes at once) and only other processes are met with busy-and-retry.
        self._writer = threading.Lock()

    def conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are ours (see `transaction`). timeout=0:
            # a busy lock is reported at once, and `transaction` retries it quickly.
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            fresh = conn
            self._retry(lambda: fresh.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def executescript(self, script: str) -> None:
        """Run idempotent DDL (`IF NOT EXISTS`), retried like any write."""
        conn = self.conn()
        self._retry(lambda: conn.executescript(script))

    def write(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        """One write statement as its own transaction (atomic, triggers included), holding
        the write lock only while SQLite runs it. Returns its RETURNING rows."""
        conn = self.conn()
        rows: list[sqlite3.Row] = []

        def run() -> None:
            rows[:] = conn.execute(sql, params).fetchall()

        with self._writer:
            self._retry(run)
        return rows

    @staticmethod
    def _retry(action: Callable[[], object]) -> None:
        deadline = time.monotonic() + LOCK_TIMEOUT
        pause = _FIRST_PAUSE
        while True:
            try:
                action()
                return
            except sqlite3.OperationalError as error:
                if not _busy(error) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)  # another process holds the write lock
            pause = min(pause * 2, _MAX_PAUSE)

    @contextmanager
    def transaction(self, mode: str = "IMMEDIATE") -> Iterator[sqlite3.Connection]:
        """A transaction; rolled back on any error, so a failed call writes nothing."""
        conn = self.conn()
        if mode != "IMMEDIATE":  # a read snapshot: never waits in WAL mode
            conn.execute(f"BEGIN {mode}")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
            return
        with self._writer:
            self._retry(lambda: conn.execute("BEGIN IMMEDIATE"))
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


@dataclass
class SqlWork:
    """What a connection ran: SQL statements, and virtual-machine steps, which grow with
    every row or index entry read (so a scan shows even when the statement count does not)."""

    statements: int = 0
    vm_steps: int = 0


@contextmanager
def counting_work(conn: sqlite3.Connection) -> Iterator[SqlWork]:
    """Count what `conn` runs meanwhile (benchmarks and tests of read costs)."""
    work = SqlWork()

    def statement(_: str) -> None:
        work.statements += 1

    def step() -> int:
        work.vm_steps += 1
        return 0  # go on

    conn.set_trace_callback(statement)
    conn.set_progress_handler(step, 1)
    try:
        yield work
    finally:
        conn.set_trace_callback(None)
        conn.set_progress_handler(None, 1)
