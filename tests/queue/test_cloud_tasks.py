"""`CloudTasksQueue` against the real `gcloud-tasks-emulator` process, which dispatches the
tasks to a real HTTP receiver on 127.0.0.1. What every queue promises (delivery, headers,
schedule time, deduplication, refusals) is in the shared contract, tests/contract/test_queue.py;
this module holds what only the adapter does.

The emulator proves the client code (what is sent, how answers are handled), not Cloud
Tasks' semantics. Tests written for real Cloud Tasks that hit one of its gaps are marked
`xfail(strict=True)` naming the gap, so the gap list stays explicit and a fixed emulator (or
a run against the real service) turns them into failures to look at.

Waits are bounded waits on a Condition (the receiver's) or an Event, never sleeps.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from google.cloud import tasks_v2

from functions.config import CloudTasksSettings, Settings
from functions.errors import ConfigError
from functions.ingest_request import IngestRequest
from functions.jobs import JobStatus
from functions.local.tasks_emulator import TasksEmulator, start_tasks_emulator
from functions.queue.cloud_tasks import CloudTasksQueue, task_id
from functions.queue.protocol import EnqueueResult, Task
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore
from tests.queue.cloud_tasks_fixtures import (
    WAIT_SECONDS,
    CloudQueueFactory,
    TaskReceiver,
    far_future,
    listed,
    unique,
)

# The fixtures, re-exported so pytest finds them here (the local queue owns conftest.py).
from tests.queue.cloud_tasks_fixtures import make_cloud_queue as make_cloud_queue
from tests.queue.cloud_tasks_fixtures import tasks_emulator as tasks_emulator
from tests.queue.cloud_tasks_fixtures import tasks_receiver as tasks_receiver
from tests.support.emulators import free_port


def test_task_id_is_a_short_hash_of_the_name_then_the_name() -> None:
    """The ID is deterministic (deduplication depends on it), is 8 hex digits, a dash and the
    name, and spreads sequential names over many leading characters."""
    assert task_id("job-1_0001") == task_id("job-1_0001")
    assert re.fullmatch(r"[0-9a-f]{8}-job-1_0001", task_id("job-1_0001"))
    leading = {task_id(f"job-1_{i:04d}")[0] for i in range(100)}
    assert len(leading) >= 10
    assert len(task_id("x" * 400)) <= 500


def test_the_api_receives_a_hash_prefixed_name_and_the_task_as_given(
    make_cloud_queue: CloudQueueFactory,
) -> None:
    """What CreateTask receives, read back from the API: the name
    `{queue}/tasks/{8 hex}-{task name}`, an HTTP POST to the URL with the body and headers,
    the queue's dispatch deadline and the task's schedule time."""
    name = unique()
    when = far_future()
    queue = make_cloud_queue(dispatch_deadline=timedelta(seconds=45))
    url = "http://127.0.0.1:9/never"

    assert queue.enqueue([Task(name, url, b"payload", {"X-A": "1"}, when)]).enqueued == [name]

    (task,) = listed(queue, name)
    assert re.fullmatch(
        re.escape(f"{queue.queue_path}/tasks/") + r"[0-9a-f]{8}-" + re.escape(name), task.name
    )
    assert task.http_request.http_method == tasks_v2.HttpMethod.POST
    assert task.http_request.url == url
    assert task.http_request.body == b"payload"
    assert task.http_request.headers["X-A"] == "1"
    assert task.dispatch_deadline == timedelta(seconds=45)
    assert task.schedule_time == when


@pytest.mark.parametrize(
    ("audience", "expected"),
    [(None, "http://127.0.0.1:9/never"), ("https://worker.example", "https://worker.example")],
)
def test_an_oidc_token_is_requested_when_a_service_account_is_configured(
    make_cloud_queue: CloudQueueFactory, audience: str | None, expected: str
) -> None:
    """With a service account configured, each task asks for an OIDC token for it, with the
    configured audience, or the task's URL when none is configured."""
    name = unique()
    queue = make_cloud_queue(service_account="tasks@p.iam.gserviceaccount.com", audience=audience)

    queue.enqueue([Task(name, "http://127.0.0.1:9/never", b"", {}, far_future())])

    (task,) = listed(queue, name)
    assert task.http_request.oidc_token.service_account_email == "tasks@p.iam.gserviceaccount.com"
    assert task.http_request.oidc_token.audience == expected


