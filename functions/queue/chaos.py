"""Fault injection for tests and demos: a queue that refuses tasks past a limit.

`FANOUT_CHAOS_ENQUEUE_LIMIT=N` makes every enqueue call accept its first N tasks and
refuse the rest, as a queue outage half-way through a fan-out would. The sweeper must then
finish the fan-out (rule 4).
"""

from __future__ import annotations

from collections.abc import Sequence

from functions.priority import Priority
from functions.queue.protocol import EnqueueResult, Task, TaskQueue


class FailingAfter:
    def __init__(self, inner: TaskQueue, limit: int) -> None:
        self.inner = inner
        self.limit = limit
        self.tripped = False

    def enqueue(self, tasks: Sequence[Task]) -> EnqueueResult:
        """The first call is cut at `limit` tasks; later calls (the sweeper's) go through,
        as after an outage ends."""
        if self.tripped:
            return self.inner.enqueue(tasks)
        self.tripped = True
        accepted = self.inner.enqueue(tasks[: self.limit])
        refused = {t.name: "injected enqueue failure" for t in tasks[self.limit :]}
        return EnqueueResult(accepted.enqueued, {**accepted.failed, **refused})

    def task_gone(self, name: str, priority: Priority = Priority.NORMAL) -> bool | None:
        return self.inner.task_gone(name, priority)

    def close(self) -> None:
        self.inner.close()
