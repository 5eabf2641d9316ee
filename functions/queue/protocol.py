"""The `TaskQueue` protocol: how batches reach the worker. Cloud Tasks in production, a
durable SQLite queue with a dispatcher process locally; both pass the same contract tests.

Semantics every backend keeps (Cloud Tasks'): delivery is at least once; a task name is
unique for a while (creating a task whose name exists is a no-op that counts as enqueued);
a failed dispatch is retried with exponential backoff up to a maximum number of attempts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from functions.priority import Priority

# Cloud Tasks' limits; the local queue keeps them too, so both backends refuse alike.
TASK_NAME = re.compile(r"[A-Za-z0-9_-]{1,400}")
MAX_TASK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Task:
    """One HTTP POST to deliver. `name` deduplicates: [A-Za-z0-9_-], at most 400 chars.
    `priority` picks the queue class it waits in (a queue of its own in the cloud)."""

    name: str
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    schedule_time: datetime | None = None
    priority: Priority = Priority.NORMAL


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Which tasks the queue holds now (newly created, or already there under that name),
    and which it refused, with why. Enqueueing never stops at the first failure."""

    enqueued: list[str]
    failed: dict[str, str]


class TaskQueue(Protocol):
    def enqueue(self, tasks: Sequence[Task]) -> EnqueueResult: ...

    def task_gone(self, name: str, priority: Priority = Priority.NORMAL) -> bool | None:
        """Whether the queue of class `priority` no longer holds the task `name`, so that it
        will never deliver it again: True once its attempts are used up (Cloud Tasks then
        deletes it, and GetTask answers NOT_FOUND) or it was never there; False while it is
        still queued or being delivered; None when the queue cannot tell (an emulator
        without GetTask, no permission), and the sweeper falls back to the worst-case retry
        window."""
        ...

    def close(self) -> None: ...


def name_problem(name: str) -> str | None:
    """Why a task name is refused, or None when it is valid."""
    if TASK_NAME.fullmatch(name):
        return None
    return f"invalid task name: use 1 to 400 characters from [A-Za-z0-9_-], got {name[:60]!r}"


def size_problem(size: int) -> str | None:
    """Why a task of `size` bytes is refused, or None when it fits."""
    if size <= MAX_TASK_BYTES:
        return None
    return f"task is {size} bytes; Cloud Tasks accepts at most {MAX_TASK_BYTES}"
