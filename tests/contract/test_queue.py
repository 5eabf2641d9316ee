"""One contract for every `TaskQueue`: the local queue (SQLite file + dispatcher) and the
Cloud Tasks adapter (against `gcloud-tasks-emulator`). Both deliver to the same real HTTP
receiver, which tells tasks apart by URL path.

What only one backend does is tested next to it, in `tests/queue/`: the local dispatcher's
retries, backoff, deadline and crash recovery; the adapter's task IDs, OIDC tokens and API
errors. Tests that hit a gap of the emulator carry `tasks_emulator_gap` and are strict
xfails there (see conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from functions.config import CloudTasksSettings, Settings
from functions.jobs import Job, plan_batches
from functions.local.tasks_emulator import TasksEmulator
from functions.priority import Priority
from functions.queue.cloud_tasks import task_id
from functions.queue.local import LocalTaskQueue
from functions.queue.protocol import MAX_TASK_BYTES, EnqueueResult, Task, TaskQueue
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore
from tests.queue.cloud_tasks_fixtures import CloudQueueFactory, TaskReceiver, unique

# The emulator fixtures, re-exported so pytest finds them here.
from tests.queue.cloud_tasks_fixtures import make_cloud_queue as make_cloud_queue
from tests.queue.cloud_tasks_fixtures import tasks_emulator as tasks_emulator
from tests.queue.cloud_tasks_fixtures import tasks_receiver as tasks_receiver
from tests.queue.conftest import FAST
from tests.queue.harness import DispatcherThread

# How long a test that expects NO further delivery watches for one.
QUIET_SECONDS = 3.0


@dataclass(frozen=True)
class QueueUnderTest:
    queue: TaskQueue
    receiver: TaskReceiver
    queue_name: str  # what X-CloudTasks-QueueName ends with
    task_header: Callable[[str], str]  # X-CloudTasks-TaskName for a task name
    # The queue each priority class's tasks are in (X-CloudTasks-QueueName's end).
    class_queue: Callable[[Priority], str]

    def task(self, name: str, body: bytes = b"", **headers: str) -> Task:
        return Task(name, self.receiver.url(name), body, headers)


@pytest.fixture(params=["local", "cloud-tasks-emulator"])
def queue_backend(
    request: pytest.FixtureRequest, tmp_path: Path, tasks_receiver: TaskReceiver
) -> Iterator[QueueUnderTest]:
    if request.param == "local":
        db = tmp_path / "queue.sqlite3"
        queue = LocalTaskQueue(db, FAST)
        dispatcher = DispatcherThread(db, FAST)
        yield QueueUnderTest(
            queue, tasks_receiver, FAST.queue_name, lambda name: name, FAST.queue_name_for
        )
        dispatcher.halt()
        queue.close()
    else:
        make: CloudQueueFactory = request.getfixturevalue("make_cloud_queue")
        emulator: TasksEmulator = request.getfixturevalue("tasks_emulator")
        # The adapter's settings: the emulator's queue for normal, the defaults for the others.
        names = CloudTasksSettings(queue=emulator.queue)
        yield QueueUnderTest(make(), tasks_receiver, emulator.queue, task_id, names.queue_for)


def test_a_task_arrives_as_a_post_with_its_body_and_headers(queue_backend: QueueUnderTest) -> None:
    """The worker gets a POST to the task's URL with the body byte for byte, the task's
    headers, and Cloud Tasks' headers naming the queue and the task."""
    name, body = unique(), bytes(range(256))
    task = queue_backend.task(
        name, body, **{"Content-Type": "application/octet-stream", "X-Fanout-Job": "job-1"}
    )

    assert queue_backend.queue.enqueue([task]) == EnqueueResult(enqueued=[name], failed={})

    assert queue_backend.receiver.wait_for([name])
    (delivery,) = queue_backend.receiver.to(name)
    assert (delivery.method, delivery.body) == ("POST", body)
    assert delivery.headers["content-type"] == "application/octet-stream"
    assert delivery.headers["x-fanout-job"] == "job-1"
    assert delivery.headers["x-cloudtasks-taskname"] == queue_backend.task_header(name)
    assert delivery.headers["x-cloudtasks-queuename"].endswith(queue_backend.queue_name)


