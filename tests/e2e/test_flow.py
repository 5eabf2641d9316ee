"""The serverless path on the real local stack: ingest -> fan out -> run -> finalize."""

from __future__ import annotations

import base64
import json
from typing import Literal

import pytest

from functions.cli.client import call
from functions.config import DispatchSettings
from functions.queue.local import LocalTaskQueue
from tests.e2e.conftest import (
    JOB_FUNCTIONS,
    SWEPT,
    CallbackReceiver,
    StackFactory,
    all_batches,
    client_for,
    wait_for,
    wait_terminal,
)

STORES = ["sqlite", "firestore"]


def _items(n: int) -> list[str]:
    return [f"doc-{i}" for i in range(n)]


@pytest.mark.parametrize("store", STORES)
def test_http_job_completes_with_exact_counts(
    make_stack: StackFactory, store: Literal["sqlite", "firestore"], callbacks: CallbackReceiver
) -> None:
    """A 50-batch job submitted over HTTP completes: every batch once, exact stats, one
    callback with the final summary."""
    stack = make_stack(store=store)
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(100),
            "batch_size": 2,
            "callback_url": callbacks.url,
        }
    )
    assert accepted["total_batches"] == 50 and accepted["created"] is True
    assert accepted["status_url"].endswith(f"/jobs/{accepted['job_id']}")
    job = wait_terminal(client, accepted["job_id"])
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["failed_batches"]) == (50, 0)
    assert job["stats"]["processed"] == 100 and job["progress"] == 1.0
    assert job["batches"]["completed"] == 50
    assert all(
        b["status"] == "completed" and b["attempts"] >= 1
        for b in all_batches(client, job["job_id"])
    )
    with callbacks.arrived:
        callbacks.arrived.wait_for(lambda: callbacks.received, timeout=30)
    assert [c["job"]["job_id"] for c in callbacks.received] == [job["job_id"]]
    assert callbacks.received[0]["job"]["status"] == "completed"
    assert (
        wait_for(lambda: client.job(job["job_id"])["callback_status"], what="callback status")
        == "delivered: HTTP 200"
    )


def test_pubsub_job_completes(make_stack: StackFactory) -> None:
    """The same request as a Pub/Sub CloudEvent creates and completes a job; a redelivery
    of the message (same client_id/request_id) creates no second job."""
    stack = make_stack(functions=(*JOB_FUNCTIONS, "ingest_pubsub"))
    client = client_for(stack)
    request = {
        "source": "noop",
        "collection": "docs",
        "items": _items(30),
        "batch_size": 3,
        "client_id": "pubsub-test",
        "request_id": "m-1",
    }
    event = {
        "message": {
            "data": base64.b64encode(json.dumps(request).encode()).decode(),
            "messageId": "1",
        },
        "subscription": "projects/p/subscriptions/s",
    }
    headers = {
        "ce-id": "1",
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
    }
    for _ in range(2):
        status, _ = call("POST", stack.url("ingest_pubsub"), event, headers=headers)
        assert status == 200
    page = wait_for(
        lambda: (p := client.jobs(client_id="pubsub-test"))["total"] and p, what="the pubsub job"
    )
    assert page["total"] == 1
    job = wait_terminal(client, page["jobs"][0]["job_id"])
    assert job["status"] == "completed" and job["completed_batches"] == 10
    assert job["stats"]["processed"] == 30


@pytest.mark.parametrize("store", STORES)
def test_duplicate_deliveries_count_once(
    make_stack: StackFactory, store: Literal["sqlite", "firestore"], callbacks: CallbackReceiver
) -> None:
    """With every task delivered twice, counts stay exact and the job finalizes once
    (exactly one callback)."""
    stack = make_stack(
        store=store, process_env={"dispatcher": {"FANOUT_DUPLICATE_DELIVERY": "true"}}
    )
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(60),
            "batch_size": 2,
            "callback_url": callbacks.url,
            "options": {"delay_ms": 5},
        }
    )
    job = wait_terminal(client, accepted["job_id"])
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["stats"]["processed"]) == (30, 60)
    with callbacks.arrived:
        callbacks.arrived.wait_for(lambda: callbacks.received, timeout=30)
    # The queue has settled every task: no later delivery can finalize again.
    queue = LocalTaskQueue(stack.sqlite_path, DispatchSettings())
    wait_for(
        lambda: {state for state, n in queue.counts().items() if n} == {"done"},
        what="queue to drain",
    )
    assert len(callbacks.received) == 1