def test_no_oidc_token_without_a_service_account(make_cloud_queue: CloudQueueFactory) -> None:
    """Without a service account, tasks carry no token request."""
    name = unique()
    queue = make_cloud_queue()

    queue.enqueue([Task(name, "http://127.0.0.1:9/never", b"", {}, far_future())])

    (task,) = listed(queue, name)
    assert "oidc_token" not in task.http_request


def test_every_task_for_a_missing_queue_fails_with_the_api_reason(
    make_cloud_queue: CloudQueueFactory,
) -> None:
    """When the API refuses the queue, `enqueue` does not raise: every task is in `failed`
    with the error the API gave."""
    names = [unique() for _ in range(3)]
    queue = make_cloud_queue(queue="no-such-queue")

    result = queue.enqueue([Task(n, "http://127.0.0.1:9/", b"", {}) for n in names])

    assert result.enqueued == []
    assert set(result.failed) == set(names)
    for reason in result.failed.values():
        assert reason.split(":")[0] in {"FailedPrecondition", "NotFound"}, reason


class _SetOnRecord(logging.Handler):
    def __init__(self, event: threading.Event) -> None:
        super().__init__(logging.WARNING)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        self.event.set()


def test_transient_errors_are_retried_until_the_api_answers(
    make_cloud_queue: CloudQueueFactory,
    tasks_receiver: TaskReceiver,
    tasks_emulator: TasksEmulator,
    tmp_path: Path,
) -> None:
    """A create that meets Unavailable (the API is not up yet) is retried, and succeeds once
    the API answers: the task is reported enqueued and is delivered."""
    port = free_port()
    queue = make_cloud_queue(emulator_host=f"127.0.0.1:{port}")
    name = unique()
    results: list[EnqueueResult] = []
    retried = threading.Event()
    handler = _SetOnRecord(retried)
    logger = logging.getLogger("functions.queue.cloud_tasks")
    logger.addHandler(handler)
    enqueue = threading.Thread(
        target=lambda: results.append(queue.enqueue([Task(name, tasks_receiver.url(name), b"")]))
    )
    try:
        enqueue.start()
        assert retried.wait(WAIT_SECONDS), "the first create did not fail transiently"
        late = start_tasks_emulator(tmp_path, port=port, queue=tasks_emulator.queue)
        try:
            enqueue.join(2 * WAIT_SECONDS)
            assert results == [EnqueueResult(enqueued=[name], failed={})]
            assert tasks_receiver.wait_for([name])
        finally:
            late.stop()
    finally:
        logger.removeHandler(handler)
        enqueue.join(2 * WAIT_SECONDS)


def test_transient_errors_past_the_retry_budget_fail_with_the_reason(
    make_cloud_queue: CloudQueueFactory,
) -> None:
    """When the API stays unavailable longer than the retry budget, each task lands in
    `failed` saying it gave up on transient errors, and which one."""
    queue = make_cloud_queue(emulator_host=f"127.0.0.1:{free_port()}", retry_seconds=1.0)
    names = [unique(), unique()]

    result = queue.enqueue([Task(n, "http://127.0.0.1:9/", b"") for n in names])

    assert result.enqueued == []
    assert set(result.failed) == set(names)
    for reason in result.failed.values():
        assert "gave up after 1s of transient errors" in reason
        assert "ServiceUnavailable" in reason