def test_each_priority_class_delivers_from_its_own_queue(queue_backend: QueueUnderTest) -> None:
    """A task of each class arrives, from its class's queue (a queue of its own in the
    cloud): high, normal and low are three queues, normal the one tasks had before."""
    names = {level: unique(level.value) for level in Priority}
    tasks = [
        Task(name, queue_backend.receiver.url(name), b"", priority=level)
        for level, name in names.items()
    ]

    assert queue_backend.queue.enqueue(tasks).enqueued == list(names.values())

    assert queue_backend.receiver.wait_for(list(names.values()))
    for level, name in names.items():
        (delivery,) = queue_backend.receiver.to(name)
        assert delivery.headers["x-cloudtasks-queuename"].endswith(queue_backend.class_queue(level))
    assert queue_backend.class_queue(Priority.NORMAL) == queue_backend.queue_name
    assert len({queue_backend.class_queue(level) for level in Priority}) == 3


def test_fifty_tasks_enqueued_at_once_all_arrive_as_enqueued(
    queue_backend: QueueUnderTest,
) -> None:
    """One `enqueue` of 50 tasks reports all 50 enqueued, in the order given, and each
    arrives with its own body and headers."""
    names = [unique(f"b{i:02d}") for i in range(50)]
    tasks = [queue_backend.task(n, f"body of {n}".encode(), **{"X-Batch": n}) for n in names]

    assert queue_backend.queue.enqueue(tasks) == EnqueueResult(enqueued=names, failed={})

    assert queue_backend.receiver.wait_for(names)
    for name in names:
        deliveries = queue_backend.receiver.to(name)
        assert {d.body for d in deliveries} == {f"body of {name}".encode()}
        assert {d.headers["x-batch"] for d in deliveries} == {name}


def test_schedule_time_holds_the_delivery_until_then(queue_backend: QueueUnderTest) -> None:
    """A task is not delivered before its `schedule_time`, which the delivery carries as
    X-CloudTasks-TaskETA (seconds since the epoch)."""
    name = unique()
    when = datetime.now(UTC) + timedelta(seconds=1.5)
    task = Task(name, queue_backend.receiver.url(name), b"", {}, when)

    assert queue_backend.queue.enqueue([task]).enqueued == [name]

    assert queue_backend.receiver.wait_for([name])
    (delivery,) = queue_backend.receiver.to(name)
    assert delivery.received_at >= when
    assert float(delivery.headers["x-cloudtasks-tasketa"]) == pytest.approx(
        when.timestamp(), abs=1e-3
    )


def test_a_name_twice_in_one_call_is_one_task(queue_backend: QueueUnderTest) -> None:
    """Within one `enqueue`, the first task of a name is created; a later one of the same
    name counts as enqueued and is never delivered."""
    name = unique()
    first, second = queue_backend.task(name, b"first"), queue_backend.task(name, b"second")

    assert queue_backend.queue.enqueue([first, second]) == EnqueueResult([name], {})

    assert queue_backend.receiver.wait_for([name])
    assert not queue_backend.receiver.wait_for([name], count=2, timeout=QUIET_SECONDS)
    assert [d.body for d in queue_backend.receiver.to(name)] == [b"first"]


@pytest.mark.tasks_emulator_gap("no task-name deduplication")
def test_a_name_already_taken_counts_as_enqueued_and_is_delivered_once(
    queue_backend: QueueUnderTest,
) -> None:
    """Enqueueing a name the queue already holds (here: already delivered) counts as
    enqueued; the worker gets one delivery, not two. Re-enqueues after a lost response
    rely on this."""
    name = unique()
    task = queue_backend.task(name, b"once")

    assert queue_backend.queue.enqueue([task]).enqueued == [name]
    assert queue_backend.receiver.wait_for([name])
    assert queue_backend.queue.enqueue([task]) == EnqueueResult(enqueued=[name], failed={})

    assert not queue_backend.receiver.wait_for([name], count=2, timeout=QUIET_SECONDS)


