"""The `TaskQueue` protocol: how batches reach the worker. Cloud Tasks in production, a
durable SQLite queue with a dispatcher process locally; both pass the same contract tests.

Semantics every backend keeps (Cloud Tasks'): delivery is at least once; a task name is
unique for a while (creating a task whose name exists is a no-op that counts as enqueued);
a failed dispatch is retried with exponential backoff up to a maximum number of attempts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Task:
    """One HTTP POST to deliver. `name` deduplicates: [A-Za-z0-9_-], at most 400 chars."""

    name: str
    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    schedule_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class EnqueueResult:
    """Which tasks the queue holds now (newly created, or already there under that name),
    and which it refused, with why. Enqueueing never stops at the first failure."""

    enqueued: list[str]
    failed: dict[str, str]


class TaskQueue(Protocol):
    def enqueue(self, tasks: Sequence[Task]) -> EnqueueResult: ...

    def close(self) -> None: ...