@pytest.mark.parametrize(
    "deadline", [timedelta(0), timedelta(seconds=14.999), timedelta(minutes=30, seconds=1)]
)
def test_a_dispatch_deadline_outside_15s_to_30min_is_a_config_error(deadline: timedelta) -> None:
    """Cloud Tasks takes HTTP dispatch deadlines from 15 s to 30 min; anything else is
    refused when the queue is built, naming the setting, rather than silently clamped."""
    with pytest.raises(ConfigError, match="FANOUT_DISPATCH_DEADLINE_SECONDS"):
        CloudTasksQueue(CloudTasksSettings(project="p"), deadline)


@pytest.mark.parametrize("deadline", [timedelta(seconds=15), timedelta(minutes=30)])
def test_the_dispatch_deadline_bounds_are_accepted(deadline: timedelta) -> None:
    """15 s and 30 min themselves are valid deadlines."""
    CloudTasksQueue(CloudTasksSettings(project="p"), deadline).close()


def test_a_queue_without_a_project_is_a_config_error() -> None:
    """The queue path needs a project; without one the queue is refused at start-up."""
    with pytest.raises(ConfigError, match="FANOUT_TASKS_PROJECT"):
        CloudTasksQueue(CloudTasksSettings(project=None), timedelta(minutes=10))


def test_the_client_is_built_once_whichever_threads_ask_first(
    make_cloud_queue: CloudQueueFactory,
) -> None:
    """Threads racing for the client on a fresh queue all get the same one, and it talks to
    the emulator."""
    queue = make_cloud_queue()
    start = threading.Barrier(8)
    clients: list[Any] = []

    def grab() -> None:
        start.wait(WAIT_SECONDS)
        clients.append(queue.client)

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_SECONDS)

    assert len(clients) == 8
    assert len({id(c) for c in clients}) == 1
    assert queue.client.get_queue(name=queue.queue_path).name == queue.queue_path


def test_close_closes_the_channel_and_is_idempotent(make_cloud_queue: CloudQueueFactory) -> None:
    """After `close()`, a second `close()` is harmless, `enqueue` raises, and the gRPC
    channel the queue built is closed."""
    queue = make_cloud_queue()
    client = queue.client

    queue.close()
    queue.close()

    with pytest.raises(RuntimeError, match="closed"):
        queue.enqueue([Task(unique(), "http://127.0.0.1:9/", b"")])
    with pytest.raises(ValueError, match="closed channel"):
        client.get_queue(name=queue.queue_path)


def test_the_emulator_cannot_say_whether_a_task_is_gone(
    make_cloud_queue: CloudQueueFactory,
) -> None:
    """gcloud-tasks-emulator has no GetTask: the adapter answers "cannot tell" (None), not
    "gone", so the sweeper waits out the retry window there rather than re-dispatching a
    batch whose task may still be queued."""
    assert make_cloud_queue().task_gone("any-task") is None


def test_a_scheduled_jobs_tasks_are_created_with_its_start_as_schedule_time(
    make_cloud_queue: CloudQueueFactory, tmp_path: Path
) -> None:
    """Submitting a job that starts later creates every batch's task with `schedule_time`
    = its `not_before`, as the API reads it back: Cloud Tasks holds them until then."""
    settings = Settings(sqlite_path=tmp_path / "fanout.sqlite3", worker_url="http://127.0.0.1:9/")
    store = SqliteJobStore(settings.sqlite_path)
    queue = make_cloud_queue()
    service = FanoutService(store, queue, settings)
    start = far_future()
    request = {"source": "noop", "collection": "c", "items": ["a", "b", "c"], "batch_size": 2}

    job, _ = service.submit(
        IngestRequest.model_validate(request | {"not_before": start.isoformat()})
    )

    assert job.status is JobStatus.SCHEDULED
    for index in range(2):
        name = service.task_for(job, store.get_batch(f"{job.job_id}_{index:04d}")).name
        (task,) = listed(queue, name)
        assert task.schedule_time == start
    store.close()