def test_invalid_names_and_oversized_tasks_fail_alone(queue_backend: QueueUnderTest) -> None:
    """A name outside [A-Za-z0-9_-]{1,400} and a task over 1 MiB are refused, each with its
    reason; the other tasks of the same call are enqueued and delivered."""
    good = [unique(), unique()]
    bad_names = ["bad/name", "", "dot.ted", "x" * 401]
    big = unique()
    tasks = [
        queue_backend.task(good[0]),
        *(Task(n, queue_backend.receiver.url("bad"), b"", {}) for n in bad_names),
        queue_backend.task(big, b"x" * MAX_TASK_BYTES),
        queue_backend.task(good[1]),
    ]

    result = queue_backend.queue.enqueue(tasks)

    assert result.enqueued == good
    assert set(result.failed) == {*bad_names, big}
    assert all("[A-Za-z0-9_-]" in result.failed[n] for n in bad_names)
    assert f"at most {MAX_TASK_BYTES}" in result.failed[big]
    assert queue_backend.receiver.wait_for(good)
    assert queue_backend.receiver.to("bad") == []


@pytest.mark.tasks_emulator_gap("CreateTask accepts any URL (no request validation)")
def test_a_task_without_a_usable_url_fails_alone(queue_backend: QueueUnderTest) -> None:
    """A task whose URL is not an absolute http(s) URL is refused with a reason; the tasks
    around it are enqueued and delivered."""
    good, bad = [unique(), unique()], unique()
    tasks = [
        queue_backend.task(good[0]),
        Task(bad, "not a url", b"", {}),
        queue_backend.task(good[1]),
    ]

    result = queue_backend.queue.enqueue(tasks)

    assert list(result.failed) == [bad] and result.failed[bad]
    assert result.enqueued == good
    assert queue_backend.receiver.wait_for(good)


def test_a_batch_task_carries_its_jobs_trace_to_the_worker(
    queue_backend: QueueUnderTest, tmp_path: Path
) -> None:
    """The worker receives a `traceparent` with the job's trace id and a span of its own, so
    the worker's lines join the job's trace in Cloud Logging."""
    name = unique()
    settings = Settings(worker_url=queue_backend.receiver.url(name))
    service = FanoutService(
        SqliteJobStore(tmp_path / "jobs.sqlite3"), queue_backend.queue, settings
    )
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    job = Job.new(source="noop", collection="docs", trace_id=trace_id)
    (batch,) = plan_batches(job.job_id, ["doc-1"], 1)

    assert queue_backend.queue.enqueue([service.task_for(job, batch)]).failed == {}

    assert queue_backend.receiver.wait_for([name])
    (delivery,) = queue_backend.receiver.to(name)
    assert re.fullmatch(f"00-{trace_id}-[0-9a-f]{{16}}-01", delivery.headers["traceparent"])


@pytest.mark.tasks_emulator_gap("no GetTask (UNIMPLEMENTED)")
def test_the_queue_says_which_tasks_it_still_holds(queue_backend: QueueUnderTest) -> None:
    """A task still waiting for its schedule time is not gone; a name the queue never held
    is. The sweeper asks this before it re-dispatches a batch (Cloud Tasks: GetTask)."""
    name = unique()
    later = datetime.now(UTC) + timedelta(hours=1)
    task = Task(name, queue_backend.receiver.url(name), b"", {}, later)
    assert queue_backend.queue.enqueue([task]).enqueued == [name]
    assert queue_backend.queue.task_gone(name) is False
    assert queue_backend.queue.task_gone(unique()) is True
