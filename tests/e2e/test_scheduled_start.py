"""A later start on the local stack: a job given `not_before` waits scheduled, its tasks held
by the queue until then, and no batch is claimed before it; cancelled before it, the job
never runs a batch. Every wait is on the stack's state, never a sleep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

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


def test_a_job_scheduled_5_s_ahead_runs_no_batch_before_then(stack: LocalStack) -> None:
    """Submitted 5 s ahead of its start: answered scheduled at once, with the start; every
    batch's first claim comes at or after the start; the job then completes, started no
    earlier than it."""
    client = client_for(stack)
    start = datetime.now(UTC) + timedelta(seconds=5)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "later",
            "items": ITEMS,
            "batch_size": 1,
            "not_before": start.isoformat(),
        }
    )
    assert accepted["status"] == "scheduled"
    job = client.job(accepted["job_id"])
    assert (job["status"], _at(job["not_before"]), job["started_at"]) == ("scheduled", start, None)
    assert job["batches"]["pending"] == len(ITEMS)

    done = wait_terminal(client, accepted["job_id"])

    assert done["status"] == "completed" and done["completed_batches"] == len(ITEMS)
    assert _at(done["started_at"]) >= start
    first_claims = [_at(b["started_at"]) for b in all_batches(client, accepted["job_id"])]
    assert len(first_claims) == len(ITEMS)
    assert min(first_claims) >= start, (start, sorted(first_claims))


def test_a_scheduled_job_cancelled_before_its_start_never_runs_a_batch(stack: LocalStack) -> None:
    """Cancelled while scheduled: when its tasks fall due each delivery ends its batch
    cancelled without claiming it, so no batch has an attempt or a start."""
    client = client_for(stack)
    start = datetime.now(UTC) + timedelta(seconds=2)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "later",
            "items": ITEMS,
            "batch_size": 1,
            "not_before": start.isoformat(),
        }
    )
    assert accepted["status"] == "scheduled"
    job_id = accepted["job_id"]

    assert client.cancel(job_id)["status"] == "cancelled"

    # The deliveries after the start end each batch cancelled: wait until all have come.
    batches = wait_for(
        lambda: (
            (b := all_batches(client, job_id)) and all(x["status"] == "cancelled" for x in b) and b
        ),
        what="every batch of the cancelled job to end cancelled",
    )
    assert datetime.now(UTC) >= start
    assert [(b["attempts"], b["started_at"]) for b in batches] == [(0, None)] * len(ITEMS)
    job = client.job(job_id)
    assert (job["status"], job["started_at"], job["completed_batches"]) == ("cancelled", None, 0)
    assert job["batches"]["cancelled"] == len(ITEMS)
