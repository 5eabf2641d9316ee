"""A later start on the local stack: a job given `not_before` waits scheduled, its tasks held
by the queue until then, and no batch is claimed before it; cancelled before it, the job
never runs a batch. Every wait is on the stack's state, never a sleep."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.local.stack import LocalStack
from tests.e2e.conftest import all_batches, client_for, shared_stack, wait_for, wait_terminal

ITEMS = [f"doc-{i}" for i in range(6)]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    running = shared_stack(tmp_path_factory, "scheduled")
    yield running
    running.stop()


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@dataclass(frozen=True)
class Scheduled:
    """Two jobs submitted together, 5 s ahead of their start; the second cancelled at once."""

    start: datetime
    runs: dict[str, Any]
    cancelled: dict[str, Any]
    cancel_answer: dict[str, Any]
    cancelled_at: datetime


@pytest.fixture(scope="module")
def scheduled(stack: LocalStack) -> Scheduled:
    client = client_for(stack)
    start = datetime.now(UTC) + timedelta(seconds=5)
    request = {
        "source": "noop",
        "collection": "later",
        "items": ITEMS,
        "batch_size": 1,
        "not_before": start.isoformat(),
    }
    runs, cancelled = client.submit(request), client.submit(request)
    answer = client.cancel(cancelled["job_id"])
    return Scheduled(start, runs, cancelled, answer, datetime.now(UTC))


def test_a_job_scheduled_5_s_ahead_runs_no_batch_before_then(
    stack: LocalStack, scheduled: Scheduled
) -> None:
    """Answered scheduled at once, with its start; every batch's first claim comes at or
    after the start; the job then completes, started no earlier than it."""
    client = client_for(stack)
    start, job_id = scheduled.start, scheduled.runs["job_id"]
    assert scheduled.runs["status"] == "scheduled"
    assert _at(scheduled.runs["not_before"]) == start

    done = wait_terminal(client, job_id)

    assert done["status"] == "completed" and done["completed_batches"] == len(ITEMS)
    assert _at(done["not_before"]) == start and _at(done["started_at"]) >= start
    first_claims = [_at(b["started_at"]) for b in all_batches(client, job_id)]
    assert len(first_claims) == len(ITEMS)
    assert min(first_claims) >= start, (start, sorted(first_claims))


def test_a_scheduled_job_cancelled_before_its_start_never_runs_a_batch(
    stack: LocalStack, scheduled: Scheduled
) -> None:
    """Cancelled while scheduled: when its tasks fall due each delivery ends its batch
    cancelled without claiming it, so no batch has an attempt or a start."""
    client = client_for(stack)
    job_id = scheduled.cancelled["job_id"]
    assert scheduled.cancelled["status"] == "scheduled"
    assert scheduled.cancel_answer["status"] == "cancelled"
    assert scheduled.cancelled_at < scheduled.start  # the premise: cancelled before it

    # The deliveries after the start end each batch cancelled: wait until all have come.
    batches = wait_for(
        lambda: (
            (b := all_batches(client, job_id)) and all(x["status"] == "cancelled" for x in b) and b
        ),
        what="every batch of the cancelled job to end cancelled",
    )
    assert datetime.now(UTC) >= scheduled.start
    assert [(b["attempts"], b["started_at"]) for b in batches] == [(0, None)] * len(ITEMS)
    job = client.job(job_id)
    assert (job["status"], job["started_at"], job["completed_batches"]) == ("cancelled", None, 0)
    assert job["batches"]["cancelled"] == len(ITEMS)