def test_worker_crash_mid_batch_recovers_with_exact_counts(make_stack: StackFactory) -> None:
    """SIGKILL the worker while batches run; once the stack has restarted it, retries
    (after the dead attempt's lease expires) complete the job with exact counts."""
    stack = make_stack()
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(40),
            "batch_size": 2,
            "options": {"delay_ms": 150},
        }
    )
    job_id = accepted["job_id"]
    wait_for(lambda: client.job(job_id)["batches"]["running"] > 0, what="a running batch")
    stack.kill("run_batch")  # the stack's supervisor starts it again
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["stats"]["processed"]) == (20, 40)
    assert max(b["attempts"] for b in all_batches(client, job_id)) >= 2


def test_dispatcher_crash_loses_nothing(make_stack: StackFactory) -> None:
    """SIGKILL the dispatcher mid-job (the stack restarts it): in-flight tasks are
    re-delivered and the job completes with exact counts."""
    stack = make_stack()
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(40),
            "batch_size": 2,
            "options": {"delay_ms": 100},
        }
    )
    job_id = accepted["job_id"]
    wait_for(lambda: client.job(job_id)["batches"]["running"] > 0, what="a running batch")
    stack.kill("dispatcher")  # the stack's supervisor starts it again
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["stats"]["processed"]) == (20, 40)


def test_cancel_mid_run_starts_no_batch_after_the_cancel(make_stack: StackFactory) -> None:
    """A job cancelled mid-run ends cancelled; no batch starts after the cancel, and the
    batches that never ran end cancelled."""
    stack = make_stack(env={"FANOUT_MAX_CONCURRENT_DISPATCHES": "2"})
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(30),
            "batch_size": 1,
            "options": {"delay_ms": 100},
        }
    )
    job_id = accepted["job_id"]
    wait_for(lambda: client.job(job_id)["completed_batches"] >= 2, what="2 batches done")
    cancelled = client.cancel(job_id)
    assert cancelled["status"] == "cancelled"
    cancelled_at = cancelled["finished_at"]
    batches = wait_for(
        lambda: (
            (bs := all_batches(client, job_id))
            and all(b["status"] in {"completed", "cancelled"} for b in bs)
            and bs
        ),
        what="every batch to settle",
    )
    assert all(b["started_at"] is None or b["started_at"] <= cancelled_at for b in batches)
    assert sum(b["status"] == "cancelled" for b in batches) > 10
    final = client.job(job_id)
    assert final["status"] == "cancelled"
    assert final["completed_batches"] == sum(b["status"] == "completed" for b in batches)


def test_failed_items_fail_the_job_and_retry_completes_it(make_stack: StackFactory) -> None:
    """Items that fail deterministically fail their batches and the job, with exact counts;
    after the cause is fixed, a retry re-runs only those batches and completes the job."""
    stack = make_stack()
    client = client_for(stack)
    fail_file = stack.state_dir / "bad-items.txt"
    fail_file.write_text("doc-3\ndoc-7\n")
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": _items(20),
            "batch_size": 2,
            "options": {"fail_items_file": str(fail_file)},
        }
    )
    job = wait_terminal(client, accepted["job_id"])
    assert job["status"] == "failed"
    assert (job["completed_batches"], job["failed_batches"]) == (8, 2)
    assert (job["stats"]["processed"], job["stats"]["failed"]) == (18, 2)
    failed = client.batches(job["job_id"], status="failed")["batches"]
    assert [b["index"] for b in failed] == [1, 3]
    batch_logs = f"/jobs/{job['job_id']}/logs?batch_id={failed[0]['batch_id']}"
    assert failed[0]["error_details"] == {
        "failed_items": {"doc-3": f"item 'doc-3' is listed in {fail_file}"},
        "logs_url": stack.url("jobs_api") + batch_logs,
    }
    fail_file.write_text("")
    retried = client.retry(job["job_id"])
    assert retried["status"] == "running" and retried["retries"] == 1
    job = wait_terminal(client, job["job_id"])
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["failed_batches"]) == (10, 0)
    assert (job["stats"]["processed"], job["stats"]["failed"]) == (20, 0)


def test_lost_enqueue_is_finished_by_the_sweeper(make_stack: StackFactory) -> None:
    """When the queue refuses most tasks of a fan-out, the job does not get stuck: the
    sweeper (cleanup_jobs) enqueues the rest and the job completes."""
    stack = make_stack(process_env={"ingest": {"FANOUT_CHAOS_ENQUEUE_LIMIT": "5"}}, functions=SWEPT)
    client = client_for(stack)
    accepted = client.submit(
        {"source": "noop", "collection": "docs", "items": _items(20), "batch_size": 1}
    )
    job_id = accepted["job_id"]
    wait_for(lambda: client.job(job_id)["completed_batches"] == 5, what="5 enqueued batches")
    assert client.job(job_id)["status"] == "running"
    # The sweeper leaves a fan-out alone for the enqueue grace period, then enqueues the rest.
    enqueued = wait_for(lambda: stack.sweep()["enqueued"], what="the sweeper to enqueue")
    assert enqueued == 15
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed" and job["completed_batches"] == 20
