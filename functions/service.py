"""The use cases: submit, run a batch, cancel, retry, sweep, clean up.

The store, the queue and the callback sender are passed in; nothing here knows HTTP or
reads the environment. Errors are typed (functions/errors.py) and become status codes at
the edge.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from functions.callbacks import CallbackSender
from functions.config import Settings
from functions.errors import (
    Busy,
    InvalidArgument,
    InvalidTransition,
    ItemFailed,
    ItemSkipped,
    TransientError,
)
from functions.ingest_request import IngestRequest
from functions.ingestion.sources import open_source
from functions.jobs import Batch, BatchOutcome, Job, JobStats, JobStatus, plan_batches, utcnow
from functions.processors import BatchContext, Processor, get_processor
from functions.queue.protocol import Task, TaskQueue
from functions.store.protocol import FinishResult, JobQuery, JobStore
from functions.urls import check_callback_url

log = logging.getLogger("fanout.service")

WORKER_SECRET_HEADER = "X-Fanout-Worker-Secret"
# How many failing items a batch records by name (the error details stay small).
MAX_FAILED_ITEMS_SHOWN = 20


@dataclass(frozen=True, slots=True)
class BatchRun:
    """What one delivery of a batch did. `ran` is False for a delivery that did nothing (a
    duplicate, a finished batch, a cancelled job); `reason` then says why."""

    ran: bool
    reason: str | None = None
    outcome: BatchOutcome | None = None
    finalized: bool = False


@dataclass(frozen=True, slots=True)
class SweepReport:
    requeued: int = 0
    failed: int = 0
    enqueued: int = 0
    finalized: int = 0
    abandoned: int = 0
    deleted: int = 0


class FanoutService:
    def __init__(
        self,
        store: JobStore,
        queue: TaskQueue,
        settings: Settings,
        *,
        callbacks: CallbackSender | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.queue = queue
        self.settings = settings
        self.callbacks = callbacks or CallbackSender(allow_local_http=settings.local)
        self.clock = clock

    # -- submit ---------------------------------------------------------------------------

    def submit(self, request: IngestRequest) -> tuple[Job, bool]:
        """Create the job, plan its batches and enqueue one task per batch. Returns the job
        and whether it is new (False: the same client_id/request_id was seen before).
        Everything is validated before the first write."""
        processor = get_processor(request.source, self.settings)
        processor.check_request(request)
        if request.callback_url is not None:
            check_callback_url(request.callback_url, allow_local_http=self.settings.local)
        processor.prepare(request)
        sizes: list[int] | None = None
        if request.items is not None:
            items = request.items
        else:
            assert request.location is not None  # the model requires one of the two
            listed = list(open_source(request.location, self.settings).list_items())
            items = [item.uri for item in listed]
            sizes = [item.size for item in listed]
        # The request is kept without its items (they live in the batches), so that the
        # parent document stays far below Firestore's 1 MiB.
        asked = request.model_dump(exclude={"items"}) | {"item_count": len(items)}
        job, created = self.store.create_job(
            Job.new(
                source=request.source,
                collection=request.collection,
                request=asked,
                client_id=request.client_id,
                request_id=request.request_id,
                callback_url=request.callback_url,
                now=self.clock(),
            )
        )
        if not created:
            return job, False
        batches = plan_batches(
            job.job_id,
            items,
            request.batch_size,
            now=self.clock(),
            sizes=sizes,
            max_bytes=request.max_batch_bytes or self.settings.ingestion.max_batch_bytes,
        )
        job = self.store.add_batches(job.job_id, batches, now=self.clock())
        self._enqueue(job, batches)
        if job.is_terminal:  # nothing to do: the job completed as it was planned
            self._job_finished(job)
        return job, True

    def task_for(self, job: Job, batch: Batch) -> Task:
        """The task that delivers `batch`. Its name changes with each retry round and each
        re-enqueue after a lost attempt (Cloud Tasks keeps a used name for about an hour),
        and stays the same otherwise, so repeated enqueues deduplicate."""
        headers = {"Content-Type": "application/json"}
        if self.settings.worker_secret:
            headers[WORKER_SECRET_HEADER] = self.settings.worker_secret
        return Task(
            name=f"{batch.batch_id}-g{job.retries}-a{batch.attempts}",
            url=self.settings.worker_url,
            body=json.dumps({"batch_id": batch.batch_id}).encode(),
            headers=headers,
        )

    def _enqueue(self, job: Job, batches: Sequence[Batch]) -> int:
        """Enqueue `batches`; record the accepted ones. Refused ones stay unenqueued, for
        the sweeper to enqueue later. Returns how many were accepted."""
        if not batches:
            return 0
        tasks = {
            task.name: (task, batch) for batch in batches for task in [self.task_for(job, batch)]
        }
        result = self.queue.enqueue([task for task, _ in tasks.values()])
        accepted = [tasks[name][1].index for name in result.enqueued]
        if accepted:
            self.store.mark_enqueued(job.job_id, accepted, now=self.clock())
        if result.failed:
            first = next(iter(result.failed.items()))
            log.warning(
                "job %s: %d of %d tasks not enqueued (first: %s: %s); the sweeper will retry",
                job.job_id,
                len(result.failed),
                len(tasks),
                *first,
            )
        return len(accepted)

    # -- run one batch --------------------------------------------------------------------

    def run_batch(self, batch_id: str) -> BatchRun:
        """One delivery of a batch's task. Raises `Busy` while another attempt holds the
        lease, and `TransientError` for a retryable failure (after releasing the lease);
        both make the queue try again."""
        claim = self.store.claim_batch(batch_id, lease=self.settings.lease, now=self.clock())
        if not claim.granted:
            if claim.reason and claim.reason.startswith("leased"):
                raise Busy(f"batch {batch_id} is {claim.reason}")
            return BatchRun(False, claim.reason)
        job, batch = claim.job, claim.batch
        context = BatchContext(
            job.job_id, batch.batch_id, job.collection, dict(job.request.get("options") or {})
        )
        try:
            work = get_processor(job.source, self.settings).open_batch(context)
        except InvalidArgument as error:
            return self._finish(job, batch, BatchOutcome(JobStatus.FAILED, error=error.message))
        stats = JobStats()
        failures: dict[str, str] = {}
        last_write = time.monotonic()
        for done, item in enumerate(batch.items, start=1):
            try:
                stats += work.process(item)
            except ItemSkipped:
                stats += JobStats(skipped=1)
            except ItemFailed as error:
                stats += JobStats(failed=1)
                failures[item] = error.message
            except TransientError as error:
                return self._transient(job, batch, stats, error)
            except Exception as error:  # one bad item fails only that item
                log.exception("batch %s: item %r failed", batch_id, item)
                stats += JobStats(failed=1)
                failures[item] = f"{type(error).__name__}: {error}"
            if time.monotonic() - last_write >= self.settings.progress_interval.total_seconds():
                last_write = time.monotonic()
                if not self.store.record_progress(
                    batch,
                    progress=done / len(batch.items),
                    stats=stats,
                    lease=self.settings.lease,
                    now=self.clock(),
                ):
                    return self._stop(job, batch, stats)
        try:
            stats += work.flush()
        except TransientError as error:
            return self._transient(job, batch, stats, error)
        except Exception as error:  # a failed write: the whole batch is tried again
            log.exception("batch %s: writing its results failed", batch_id)
            return self._transient(
                job, batch, stats, TransientError(f"{type(error).__name__}: {error}")
            )
        if failures:
            shown = dict(list(failures.items())[:MAX_FAILED_ITEMS_SHOWN])
            outcome = BatchOutcome(
                JobStatus.FAILED,
                stats,
                error=f"{len(failures)} of {len(batch.items)} items failed",
                error_details={"failed_items": shown},
            )
        else:
            outcome = BatchOutcome(JobStatus.COMPLETED, stats)
        return self._finish(job, batch, outcome)

    def _transient(
        self, job: Job, batch: Batch, stats: JobStats, error: TransientError
    ) -> BatchRun:
        if batch.attempts >= self.settings.dispatch.max_attempts:
            return self._finish(
                job,
                batch,
                BatchOutcome(
                    JobStatus.FAILED,
                    stats,
                    error=f"gave up after {batch.attempts} attempts: {error.message}",
                ),
            )
        self.store.release_lease(batch, now=self.clock())
        raise error

    def _stop(self, job: Job, batch: Batch, stats: JobStats) -> BatchRun:
        """Progress was refused: the job was cancelled, or this attempt lost its lease."""
        if self.store.get_job(job.job_id).status is JobStatus.CANCELLED:
            return self._finish(job, batch, BatchOutcome(JobStatus.CANCELLED, stats))
        return BatchRun(False, "lease lost to another attempt")

    def _finish(self, job: Job, batch: Batch, outcome: BatchOutcome) -> BatchRun:
        result = self.store.finish_batch(job, batch, outcome, now=self.clock())
        self._after_finish(result)
        return BatchRun(
            True, None if result.counted else "already finished", outcome, result.finalized
        )

    def _after_finish(self, result: FinishResult) -> None:
        if result.finalized:
            log.info("job %s finalized: %s", result.job.job_id, result.job.status.value)
            self._job_finished(result.job)

    def _job_finished(self, job: Job) -> None:
        """The once-per-job work of whoever finalized `job`: the processor's tidying up
        (it must not undo the finalization, so its failure is logged), then the callback."""
        try:
            self._processor(job).job_finished(job)
        except Exception:
            log.exception("job %s: the processor's end-of-job step failed", job.job_id)
        self._send_callback(job)

    def _processor(self, job: Job) -> Processor:
        return get_processor(job.source, self.settings)

    def _send_callback(self, job: Job) -> None:
        if job.callback_url:
            self.store.set_callback_status(job.job_id, self.callbacks.send(job))

    # -- operator actions -----------------------------------------------------------------

    def cancel(self, job_id: str) -> Job:
        return self.store.cancel_job(job_id, now=self.clock())

    def retry(self, job_id: str) -> Job:
        """Re-run a failed job's failed batches: re-open them and enqueue them again."""
        reopened = self.store.retry_failed(job_id, now=self.clock())
        job = self.store.get_job(job_id)
        self._enqueue(job, reopened)
        return job

    # -- the scheduled sweep --------------------------------------------------------------

    def sweep(self) -> SweepReport:
        """Rule 4: nothing stays stuck. Re-enqueue batches whose lease expired (or fail
        them once attempts are exhausted), enqueue batches that never were, finalize
        running jobs whose batches are all terminal, and fail jobs never planned."""
        now = self.clock()
        requeued = failed = 0
        for job, batch in self.store.find_expired_leases(now):
            if batch.attempts >= self.settings.dispatch.max_attempts:
                outcome = BatchOutcome(
                    JobStatus.FAILED,
                    batch.stats,
                    error=(f"lease expired on attempt {batch.attempts}; attempts exhausted"),
                )
                self._after_finish(self.store.finish_batch(job, batch, outcome, now=now))
                failed += 1
            else:
                requeued += self._enqueue(job, [batch])
        enqueued = 0
        for job, batch in self.store.find_unenqueued(now - self.settings.enqueue_grace):
            enqueued += self._enqueue(job, [batch])
        return SweepReport(
            requeued=requeued,
            failed=failed,
            enqueued=enqueued,
            finalized=self._finalize_complete_jobs(now),
            abandoned=self._fail_unplanned_jobs(now),
        )

    def _jobs_with_status(self, status: str) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.store.list_jobs(JobQuery.build(statuses=[status], limit=200, cursor=cursor))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _fail_unplanned_jobs(self, now: datetime) -> int:
        """Fail jobs whose planning never finished: the instance that submitted them died
        between recording the job and starting it (rule 4, for jobs that never ran)."""
        cutoff = now - self.settings.planning_timeout
        failed = 0
        for job in self._jobs_with_status("pending"):
            if job.created_at >= cutoff:
                continue
            try:
                self.store.fail_unplanned(
                    job.job_id,
                    now=now,
                    error=(
                        "planning did not finish (the submitting instance stopped); "
                        "submit it again with a new request_id"
                    ),
                )
                failed += 1
            except InvalidTransition:
                pass  # its planner started it meanwhile: exactly one of the two wins
        return failed

    def _finalize_complete_jobs(self, now: datetime) -> int:
        finalized = 0
        for job in self._jobs_with_status("running"):
            if job.total_batches and job.done_batches >= job.total_batches:
                result = self.store.finalize_if_complete(job.job_id, now=now)
                self._after_finish(result)
                finalized += result.finalized
        return finalized

    def cleanup(self) -> SweepReport:
        """The scheduled function: sweep, then delete jobs finished before the retention
        period."""
        report = self.sweep()
        deleted = self.store.delete_finished_before(self.clock() - self.settings.retention)
        return dataclasses.replace(report, deleted=deleted)
