"""A later start through the service, on the real SQLite store and local queue, with a clock
the test moves: the window `not_before` must lie in, the tasks held until it, an early
delivery turned away for the queue to retry, and a sweeper that leaves waiting tasks alone
and starts a due job no delivery started."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from functions.config import Settings
from functions.errors import InvalidField, NotDue
from functions.ingest_request import IngestRequest
from functions.jobs import JobStatus, utcnow
from functions.planner import parse_plan_task
from functions.queue.local import Attempt, LocalTaskQueue
from functions.service import FanoutService
from functions.store.protocol import JobQuery
from functions.store.sqlite import SqliteJobStore
from tests.support.clock import ManualClock

AHEAD = timedelta(hours=2)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def service(tmp_path: Path, clock: ManualClock) -> Iterator[FanoutService]:
    settings = Settings(sqlite_path=tmp_path / "fanout.sqlite3")
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    yield FanoutService(store, queue, settings, clock=clock)
    store.close()
    queue.close()


def _request(not_before: str | None) -> IngestRequest:
    return IngestRequest.model_validate(
        {
            "source": "noop",
            "collection": "c",
            "items": ["a", "b", "c"],
            "batch_size": 1,
            "not_before": not_before,
        }
    )


def _queue(service: FanoutService) -> LocalTaskQueue:
    assert isinstance(service.queue, LocalTaskQueue)
    return service.queue


def test_every_task_of_a_scheduled_job_is_held_until_its_start(
    service: FanoutService, clock: ManualClock
) -> None:
    """The job is scheduled; each batch's task is due at `not_before` and counts as
    enqueued from then; the request keeps the time as given."""
    start = clock.now + AHEAD
    given = start.isoformat().replace("+00:00", "Z")

    job, _ = service.submit(_request(given))

    assert (job.status, job.not_before, job.started_at) == (JobStatus.SCHEDULED, start, None)
    assert job.request["not_before"] == given
    for index in range(3):
        task = _queue(service).get(f"{job.job_id}_{index:04d}-g0-a0")
        assert task is not None and task.schedule_time == start
        assert service.store.get_batch(f"{job.job_id}_{index:04d}").enqueued_at == start


def test_an_early_delivery_is_not_due_and_the_first_at_the_start_runs(
    service: FanoutService, clock: ManualClock
) -> None:
    """A task delivered before the start raises NotDue (409: the queue retries later) and
    changes nothing; delivered at the start it starts the job and runs."""
    job, _ = service.submit(_request((clock.now + AHEAD).isoformat()))
    batch_id = f"{job.job_id}_0000"

    clock.advance(AHEAD - timedelta(seconds=1))
    with pytest.raises(NotDue) as raised:
        service.run_batch(batch_id)
    assert raised.value.http_status == 409
    assert service.store.get_batch(batch_id).attempts == 0
    assert service.store.get_job(job.job_id).status is JobStatus.SCHEDULED

    clock.advance(timedelta(seconds=1))
    for index in range(3):
        assert service.run_batch(f"{job.job_id}_{index:04d}").ran
    done = service.store.get_job(job.job_id)
    assert (done.status, done.started_at) == (JobStatus.COMPLETED, clock.now)


def test_the_sweeper_leaves_waiting_tasks_alone_and_starts_a_due_job_nobody_started(
    service: FanoutService, clock: ManualClock
) -> None:
    """Up to the start (plus the enqueue grace) a sweep finds nothing to do for a scheduled
    job, however long ago it was submitted; past it, with no delivery come (the worker
    down), the sweep starts the job, and its still-queued tasks are not taken for dropped."""
    job, _ = service.submit(_request((clock.now + AHEAD).isoformat()))

    clock.advance(AHEAD + service.settings.enqueue_grace)
    assert not any(service.sweep().counts().values())
    assert service.store.get_job(job.job_id).status is JobStatus.SCHEDULED

    clock.advance(timedelta(seconds=1))
    report = service.sweep()

    assert report.started == 1 and report.ids["started"] == (job.job_id,)
    assert {name: n for name, n in report.counts().items() if n} == {"started": 1}
    read = service.store.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.RUNNING, clock.now)


@pytest.mark.parametrize(
    ("offset", "says"),
    [
        (-timedelta(minutes=2), "is in the past"),
        (timedelta(days=30, seconds=1), "is more than 30 days ahead"),
    ],
)
def test_a_not_before_outside_the_window_is_refused_and_creates_nothing(
    service: FanoutService, clock: ManualClock, offset: timedelta, says: str
) -> None:
    """In the past (beyond the grace) or more than 30 days ahead: `InvalidField` naming
    not_before, and no job, batch or task."""
    with pytest.raises(InvalidField) as raised:
        service.submit(_request((clock.now + offset).isoformat()))
    assert raised.value.field == "not_before" and says in raised.value.problem
    assert service.store.list_jobs(JobQuery.build()).total == 0
    assert sum(_queue(service).counts().values()) == 0


def test_a_not_before_within_the_grace_or_at_30_days_is_accepted(
    service: FanoutService, clock: ManualClock
) -> None:
    """The edges of the window: 59 s in the past (a caller's clock behind ours) starts the
    job at once, with tasks due at once; exactly 30 days ahead schedules it."""
    now_job, _ = service.submit(_request((clock.now - timedelta(seconds=59)).isoformat()))
    assert now_job.status is JobStatus.RUNNING
    task = _queue(service).get(f"{now_job.job_id}_0000-g0-a0")
    assert task is not None and task.schedule_time <= utcnow()  # the queue's own clock

    later, _ = service.submit(_request((clock.now + timedelta(days=30)).isoformat()))
    assert later.status is JobStatus.SCHEDULED


@pytest.fixture
def planning(tmp_path: Path, clock: ManualClock) -> Iterator[FanoutService]:
    """The service with planner pages of 4 items (4 batches at batch size 1)."""
    settings = Settings(
        sqlite_path=tmp_path / "planned.sqlite3", allowed_roots=(tmp_path,), plan_page_items=4
    )
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    yield FanoutService(store, queue, settings, clock=clock)
    store.close()
    queue.close()


def _planned_request(tmp_path: Path, origin: str, not_before: datetime) -> IngestRequest:
    """Ten items, from a manifest or a folder's listing: three pages."""
    names = [f"doc-{i}.txt" for i in range(10)]
    if origin == "items_from":
        (tmp_path / "manifest.txt").write_text("".join(f"{name}\n" for name in names))
        given = {"items_from": str(tmp_path / "manifest.txt")}
    else:
        (tmp_path / "docs").mkdir()
        for name in names:
            (tmp_path / "docs" / name).write_text("x")
        given = {"location": str(tmp_path / "docs")}
    return IngestRequest.model_validate(
        {"source": "noop", "collection": "c", "batch_size": 1}
        | given
        | {"not_before": not_before.isoformat()}
    )


def _plan_now(service: FanoutService) -> int:
    """Deliver every task due now (planner tasks: batches wait for their start). Returns
    how many batch tasks came due (none, for a scheduled job)."""
    batches = 0
    while tasks := _queue(service).claim(100):
        for task in tasks:
            plan = parse_plan_task(json.loads(task.body))
            if plan is None:
                batches += 1
            else:
                service.plan_page(plan.job_id, plan.page)
        _queue(service).settle_many([(task, Attempt(200)) for task in tasks])
    return batches


@pytest.mark.parametrize("origin", ["items_from", "location"])
def test_a_job_planned_by_pages_with_a_later_start_is_planned_now_and_runs_then(
    planning: FanoutService, clock: ManualClock, tmp_path: Path, origin: str
) -> None:
    """A later start with a manifest or a listing of several pages: the job is scheduled,
    its planner tasks run at once and plan every page, and it stays scheduled; each batch's
    task is held until the start, an early delivery is not due, and at the start the
    batches run and the job completes, started then."""
    start = clock.now + AHEAD
    job, _ = planning.submit(_planned_request(tmp_path, origin, start))
    assert (job.status, job.planning, job.started_at) == (JobStatus.SCHEDULED, True, None)

    assert _plan_now(planning) == 0
    planned = planning.store.get_job(job.job_id)
    assert (planned.status, planned.planning) == (JobStatus.SCHEDULED, False)
    assert (planned.total_batches, planned.plan_pages) == (10, 3)
    for index in range(10):
        task = _queue(planning).get(f"{job.job_id}_{index:04d}-g0-a0")
        assert task is not None and task.schedule_time == start
    with pytest.raises(NotDue):
        planning.run_batch(f"{job.job_id}_0000")

    clock.advance(AHEAD)
    for index in range(10):
        assert planning.run_batch(f"{job.job_id}_{index:04d}").ran
    done = planning.store.get_job(job.job_id)
    assert (done.status, done.started_at, done.completed_batches) == (
        JobStatus.COMPLETED,
        start,
        10,
    )


@pytest.mark.parametrize("origin", ["items_from", "location"])
def test_a_job_planned_by_pages_cancelled_before_its_start_never_runs_a_batch(
    planning: FanoutService, clock: ManualClock, tmp_path: Path, origin: str
) -> None:
    """Cancelled while it plans, before its start: planning stops, and every batch
    delivered after the start ends cancelled without an attempt."""
    job, _ = planning.submit(_planned_request(tmp_path, origin, clock.now + AHEAD))
    assert planning.plan_page(job.job_id, 0).written
    planning.cancel(job.job_id)
    assert _plan_now(planning) == 0  # page 1's task finds the job cancelled

    clock.advance(AHEAD)
    stopped = planning.store.get_job(job.job_id)
    assert (stopped.status, stopped.plan_pages, stopped.total_batches) == (
        JobStatus.CANCELLED,
        1,
        4,
    )
    for index in range(stopped.total_batches):
        assert not planning.run_batch(f"{job.job_id}_{index:04d}").ran
        batch = planning.store.get_batch(f"{job.job_id}_{index:04d}")
        assert (batch.status, batch.attempts, batch.started_at) == (JobStatus.CANCELLED, 0, None)
