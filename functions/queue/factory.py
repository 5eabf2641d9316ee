"""`open_queue`: the configured task queue, with its client built lazily."""

from __future__ import annotations

from functions.config import Settings
from functions.queue.protocol import TaskQueue


def open_queue(settings: Settings) -> TaskQueue:
    queue: TaskQueue
    if settings.queue == "cloud_tasks":
        from functions.queue.cloud_tasks import CloudTasksQueue

        queue = CloudTasksQueue(settings.cloud_tasks, settings.dispatch.deadline)
    else:
        from functions.queue.local import LocalTaskQueue

        queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    if settings.chaos_enqueue_limit is not None:
        from functions.queue.chaos import FailingAfter

        queue = FailingAfter(queue, settings.chaos_enqueue_limit)
    return queue
