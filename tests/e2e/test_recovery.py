"""Rule 4 for dropped tasks, on the real local stack: run_batch is down, so every attempt of
every task is refused and the dispatcher drops each task after its last attempt (as Cloud
Tasks does). The sweeper (cleanup_jobs, called here as the scheduler would) enqueues such
batches again once the queue's retry window has passed, and fails them after its rounds.

Sweeps are driven by the test, and the worker is stopped and started by it: the stacks
run without the supervisor, which would restart the worker at once."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest

from functions.cli.client import call
from functions.config import DispatchSettings
from functions.local.stack import LocalStack
from functions.queue.local import LocalTaskQueue, TaskState
from tests.e2e.conftest import (
    SWEPT,
    StackFactory,
    all_batches,
    client_for,
    wait_for,
    wait_terminal,
)

FANOUT = Path(sys.executable).with_name("fanout")
# 3 attempts of at most 1 s, backoffs 0.05 + 0.1 s (FAST_ENV), 0.5 s grace: a task is taken
# for dropped 3.65 s after it was enqueued.
RECOVERY_ENV = {
    "FANOUT_MAX_ATTEMPTS": "3",
    "FANOUT_DISPATCH_DEADLINE_SECONDS": "1",
}


def _noop(batches: int) -> dict[str, Any]:
    return {
        "source": "noop",
        "collection": "docs",
        "items": [f"doc-{i}" for i in range(2 * batches)],
        "batch_size": 2,
    }


def _dropped(stack: LocalStack) -> Callable[[], int]:
    """How many tasks the local queue has given up on (state failed)."""
    queue = LocalTaskQueue(stack.sqlite_path, DispatchSettings())
    return lambda: queue.counts()[TaskState.FAILED]


def _sweep_until(stack: LocalStack, field: str, total: int, what: str) -> list[dict[str, int]]:
    """Call the sweeper (as a scheduler would, only more often) until its reports add up
    to `total` under `field`; the reports."""
    reports: list[dict[str, int]] = []

    def swept() -> bool:
        reports.append(stack.sweep())
        return sum(r[field] for r in reports) >= total

    wait_for(swept, timeout=60, what=what)
    assert sum(r[field] for r in reports) == total, reports
    return reports


@pytest.mark.parametrize("store", ["sqlite", "firestore"])
def test_worker_down_past_the_retry_window_then_back_completes_the_job(
    make_stack: StackFactory, store: Literal["sqlite", "firestore"]
) -> None:
    """The worker is down while the job's tasks and their first re-dispatch are dropped;
    once it is back, the next re-dispatch runs every batch, each counted once."""
    stack = make_stack(store=store, env=RECOVERY_ENV, supervise=False, functions=SWEPT)
    client = client_for(stack)
    dropped = _dropped(stack)
    stack.kill("run_batch")
    job_id = client.submit(_noop(10))["job_id"]
    wait_for(lambda: dropped() == 10, what="the dispatcher to drop the 10 tasks")
    assert client.job(job_id)["status"] == "running"

    # Down longer than the retry window: round 1 is dropped too.
    _sweep_until(stack, "redispatched", 10, "round 1 of the re-dispatch")
    wait_for(lambda: dropped() == 20, what="round 1's tasks to be dropped")

    stack.start_process("run_batch")
    stack.wait_ready("run_batch")
    _sweep_until(stack, "redispatched", 10, "round 2 of the re-dispatch")
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed", job
    assert (job["completed_batches"], job["failed_batches"]) == (10, 0)
    assert (job["stats"]["processed"], job["stats"]["failed"]) == (20, 0)
    batches = all_batches(client, job_id)
    assert {(b["status"], b["attempts"], b["dispatch_rounds"]) for b in batches} == {
        ("completed", 1, 2)
    }
    assert stack.sweep()["redispatched"] == 0


def test_worker_down_through_every_round_fails_the_job_and_retry_completes_it(
    make_stack: StackFactory,
) -> None:
    """With the worker down for good, the batches fail once their one re-dispatch round is
    dropped too, saying the worker could not be reached; a retry after the worker is back
    completes the job."""
    stack = make_stack(
        env={**RECOVERY_ENV, "FANOUT_MAX_DISPATCH_ROUNDS": "1"},
        supervise=False,
        functions=SWEPT,
    )
    client = client_for(stack)
    dropped = _dropped(stack)
    stack.kill("run_batch")
    job_id = client.submit(_noop(6))["job_id"]
    wait_for(lambda: dropped() == 6, what="the dispatcher to drop the 6 tasks")
    _sweep_until(stack, "redispatched", 6, "the one re-dispatch round")
    wait_for(lambda: dropped() == 12, what="the re-dispatched tasks to be dropped")
    _sweep_until(stack, "failed", 6, "the sweeper to fail the batches")

    job = client.job(job_id)
    assert job["status"] == "failed", job
    assert (job["completed_batches"], job["failed_batches"]) == (0, 6)
    batches = all_batches(client, job_id)
    assert {b["status"] for b in batches} == {"failed"}
    assert {b["error"] for b in batches} == {
        "the worker could not be reached: the queue dropped 2 tasks of 3 attempts each"
        " (6 attempts in all); retry the job once it is back"
    }

    stack.start_process("run_batch")
    stack.wait_ready("run_batch")
    assert client.retry(job_id)["status"] == "running"
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed", job
    assert (job["completed_batches"], job["failed_batches"]) == (6, 0)
    assert job["stats"]["processed"] == 12
    assert {b["dispatch_rounds"] for b in all_batches(client, job_id)} == {0}


def test_a_job_submitted_while_the_worker_is_down_for_seconds_completes_by_the_retries(
    make_stack: StackFactory,
) -> None:
    """`kill -9` of run_batch, then a submit, with the queue's own retry schedule (the
    defaults, as infra/ deploys them: 10 attempts, backoff doubling from 1 s to 60 s) run
    ten times faster: the worker stays down through five attempts of every task (15 s at
    full speed; the old settings dropped a task after five attempts in 1.5 s), then comes
    back; the later retries reach it and the job completes with no sweep and no one acting
    on it. No task is dropped. (At full speed the test waited 33 s; the defaults' own
    timings are pinned in tests/unit/test_retry_window.py.)"""
    defaults = DispatchSettings()
    tenth = DispatchSettings(
        max_attempts=defaults.max_attempts,
        min_backoff=defaults.min_backoff / 10,
        max_backoff=defaults.max_backoff / 10,
    )
    stack = make_stack(
        env={
            "FANOUT_MAX_ATTEMPTS": str(tenth.max_attempts),
            "FANOUT_MIN_BACKOFF_SECONDS": str(tenth.min_backoff.total_seconds()),
            "FANOUT_MAX_BACKOFF_SECONDS": str(tenth.max_backoff.total_seconds()),
        },
        supervise=False,  # the test brings the worker back
    )
    client = client_for(stack)
    queue = LocalTaskQueue(stack.sqlite_path, tenth)
    stack.kill("run_batch")
    job_id = client.submit(_noop(3))["job_id"]

    def fewest_attempts() -> int:
        row = queue.db.conn().execute("SELECT MIN(attempts) FROM queue_tasks").fetchone()
        return int(row[0] or 0)

    wait_for(lambda: fewest_attempts() >= 5, what="five failed attempts of every task")
    stack.start_process("run_batch")
    job = wait_terminal(client, job_id, timeout=60)
    assert (job["status"], job["completed_batches"]) == ("completed", 3)
    assert _dropped(stack)() == 0
    assert {b["dispatch_rounds"] for b in all_batches(client, job_id)} == {0}


def test_a_batch_whose_task_was_dropped_shows_as_such_until_the_sweep(
    make_stack: StackFactory,
) -> None:
    """With the worker down, the queue drops a job's tasks. The API then marks each pending
    batch `task: dropped` with the time after which the next sweep re-dispatches it, the
    job's page and `fanout show` say so, and the next sweep re-dispatches them at once,
    long before the queue's retry window (a minute here) has passed."""
    stack = make_stack(
        env={"FANOUT_MAX_ATTEMPTS": "3", "FANOUT_DISPATCH_DEADLINE_SECONDS": "20"},
        supervise=False,
        functions=SWEPT,
    )
    client = client_for(stack)
    dropped = _dropped(stack)
    stack.kill("run_batch")
    job_id = client.submit(_noop(2))["job_id"]
    wait_for(lambda: dropped() == 2, what="the dispatcher to drop the 2 tasks")

    def all_dropped() -> list[dict[str, Any]]:
        batches = all_batches(client, job_id)
        return batches if all(b["task"] == "dropped" for b in batches) else []

    batches = wait_for(all_dropped, what="the API to see the dropped tasks")
    for batch in batches:
        enqueued = datetime.fromisoformat(batch["enqueued_at"])
        after = datetime.fromisoformat(batch["redispatch_after"])
        assert after - enqueued == timedelta(seconds=0.5)  # the grace (FAST_ENV)
    _, page = call("GET", f"{stack.url('jobs_api')}/ui/jobs/{job_id}")
    assert str(page).count("task dropped by the queue") == 2
    shown = subprocess.run(
        [str(FANOUT), "show", job_id, "--api-url", stack.url("jobs_api")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "batches whose task the queue dropped (2):" in shown

    assert stack.sweep()["redispatched"] == 2
    assert {b["task"] for b in all_batches(client, job_id)} == {"queued"}
