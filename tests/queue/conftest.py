"""Fixtures for the local queue: a SQLite file, a receiver, dispatchers that always stop."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.config import DispatchSettings
from functions.queue.local import LocalTaskQueue
from tests.queue.harness import DispatcherProcess, DispatcherThread, Receiver

# Small backoffs so that retries take tens of milliseconds; a generous deadline unless a
# test is about the deadline.
FAST = DispatchSettings(
    max_concurrent=4,
    max_attempts=5,
    min_backoff=timedelta(seconds=0.05),
    max_backoff=timedelta(seconds=0.2),
    deadline=timedelta(seconds=5),
    queue_name="fanout-test",
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "fanout.sqlite3"


@pytest.fixture
def tasks(db: Path) -> Iterator[LocalTaskQueue]:
    queue = LocalTaskQueue(db, FAST)
    yield queue
    queue.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def start_dispatcher(db: Path, receiver: Receiver) -> Iterator[Callable[..., DispatcherThread]]:
    """Starts `Dispatcher.run` in a thread with FAST settings, overridable per test."""
    started: list[DispatcherThread] = []

    def start(grace: float = 0.5, **overrides: Any) -> DispatcherThread:
        dispatcher = DispatcherThread(db, replace(FAST, **overrides), grace=grace)
        started.append(dispatcher)
        return dispatcher

    yield start
    receiver.release.set()  # unblock handlers first, so that stopping is quick
    for dispatcher in started:
        dispatcher.halt()


@pytest.fixture
def spawn_dispatcher(db: Path, receiver: Receiver) -> Iterator[Callable[[], DispatcherProcess]]:
    """Starts `python -m functions.queue.dispatcher` on `db`, configured by FANOUT_* env."""
    started: list[DispatcherProcess] = []
    env = {
        "FANOUT_MAX_CONCURRENT_DISPATCHES": "4",
        "FANOUT_MIN_BACKOFF_SECONDS": "0.05",
        "FANOUT_MAX_BACKOFF_SECONDS": "0.2",
        "FANOUT_DISPATCH_DEADLINE_SECONDS": "5",
        "FANOUT_TASKS_QUEUE": "fanout-test",
    }

    def spawn() -> DispatcherProcess:
        process = DispatcherProcess(db, env)
        started.append(process)
        return process

    yield spawn
    receiver.release.set()
    for process in started:
        process.kill()
