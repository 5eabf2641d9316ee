"""A `FanoutService` on real parts, for tests that call the service or the routers in process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from functions.config import Settings
from functions.priority import Priority
from functions.queue.local import LocalTaskQueue
from functions.queue.protocol import EnqueueResult, Task
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore


@contextmanager
def sqlite_service(settings: Settings) -> Iterator[FanoutService]:
    """The service on a real SQLite store and local queue at `settings.sqlite_path`. No
    dispatcher runs: enqueued tasks wait, so submitted jobs stay running."""
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    try:
        yield FanoutService(store, queue, settings)
    finally:
        store.close()
        queue.close()


class RefusingQueue:
    """The local queue, which refuses every task while `down` (as Cloud Tasks can)."""

    def __init__(self, inner: LocalTaskQueue) -> None:
        self.inner = inner
        self.down = False

    def enqueue(self, tasks: Sequence[Task]) -> EnqueueResult:
        if self.down:
            return EnqueueResult([], {t.name: "UNAVAILABLE: queue down" for t in tasks})
        return self.inner.enqueue(tasks)

    def task_gone(self, name: str, priority: Priority = Priority.NORMAL) -> bool | None:
        return self.inner.task_gone(name, priority)

    def close(self) -> None:
        self.inner.close()
