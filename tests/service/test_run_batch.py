"""The worker's use case on the real SQLite store and local queue: transient failures,
lease release, attempts running out, cancellation between items."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from functions.config import DispatchSettings, Settings
from functions.errors import Busy, TransientError
from functions.ingest_request import IngestRequest
from functions.jobs import BatchOutcome, Job, JobStats, JobStatus, utcnow
from functions.processors import BatchContext, BatchWork, Stateless, register
from functions.queue.local import LocalTaskQueue
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore


@register("flaky-test")
class FlakyProcessor(Stateless):
    """Raises TransientError for every item: a dependency that is down."""

    def __init__(self, settings: Settings) -> None:
        pass

    def check_request(self, request: IngestRequest) -> None:
        pass

    def open_batch(self, context: BatchContext) -> BatchWork:
        return self

    def process(self, item: str) -> JobStats:
        raise TransientError(f"dependency down while processing {item}")

    def flush(self) -> JobStats:
        return JobStats()


@register("buffering-test")
class BufferingProcessor(Stateless):
    """Stores its items two at a time (as the documents processor buffers chunks until a
    flush) and reports an item processed once stored. At each item it notes the batch's
    progress as the store shows it, against the items stored by then."""

    store: SqliteJobStore | None = None
    seen: list[tuple[float, int]] = []  # noqa: RUF012 - one test's record

    def __init__(self, settings: Settings) -> None:
        self.buffered: list[str] = []
        self.stored = 0

    def check_request(self, request: IngestRequest) -> None:
        pass

    def open_batch(self, context: BatchContext) -> BatchWork:
        self.batch_id = context.batch_id
        return self

    def process(self, item: str) -> JobStats:
        assert self.store is not None
        self.seen.append((self.store.get_batch(self.batch_id).progress, self.stored))
        self.buffered.append(item)
        return self._store() if len(self.buffered) == 2 else JobStats()

    def _store(self) -> JobStats:
        done, self.buffered = len(self.buffered), []
        self.stored += done
        return JobStats(processed=done)

    def flush(self) -> JobStats:
        return self._store()


def test_a_batchs_progress_counts_items_once_their_results_are_stored(
    tmp_path: Path,
) -> None:
    """Progress recorded after every item never runs ahead of the stored work: an item
    read but still buffered is not done."""
    settings = Settings(sqlite_path=tmp_path / "fanout.sqlite3", progress_interval=timedelta(0))
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    service = FanoutService(store, queue, settings)
    BufferingProcessor.store, BufferingProcessor.seen = store, []
    items = [f"item-{n}" for n in range(5)]
    job, _ = service.submit(
        IngestRequest(source="buffering-test", collection="c", items=items, batch_size=5)
    )
    service.run_batch(f"{job.job_id}_0000")
    # Before items 2, 3, 4 and 5: 0, 2, 2 and 4 of 5 stored (and recorded).
    assert [progress for progress, _ in BufferingProcessor.seen[1:]] == [0.0, 0.4, 0.4, 0.8]
    assert all(progress <= stored / 5 for progress, stored in BufferingProcessor.seen)
    assert store.get_batch(f"{job.job_id}_0000").stats.processed == 5
    store.close()
    queue.close()


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FanoutService]:
    settings = Settings(
        sqlite_path=tmp_path / "fanout.sqlite3", dispatch=DispatchSettings(max_attempts=3)
    )
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    yield FanoutService(store, queue, settings)
    store.close()
    queue.close()


def test_transient_error_releases_the_lease_then_fails_once_attempts_run_out(
    service: FanoutService,
) -> None:
    """A transient error is raised to the edge (503, so the queue retries) after releasing
    the lease, so the retry claims at once; on the last attempt the batch is recorded
    failed and the job finalizes failed."""
    job, _ = service.submit(
        IngestRequest(source="flaky-test", collection="c", items=["a"], batch_size=1)
    )
    batch_id = f"{job.job_id}_0000"
    for attempt in (1, 2):
        with pytest.raises(TransientError) as raised:
            service.run_batch(batch_id)
        assert raised.value.http_status == 503
        batch = service.store.get_batch(batch_id)
        assert batch.attempts == attempt and batch.status is JobStatus.RUNNING
    last = service.run_batch(batch_id)
    assert last.ran and last.outcome is not None
    assert last.outcome.status is JobStatus.FAILED and last.finalized
    batch = service.store.get_batch(batch_id)
    assert batch.attempts == 3 and batch.error == (
        "gave up after 3 attempts: dependency down while processing a"
    )
    assert service.store.get_job(job.job_id).status is JobStatus.FAILED


def test_a_delivery_while_another_attempt_holds_the_lease_is_busy(
    service: FanoutService,
) -> None:
    """A second delivery during a live lease raises Busy (409): the queue retries later
    instead of dropping the task."""
    job, _ = service.submit(
        IngestRequest(source="noop", collection="c", items=["a", "b"], batch_size=2)
    )
    claim = service.store.claim_batch(f"{job.job_id}_0000", lease=service.settings.lease)
    with pytest.raises(Busy) as raised:
        service.run_batch(f"{job.job_id}_0000")
    assert raised.value.http_status == 409
    service.store.finish_batch(claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED))
    again = service.run_batch(f"{job.job_id}_0000")
    assert not again.ran and again.reason == "batch is completed"


def test_submit_enqueues_one_task_per_batch_named_by_state(service: FanoutService) -> None:
    """Submitting plans the batches and enqueues one named task per batch; submitting the
    same client_id/request_id again returns the job and enqueues nothing more."""
    request = IngestRequest(
        source="noop",
        collection="c",
        items=[str(i) for i in range(5)],
        batch_size=2,
        client_id="acme",
        request_id="r1",
    )
    job, created = service.submit(request)
    again, created_again = service.submit(request)
    assert created and not created_again and again.job_id == job.job_id
    queue = service.queue
    assert isinstance(queue, LocalTaskQueue)
    for index in range(3):
        assert queue.get(f"{job.job_id}_{index:04d}-g0-a0") is not None
    assert sum(queue.counts().values()) == 3
    assert all(service.store.get_batch(f"{job.job_id}_{i:04d}").enqueued_at for i in range(3))


def test_sweep_fails_jobs_whose_planning_never_finished(tmp_path: Path) -> None:
    """The sweeper fails a job left pending past the planning timeout (rule 4), and leaves
    a job that is still being planned alone."""
    settings = Settings(
        sqlite_path=tmp_path / "fanout.sqlite3", planning_timeout=timedelta(minutes=15)
    )
    store = SqliteJobStore(settings.sqlite_path)
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    old, _ = store.create_job(
        Job.new(source="noop", collection="c", now=utcnow() - timedelta(hours=1))
    )
    fresh, _ = store.create_job(Job.new(source="noop", collection="c"))
    report = FanoutService(store, queue, settings).sweep()
    assert report.abandoned == 1
    assert store.get_job(old.job_id).status is JobStatus.FAILED
    assert "planning did not finish" in (store.get_job(old.job_id).error or "")
    assert store.get_job(fresh.job_id).status is JobStatus.PENDING
    store.close()
    queue.close()
