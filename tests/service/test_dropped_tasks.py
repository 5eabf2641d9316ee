"""Rule 4 for dropped tasks, on the real SQLite store and local queue with a clock the test
moves: no dispatcher runs, so every task stays undelivered, as when each attempt failed
to reach the worker and the queue gave up on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from functions.config import DispatchSettings, Settings, retry_window
from functions.ingest_request import IngestRequest
from functions.jobs import Job, JobStatus
from functions.priority import Priority
from functions.queue.local import Attempt, LocalTaskQueue
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore
from tests.support.clock import ManualClock
from tests.support.services import RefusingQueue

DISPATCH = DispatchSettings(
    max_attempts=3,
    min_backoff=timedelta(seconds=0.1),
    max_backoff=timedelta(seconds=1),
    deadline=timedelta(seconds=10),
)
GRACE = timedelta(seconds=5)
# 3 deadlines of 10 s, backoffs 0.1 + 0.2, and the grace.
WAIT = timedelta(seconds=35.3)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sqlite_path=tmp_path / "fanout.sqlite3",
        dispatch=DISPATCH,
        enqueue_grace=GRACE,
        max_dispatch_rounds=2,
    )


@pytest.fixture
def queue(settings: Settings) -> Iterator[RefusingQueue]:
    queue = RefusingQueue(LocalTaskQueue(settings.sqlite_path, settings.dispatch))
    yield queue
    queue.close()


@pytest.fixture
def service(
    settings: Settings, queue: RefusingQueue, clock: ManualClock
) -> Iterator[FanoutService]:
    store = SqliteJobStore(settings.sqlite_path)
    yield FanoutService(store, queue, settings, clock=clock)
    store.close()


def _submit(service: FanoutService, batches: int) -> Job:
    items = [f"doc-{i}" for i in range(batches)]
    job, _ = service.submit(IngestRequest(source="noop", collection="c", items=items, batch_size=1))
    return job


def _task_names(queue: RefusingQueue) -> set[str]:
    rows = queue.inner.db.conn().execute("SELECT name FROM queue_tasks").fetchall()
    return {row[0] for row in rows}


def test_the_wait_is_the_retry_window_plus_the_grace() -> None:
    """The figure these tests step the clock by."""
    assert retry_window(DISPATCH) + GRACE == WAIT


def test_dropped_batches_are_redispatched_then_failed_then_retried(
    service: FanoutService,
    queue: RefusingQueue,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Past the window, each round enqueues the batch under a new name; once the rounds
    are used up it fails (the job with it), saying the worker could not be reached and how
    often it was tried; a retry starts again from round 0 and completes the job."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    job = _submit(service, 3)
    ids = [f"{job.job_id}_{i:04d}" for i in range(3)]
    assert _task_names(queue) == {f"{b}-g0-a0" for b in ids}
    clock.advance(WAIT - timedelta(seconds=1))
    assert service.sweep().redispatched == 0  # the queue may still be trying

    for round_ in (1, 2):
        clock.advance(timedelta(seconds=2) if round_ == 1 else WAIT + timedelta(seconds=1))
        report = service.sweep()
        assert (report.redispatched, report.failed) == (3, 0)
        assert {f"{b}-g0-a0-r{round_}" for b in ids} <= _task_names(queue)
        for batch_id in ids:
            batch = service.store.get_batch(batch_id)
            assert (batch.status, batch.dispatch_rounds) == (JobStatus.PENDING, round_)
            assert batch.enqueued_at == clock.now
        assert service.sweep().redispatched == 0  # its new task has a whole window again
    retried = [r for r in caplog.records if "re-dispatch round" in r.getMessage()]
    assert [r.getMessage() for r in retried[-1:]] == [
        "task dropped after 3 attempts (worker unreachable?); re-dispatch round 2 of 2"
    ]
    assert len(retried) == 6 and retried[0].levelno == logging.WARNING
    assert {r.json_fields["event"] for r in retried} == {"batch_retried"}  # type: ignore[attr-defined]

    clock.advance(WAIT + timedelta(seconds=1))
    report = service.sweep()
    assert (report.redispatched, report.failed) == (0, 3)
    failed = service.store.get_job(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.failed_batches == 3
    batch = service.store.get_batch(ids[0])
    assert batch.error == (
        "the worker could not be reached: the queue dropped 3 tasks of 3 attempts each"
        " (9 attempts in all); retry the job once it is back"
    )
    assert batch.error_details is not None and "logs_url" in batch.error_details
    assert sum(r.getMessage().startswith("batch failed") for r in caplog.records) == 3

    service.retry(job.job_id)
    assert {f"{b}-g1-a0" for b in ids} <= _task_names(queue)
    assert all(service.store.get_batch(b).dispatch_rounds == 0 for b in ids)
    for batch_id in ids:  # the worker is back: the retry's tasks arrive
        assert service.run_batch(batch_id).ran
    done = service.store.get_job(job.job_id)
    assert done.status is JobStatus.COMPLETED
    assert (done.completed_batches, done.failed_batches) == (3, 0)


def test_a_batch_that_was_delivered_is_not_redispatched(
    service: FanoutService, clock: ManualClock
) -> None:
    """Only pending batches are dropped: one that a delivery claimed (running, completed)
    is the leases' business, not this one's."""
    job = _submit(service, 2)
    claim = service.store.claim_batch(f"{job.job_id}_0000", lease=timedelta(hours=1))
    assert claim.granted
    clock.advance(WAIT + timedelta(seconds=1))
    assert service.sweep().redispatched == 1
    assert service.store.get_batch(f"{job.job_id}_0000").dispatch_rounds == 0


def test_a_refused_redispatch_uses_its_round_and_is_tried_after_the_window(
    service: FanoutService,
    queue: RefusingQueue,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The round is recorded before the task is enqueued (so that of concurrent sweeps only
    one enqueues). When the queue refuses the task, that round is used: the batch waits
    for the window again, and the next round's task carries the next name."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    job = _submit(service, 2)
    clock.advance(WAIT + timedelta(seconds=1))
    queue.down = True
    assert service.sweep().redispatched == 0
    assert service.store.get_batch(f"{job.job_id}_0000").dispatch_rounds == 1
    refused = [r.getMessage() for r in caplog.records if "refused by the queue" in r.getMessage()]
    assert refused[:1] == [
        "re-dispatch round 1 of 2 refused by the queue (UNAVAILABLE: queue down);"
        " the sweeper tries again after the retry window"
    ]
    queue.down = False
    assert service.sweep().redispatched == 0
    clock.advance(WAIT + timedelta(seconds=1))
    assert service.sweep().redispatched == 2
    names = _task_names(queue)
    assert f"{job.job_id}_0001-g0-a0-r2" in names and f"{job.job_id}_0001-g0-a0-r1" not in names


def test_a_cancelled_jobs_dropped_batches_end_cancelled(
    service: FanoutService, clock: ManualClock
) -> None:
    """A cancelled job's batch whose task was dropped is ended cancelled, not re-dispatched
    (no delivery would ever come to end it)."""
    job = _submit(service, 2)
    service.cancel(job.job_id)
    clock.advance(WAIT + timedelta(seconds=1))
    report = service.sweep()
    assert (report.cancelled, report.redispatched, report.failed) == (2, 0, 0)
    assert service.store.get_batch(f"{job.job_id}_0001").status is JobStatus.CANCELLED
    assert service.store.get_job(job.job_id).status is JobStatus.CANCELLED
    assert service.sweep().cancelled == 0


def test_concurrent_sweeps_redispatch_each_batch_once(
    settings: Settings, service: FanoutService, clock: ManualClock
) -> None:
    """Four sweepers (their own connections) at once: each batch goes one round up, once,
    and the queue holds one task per batch and round."""
    job = _submit(service, 40)
    clock.advance(WAIT + timedelta(seconds=1))
    sweepers = [
        FanoutService(
            SqliteJobStore(settings.sqlite_path),
            LocalTaskQueue(settings.sqlite_path, settings.dispatch),
            settings,
            clock=clock,
        )
        for _ in range(4)
    ]
    start = threading.Barrier(len(sweepers))
    counts: list[int] = []

    def sweep(sweeper: FanoutService) -> None:
        start.wait()
        counts.append(sweeper.sweep().redispatched)

    threads = [threading.Thread(target=sweep, args=(s,)) for s in sweepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == 40
    page = service.store.list_batches(job.job_id, limit=50)
    assert {b.dispatch_rounds for b in page.items} == {1}
    queue = sweepers[0].queue
    assert isinstance(queue, LocalTaskQueue)
    assert sum(queue.counts().values()) == 80  # the first tasks and one per batch's round
    for sweeper in sweepers:
        sweeper.store.close()
        sweeper.queue.close()


def _drop(queue: RefusingQueue) -> None:
    """Every queued task fails each of its attempts, as when the worker is down: the
    queue gives up on it (the dispatcher's own bookkeeping, driven by hand; the queue
    keeps real time, so each attempt is made a day after the last)."""
    for attempt in range(1, DISPATCH.max_attempts + 1):
        later = datetime.now(UTC) + timedelta(days=attempt)
        for task in queue.inner.claim(1000, now=later):
            queue.inner.settle(task, Attempt(None, "connection refused"), now=later)


def test_a_task_the_queue_gave_up_on_is_redispatched_by_the_next_sweep(
    service: FanoutService, queue: RefusingQueue, clock: ManualClock
) -> None:
    """Once the queue has dropped a batch's task (its attempts used up), the next sweep
    after the enqueue grace re-dispatches the batch: the queue is asked, so nobody waits
    out the worst-case retry window. A batch whose task is still queued is left alone."""
    job = _submit(service, 3)
    ids = [f"{job.job_id}_{i:04d}" for i in range(3)]
    _drop(queue)
    clock.advance(GRACE + timedelta(seconds=1))
    report = service.sweep()
    assert report.redispatched == 3
    assert {f"{b}-g0-a0-r1" for b in ids} <= _task_names(queue)
    assert all(queue.inner.task_gone(f"{b}-g0-a0") for b in ids)
    assert not any(queue.inner.task_gone(f"{b}-g0-a0-r1") for b in ids)
    clock.advance(GRACE + timedelta(seconds=1))
    assert service.sweep().redispatched == 0  # the new tasks are still queued


def test_a_jobs_tasks_and_their_redispatches_wait_in_its_priority_class(
    service: FanoutService, queue: RefusingQueue, clock: ManualClock
) -> None:
    """A low job's tasks are low tasks (the low queue in the cloud), and so are the ones the
    sweeper enqueues again for them; a high job's are high."""

    def asked(items: list[str], priority: Priority) -> IngestRequest:
        return IngestRequest(
            source="noop", collection="c", items=items, batch_size=1, priority=priority
        )

    low, _ = service.submit(asked(["a", "b"], Priority.LOW))
    high, _ = service.submit(asked(["c"], Priority.HIGH))
    clock.advance(WAIT + timedelta(seconds=1))
    assert service.sweep().redispatched == 3

    rows = queue.inner.db.conn().execute("SELECT name, priority FROM queue_tasks").fetchall()
    classes = {name: level for name, level in rows}
    assert len(classes) == 6  # the first tasks and their round-1 successors
    for name, level in classes.items():
        assert level == ("low" if name.startswith(low.job_id) else "high"), name
    assert {level for name, level in classes.items() if name.startswith(high.job_id)} == {"high"}
