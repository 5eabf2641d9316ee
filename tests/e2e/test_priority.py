"""Priority on the local stack: an urgent job overtakes a bulk one.

While a 2,000-batch low job keeps every worker busy, a 10-batch high job completes before
it, in at most 3 times what the same job takes on the idle stack (measured first, in the
same test). Batches are noop items that each take a little time, so that the low job
really keeps the worker's threads busy rather than waiting on the dispatcher."""

from __future__ import annotations

import statistics
from datetime import datetime
from typing import Any

from functions.cli.client import FanoutClient
from functions.local.stack import WORKER_THREADS
from tests.e2e.conftest import StackFactory, client_for, wait_for, wait_terminal

# Each item sleeps this long: a batch is work the worker's threads are busy with.
ITEM_MS = 100
MAX_RATIO = 3.0


def _noop(items: int, priority: str, tag: str) -> dict[str, Any]:
    return {
        "source": "noop",
        "collection": "priority",
        "items": [f"{tag}-{n:04d}" for n in range(items)],
        "batch_size": 1,
        "options": {"delay_ms": ITEM_MS},
        "priority": priority,
    }


def _seconds(job: dict[str, Any]) -> float:
    """Submit to end, by the job's own timestamps (no polling interval in it)."""
    created = datetime.fromisoformat(job["created_at"])
    return (datetime.fromisoformat(job["finished_at"]) - created).total_seconds()


def _run_high(client: FanoutClient, tag: str) -> dict[str, Any]:
    job_id = client.submit(_noop(10, "high", tag))["job_id"]
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed" and job["completed_batches"] == 10
    return job


def test_a_high_job_overtakes_a_low_backlog_that_keeps_every_worker_busy(
    make_stack: StackFactory,
) -> None:
    """A high job submitted behind a busy low backlog ends first, within 3x its idle time."""
    # As in the cloud (infra/queue.tf's precondition), no more dispatches at once than the
    # worker runs: a dispatch beyond them waits in the worker's own backlog, in no order of
    # priority, out of the dispatcher's reach.
    stack = make_stack(env={"FANOUT_MAX_CONCURRENT_DISPATCHES": WORKER_THREADS})
    client = client_for(stack)
    _run_high(client, "warm-up")  # the first job also pays for the worker's first imports
    idle = statistics.median(_seconds(_run_high(client, f"idle{n}")) for n in range(3))

    low_id = client.submit(_noop(2_000, "low", "bulk"))["job_id"]
    # Every thread of the worker runs a low batch (and the dispatcher has more in flight).
    busy = wait_for(
        lambda: (j := client.job(low_id))["batches"]["running"] >= int(WORKER_THREADS) and j,
        what="the low job to keep every worker thread busy",
    )
    assert busy["priority"] == "low"
    high = _run_high(client, "urgent")

    low = client.job(low_id)
    assert low["status"] == "running" and low["batches"]["pending"] > 0
    assert high["priority"] == "high"
    ratio = _seconds(high) / idle
    print(f"high job: {idle:.3f}s idle, {_seconds(high):.3f}s busy, ratio {ratio:.2f}")
    assert ratio <= MAX_RATIO, f"high job took {_seconds(high):.2f}s busy, {idle:.2f}s idle"
    client.cancel(low_id)  # the rest of the backlog is not this test's business
