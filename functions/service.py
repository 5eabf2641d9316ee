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
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from functions.callbacks import CallbackSender
from functions.config import Settings, retry_window
from functions.errors import (
    Busy,
    InvalidArgument,
    InvalidTransition,
    ItemFailed,
    ItemSkipped,
    NotDue,
    TransientError,
)
from functions.ingest_request import IngestRequest
from functions.ingestion.sources.listing import ListingError, ListingPage, read_listing_page
from functions.ingestion.sources.manifest import (
    ManifestError,
    ManifestPage,
    check_manifest,
    read_page,
)
from functions.jobs import (
    Batch,
    BatchOutcome,
    Job,
    JobStats,
    JobStatus,
    batch_id_for,
    parse_batch_id,
    plan_batches,
    utcnow,
)
from functions.observability.context import bound
from functions.observability.events import Event, emit
from functions.observability.links import logs_url
from functions.observability.runner import worker_location
from functions.observability.trace import TRACEPARENT, new_trace_id, traceparent
from functions.paging import encode_cursor
from functions.planner import (
    PAGE_BATCHES_KEY,
    PLAN_PRIORITY,
    SUBMIT_LISTING_ITEMS,
    PlanRun,
    page_batches,
    plan_task_body,
    plan_task_name,
)
from functions.processors import BatchContext, Processor, get_processor
from functions.queue.protocol import Task, TaskQueue
from functions.schedule import check_not_before
from functions.store.protocol import FinishResult, JobQuery, JobStore, PlanPage
from functions.urls import check_callback_url, redacted_url

log = logging.getLogger("fanout.service")

WORKER_SECRET_HEADER = "X-Fanout-Worker-Secret"
# How many failing items a batch records by name (the error details stay small).
MAX_FAILED_ITEMS_SHOWN = 20
# A failed batch keeps the end of its first unexpected error's traceback, this many chars.
MAX_TRACEBACK_CHARS = 4000
# A sweep redelivers at most this many callbacks, and starts none after this many seconds
# (against a receiver that does not answer, one takes the sender's timeouts and retries,
# about 35 s); the rest wait for the next sweep, oldest first.
CALLBACKS_PER_SWEEP = 100
CALLBACK_SWEEP_SECONDS = 120.0
# One sweep handles up to this many batches whose task was dropped, a page at a time (an
# outage drops every task of a job at once; the rest wait for the next sweep).
DROPPED_PAGE = 500
DROPPED_PER_SWEEP = 5_000
# A sweep asks the queue about the batches pending since before the enqueue grace, oldest
# first (one GetTask each in the cloud), and stops after this many answers in a row that a
# task is still queued: tasks run out of attempts oldest first, since they were dispatched
# first, so a healthy queue costs a sweep a few calls, and a worker outage that dropped
# thousands of tasks is found whole by one sweep.
STILL_QUEUED_IN_A_ROW = 20


def _page_batches(job: Job) -> int:
    """How many batches each page of `job` but the last holds: fixed at its submit (jobs
    recorded before it was kept used the default page size)."""
    recorded = job.request.get(PAGE_BATCHES_KEY)
    return int(recorded) if recorded else page_batches(int(job.request.get("batch_size") or 100))


def _traceback_tail(error: BaseException) -> str:
    text = "".join(traceback.format_exception(error))
    return text if len(text) <= MAX_TRACEBACK_CHARS else "..." + text[-MAX_TRACEBACK_CHARS:]


def _job_context(job: Job) -> dict[str, str | None]:
    """What every line about `job` carries: its id, source, priority and trace."""
    return {
        "job_id": job.job_id,
        "source": job.source,
        "priority": job.priority.value,
        "trace_id": job.trace_id,
    }


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
    """What a sweep or cleanup did, or, for a dry run, what it would do now."""

    # Batches whose lease expired (their worker stopped), enqueued again.
    requeued: int = 0
    # Batches failed: attempts used up after an expired lease, or every re-dispatch
    # round of a dropped task dropped too.
    failed: int = 0
    # Batches never enqueued (the queue refused them at submit), enqueued.
    enqueued: int = 0
    # Batches whose task the queue dropped, enqueued again under a new name.
    redispatched: int = 0
    # Batches of cancelled jobs whose task was dropped, ended cancelled.
    cancelled: int = 0
    # Running jobs whose batches had all ended, finalized.
    finalized: int = 0
    # Jobs whose planning never finished, failed.
    abandoned: int = 0
    # Scheduled jobs due for the enqueue grace that no delivery had started (their tasks
    # dropped or never enqueued), started, for the rest of the sweep to recover.
    started: int = 0
    # Planning jobs whose planner task was dropped, their next page enqueued again.
    planned: int = 0
    # Callbacks sent again (after failing, or after their sender stopped).
    callbacks: int = 0
    # Jobs finished before the retention period, deleted with their batches.
    deleted: int = 0
    dry_run: bool = False
    # The ids behind each count (batches for the first five, jobs for the others), the
    # first SUMMARY_IDS of each.
    ids: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in SWEEP_COUNTS}

    def to_dict(self) -> dict[str, Any]:
        """The JSON summary: every count, `dry_run`, and `ids` with every count's key."""
        ids = {name: list(self.ids.get(name, ())) for name in SWEEP_COUNTS}
        return {**self.counts(), "dry_run": self.dry_run, "ids": ids}

    def describe(self) -> str:
        """One line for people: "2 requeued, 1 deleted", "would do: ..." for a dry run."""
        done = ", ".join(f"{n} {name}" for name, n in self.counts().items() if n)
        if self.dry_run:
            return f"dry run, would do: {done or 'nothing'}; nothing was changed"
        return done or "nothing to do"


SWEEP_COUNTS = tuple(
    f.name for f in dataclasses.fields(SweepReport) if f.name not in ("dry_run", "ids")
)
# How many ids of each count a summary names.
SUMMARY_IDS = 5


class _Tally:
    """The counts and first ids of one sweep or cleanup, as it goes."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(SWEEP_COUNTS, 0)
        self.ids: dict[str, list[str]] = {name: [] for name in SWEEP_COUNTS}

    def add(self, name: str, ident: str) -> None:
        self.counts[name] += 1
        if len(self.ids[name]) < SUMMARY_IDS:
            self.ids[name].append(ident)

    def report(self, *, dry_run: bool) -> SweepReport:
        ids = {name: tuple(found) for name, found in self.ids.items()}
        return SweepReport(**self.counts, dry_run=dry_run, ids=ids)


@dataclass(frozen=True, slots=True)
class TaskCheck:
    """What the queue says of a pending batch's task, for the API, the pages and the CLI:
    `queued`, `dropped` (the sweeper re-dispatches the batch at its first run after
    `redispatch_after`), or `unknown` (a queue that cannot tell: if the task was dropped,
    the sweeper re-dispatches the batch at its first run after `redispatch_after`, the end
    of the queue's retry window)."""

    task: str
    redispatch_after: datetime | None


class _DroppedTasks:
    """One sweep's view of the batches whose task the queue dropped (see
    `FanoutService._sweep_dropped`): the queue's own word where it can give it, the retry
    window where it cannot."""

    def __init__(self, service: FanoutService, now: datetime) -> None:
        settings = service.settings
        self.service = service
        self.asked_after = now - settings.enqueue_grace
        self.window_cutoff = now - retry_window(settings.dispatch) - settings.enqueue_grace
        self.queued_in_a_row = 0

    def page(self, *, limit: int) -> tuple[list[tuple[Job, Batch]], int]:
        """The dropped batches among the oldest `limit` candidates, and how many
        candidates there were."""
        candidates = self.service.store.find_dropped(self.asked_after, limit=limit)
        return [(j, b) for j, b in candidates if self._dropped(j, b)], len(candidates)

    def find(self, *, limit: int) -> list[tuple[Job, Batch]]:
        return self.page(limit=limit)[0]

    def _dropped(self, job: Job, batch: Batch) -> bool:
        if batch.enqueued_at is not None and batch.enqueued_at < self.window_cutoff:
            return True
        if self.queued_in_a_row >= STILL_QUEUED_IN_A_ROW:
            return False
        gone = self.service.queue.task_gone(self.service.task_for(job, batch).name, job.priority)
        self.queued_in_a_row = 0 if gone else self.queued_in_a_row + 1
        return gone is True


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
        self.callbacks = callbacks or CallbackSender(
            allow_local_http=settings.local, secret=settings.callback_secret
        )
        self.clock = clock

    # -- submit ---------------------------------------------------------------------------

    def submit(self, request: IngestRequest, *, trace_id: str | None = None) -> tuple[Job, bool]:
        """Create the job, plan its batches and enqueue one task per batch. Returns the job
        and whether it is new (False: the same client_id/request_id was seen before).
        Everything is validated before the first write. The job keeps `trace_id` (the
        caller's trace) or a new one, and every task and log line of it carries that."""
        with bound(
            trace_id=trace_id or new_trace_id(),
            source=request.source,
            priority=request.priority.value,
        ) as context:
            return self._submit(request, context.trace_id)

    def _submit(self, request: IngestRequest, trace_id: str | None) -> tuple[Job, bool]:
        # Every check, then the reads (listing the location), and only then the writes: a
        # refused request leaves nothing behind, not even an empty collection.
        processor = get_processor(request.source, self.settings)
        processor.check_request(request)
        if request.callback_url is not None:
            check_callback_url(request.callback_url, allow_local_http=self.settings.local)
        if request.not_before is not None:
            check_not_before(request.not_before, self.clock())
        per_page = page_batches(request.batch_size, self.settings.plan_page_items)
        if request.items_from is not None:
            check_manifest(request.items_from, self.settings)
            processor.prepare(request)
            return self._submit_planned(request, trace_id, per_page)
        sizes: list[int] | None = None
        if request.items is not None:
            items = request.items
        else:
            assert request.location is not None  # the model requires one of the two
            # A short read only: a listing that goes on past it is planned by pages.
            submit_items = min(SUBMIT_LISTING_ITEMS, self.settings.plan_page_items)
            first = read_listing_page(
                request.location,
                None,
                self.settings,
                batch_size=request.batch_size,
                max_bytes=self._max_batch_bytes(request.max_batch_bytes),
                batches=page_batches(request.batch_size, submit_items),
            )
            if not first.last:
                processor.prepare(request)
                return self._submit_planned(request, trace_id, per_page, listed=first.listed)
            items, sizes = first.uris, first.sizes
        processor.prepare(request)
        # The request is kept without its items (they live in the batches), so that the
        # parent document stays far below Firestore's 1 MiB.
        asked = request.model_dump(exclude={"items"}, mode="json") | {"item_count": len(items)}
        job, created = self.store.create_job(self._new_job(request, asked, trace_id))
        with bound(**_job_context(job)):
            emit(
                Event.SUBMITTED,
                f"job {job.job_id} submitted: {len(items)} items into {job.collection!r}"
                if created
                else f"job {job.job_id} submitted again (same client_id/request_id): unchanged",
                created=created,
                collection=job.collection,
                item_count=len(items),
                batch_size=request.batch_size,
                location=request.location,
            )
            if not created:
                return job, False
            return self._plan(job, request, items, sizes), True

    def _submit_planned(
        self, request: IngestRequest, trace_id: str | None, per_page: int, *, listed: int = 0
    ) -> tuple[Job, bool]:
        """Record a job planned by pages (functions/planner.py) and enqueue its first page:
        the same few writes whatever the size of its manifest or listing. `listed`: the
        names the request read (a location's first page)."""
        asked = request.model_dump(exclude={"items"}, mode="json") | {PAGE_BATCHES_KEY: per_page}
        job, created = self.store.create_job(self._new_job(request, asked, trace_id, planning=True))
        origin = request.items_from or request.location
        waits = job.not_before if job.status is JobStatus.SCHEDULED else None
        scheduled = f"; scheduled: no batch starts before {waits.isoformat()}" if waits else ""
        with bound(**_job_context(job)):
            emit(
                Event.SUBMITTED,
                f"job {job.job_id} submitted: items from {origin} into {job.collection!r},"
                f" planned page by page{scheduled}"
                if created
                else f"job {job.job_id} submitted again (same client_id/request_id): unchanged",
                created=created,
                collection=job.collection,
                items_from=request.items_from,
                location=request.location,
                listed=listed,
                batch_size=request.batch_size,
                not_before=job.not_before.isoformat() if job.not_before else None,
            )
            if created:
                self._enqueue_plan(job, 0)
        return job, created

    def _new_job(
        self,
        request: IngestRequest,
        asked: dict[str, Any],
        trace_id: str | None,
        *,
        planning: bool = False,
    ) -> Job:
        """The job `request` asks for, keeping `asked` (the request as stored) on it."""
        return Job.new(
            source=request.source,
            collection=request.collection,
            request=asked,
            client_id=request.client_id,
            request_id=request.request_id,
            callback_url=request.callback_url,
            trace_id=trace_id,
            priority=request.priority,
            not_before=request.not_before,
            now=self.clock(),
            planning=planning,
        )

    def _max_batch_bytes(self, asked: int | None) -> int:
        return asked or self.settings.ingestion.max_batch_bytes

    def plan_task_for(self, job: Job, page: int, rounds: int = 0) -> Task:
        """The task that plans page `page` of `job`: same name, same task (deduplicated)."""
        return replace(
            self.task_for(
                job, Batch(batch_id_for(job.job_id, 0), job.job_id, 0, (), job.created_at)
            ),
            name=plan_task_name(job.job_id, page, rounds),
            body=plan_task_body(job.job_id, page, self.settings.worker_url),
            schedule_time=None,  # planning runs at once; only the batches wait to start
            priority=PLAN_PRIORITY,
        )

    def _enqueue_plan(self, job: Job, page: int, rounds: int = 0) -> bool:
        """Enqueue the planner task of `page`. A refusal is logged; the sweeper enqueues it
        again (`_sweep_planning`)."""
        result = self.queue.enqueue([self.plan_task_for(job, page, rounds)])
        if result.failed:
            emit(
                Event.ENQUEUED,
                f"the planner task of page {page} was refused"
                f" ({next(iter(result.failed.values()))}); the sweeper enqueues it later",
                level=logging.WARNING,
                count=0,
                refused=1,
                page=page,
            )
        return not result.failed

    def plan_page(self, job_id: str, page: int, *, worker_url: str | None = None) -> PlanRun:
        """One delivery of a planner task: plan page `page` of the job (functions/planner.py),
        enqueuing its tasks to `worker_url` (the task's own; None: this service's setting).
        Raises `TransientError` when the manifest could not be read for now (the queue
        retries); a manifest that cannot be read at all fails the job, naming it."""
        if worker_url is not None and worker_url != self.settings.worker_url:
            settings = replace(self.settings, worker_url=worker_url)
            planner = FanoutService(
                self.store, self.queue, settings, callbacks=self.callbacks, clock=self.clock
            )
            return planner.plan_page(job_id, page)
        with bound(job_id=job_id):
            job = self.store.get_job(job_id)
            with bound(**_job_context(job)):
                if job.is_terminal or not job.planning or job.plan_pages != page:
                    return self._page_again(job, page)
                return self._plan_page(job, page)

    def _plan_page(self, job: Job, page: int) -> PlanRun:
        batch_size = int(job.request.get("batch_size") or 100)
        max_bytes = self._max_batch_bytes(job.request.get("max_batch_bytes"))
        try:
            read = self._read_plan_page(job, batch_size, max_bytes)
        except (ManifestError, ListingError) as error:
            failed = self.store.fail_planning(
                job.job_id, page, error=error.message, now=self.clock()
            )
            if failed is not None:
                emit(
                    Event.JOB_FINALIZED,
                    f"job failed: {error.message}",
                    level=logging.ERROR,
                    error=error.message,
                )
                self._job_finished(failed)
            return PlanRun(job.job_id, page, False, reason=error.message)
        batches = plan_batches(
            job.job_id,
            read.uris,
            batch_size,
            now=self.clock(),
            sizes=read.sizes,  # a listing's: cut by bytes too, as the page was
            max_bytes=max_bytes,
            first_index=job.total_batches,
        )
        planned = self.store.add_plan_page(
            job.job_id,
            PlanPage(page, batches, len(read.uris), read.cursor, read.last),
            now=self.clock(),
        )
        if not planned.written:  # a concurrent delivery wrote it first
            return PlanRun(job.job_id, page, False, reason=planned.reason)
        emit(
            Event.PLANNED,
            f"planned page {page}: {len(batches)} batches, {planned.job.planned_items} items"
            f" in {planned.job.total_batches} batches so far"
            + ("; planning done" if read.last else ""),
            page=page,
            total_batches=planned.job.total_batches,
            planned_items=planned.job.planned_items,
            last=read.last,
        )
        # The next page first: queued ahead of this page's batches, planning runs ahead of
        # the work instead of waiting behind it.
        if not read.last:
            self._enqueue_plan(planned.job, page + 1)
        self._enqueue(planned.job, batches)
        self._after_finish(FinishResult(True, planned.finalized, planned.job))
        return PlanRun(job.job_id, page, True, len(batches), read.last, planned.finalized)

    def _read_plan_page(
        self, job: Job, batch_size: int, max_bytes: int
    ) -> ManifestPage | ListingPage:
        """The job's next page: of its manifest, or of its location's listing."""
        per_page = _page_batches(job)
        manifest = job.request.get("items_from")
        if manifest is not None:
            return read_page(str(manifest), job.plan_cursor, per_page * batch_size, self.settings)
        return read_listing_page(
            str(job.request["location"]),
            job.plan_cursor,
            self.settings,
            batch_size=batch_size,
            max_bytes=max_bytes,
            batches=per_page,
        )

    def _page_again(self, job: Job, page: int) -> PlanRun:
        """A delivery of a page already written (or of an ended job): make sure what its
        first delivery enqueued is enqueued (it may have stopped between its write and its
        enqueues), then nothing more."""
        if job.is_terminal:
            return PlanRun(job.job_id, page, False, reason=f"job is {job.status.value}")
        if page >= job.plan_pages:
            return PlanRun(job.job_id, page, False, reason=f"page {page} is not next")
        per_page = _page_batches(job)
        first, end = page * per_page, min((page + 1) * per_page, job.total_batches)
        unenqueued: list[Batch] = []
        cursor = encode_cursor("batches", first - 1) if first else None
        while True:
            listed = self.store.list_batches(
                job.job_id, status=JobStatus.PENDING, limit=200, cursor=cursor
            )
            inside = [b for b in listed.items if b.index < end]
            unenqueued += [b for b in inside if b.enqueued_at is None]
            if len(inside) < len(listed.items) or listed.next_cursor is None:
                break
            cursor = listed.next_cursor
        self._enqueue(job, unenqueued)
        if page + 1 == job.plan_pages and job.planning:
            self._enqueue_plan(job, page + 1)
        return PlanRun(job.job_id, page, False, reason=f"page {page} is already planned")

    def _plan(
        self, job: Job, request: IngestRequest, items: Sequence[str], sizes: list[int] | None
    ) -> Job:
        batches = plan_batches(
            job.job_id,
            items,
            request.batch_size,
            now=self.clock(),
            sizes=sizes,
            max_bytes=self._max_batch_bytes(request.max_batch_bytes),
        )
        job = self.store.add_batches(job.job_id, batches, now=self.clock())
        waits_for = job.not_before if job.status is JobStatus.SCHEDULED else None
        emit(
            Event.PLANNED,
            f"planned {len(batches)} batches"
            + (f"; scheduled: no batch starts before {waits_for.isoformat()}" if waits_for else ""),
            total_batches=len(batches),
            not_before=job.not_before.isoformat() if job.not_before else None,
        )
        self._enqueue(job, batches)
        if job.is_terminal:  # nothing to do: the job completed as it was planned
            self._job_finished(job)
        return job

    def task_for(self, job: Job, batch: Batch) -> Task:
        """The task that delivers `batch`. Its name changes with each retry round, each
        re-enqueue after a lost attempt and each re-dispatch of a dropped task (Cloud Tasks
        keeps a used name for about an hour), and stays the same otherwise, so repeated
        enqueues deduplicate."""
        headers = {"Content-Type": "application/json"}
        if self.settings.worker_secret:
            headers[WORKER_SECRET_HEADER] = self.settings.worker_secret
        if job.trace_id:  # a fresh span of the job's trace: its lines group under it
            headers[TRACEPARENT] = traceparent(job.trace_id)
        return Task(
            name=f"{batch.batch_id}-g{job.retries}-a{batch.attempts}"
            + (f"-r{batch.dispatch_rounds}" if batch.dispatch_rounds else ""),
            url=self.settings.worker_url,
            body=json.dumps({"batch_id": batch.batch_id}).encode(),
            headers=headers,
            priority=job.priority,
            schedule_time=self._due_time(job),
        )

    def _due_time(self, job: Job) -> datetime | None:
        """When a task of `job` enqueued now falls due: its `not_before` while that is
        ahead (the queue holds the task until then), else None (at once)."""
        return job.not_before if job.waits_at(self.clock()) else None

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
            # A scheduled task counts as enqueued from when it falls due: the dropped-task
            # sweep measures the queue's retry window from there, not from the submit.
            self.store.mark_enqueued(job.job_id, accepted, now=self._due_time(job) or self.clock())
        failed = len(result.failed)
        emit(
            Event.ENQUEUED,
            f"enqueued {len(accepted)} of {len(tasks)} tasks"
            + (
                f"; {failed} refused (first: {next(iter(result.failed.items()))}),"
                " the sweeper enqueues them later"
                if failed
                else ""
            ),
            level=logging.WARNING if failed else logging.INFO,
            count=len(accepted),
            refused=failed,
            first_refusal=next(iter(result.failed.values()), None),
        )
        return len(accepted)

    # -- run one batch --------------------------------------------------------------------

    def run_batch(self, batch_id: str) -> BatchRun:
        """One delivery of a batch's task. Raises `Busy` while another attempt holds the
        lease, and `TransientError` for a retryable failure (after releasing the lease);
        both make the queue try again."""
        job_id, _ = parse_batch_id(batch_id)
        with bound(job_id=job_id, batch_id=batch_id):
            claim = self.store.claim_batch(
                batch_id,
                lease=self.settings.lease,
                ran_on=worker_location(self.settings.runtime),
                now=self.clock(),
            )
            with bound(**_job_context(claim.job), attempt=claim.batch.attempts):
                if not claim.granted:
                    emit(
                        Event.BATCH_REFUSED,
                        f"delivery refused: {claim.reason}",
                        reason=claim.reason,
                    )
                    if claim.reason and claim.reason.startswith("leased"):
                        raise Busy(f"batch {batch_id} is {claim.reason}")
                    if claim.reason and claim.reason.startswith("scheduled"):
                        raise NotDue(f"batch {batch_id} arrived early: {claim.reason}")
                    return BatchRun(False, claim.reason)
                return self._run_claimed(claim.job, claim.batch)

    def _run_claimed(self, job: Job, batch: Batch) -> BatchRun:
        context = BatchContext(
            job.job_id,
            batch.batch_id,
            job.collection,
            dict(job.request.get("options") or {}),
            items=batch.items,
        )
        try:
            work = get_processor(job.source, self.settings).open_batch(context)
        except InvalidArgument as error:
            return self._finish(job, batch, BatchOutcome(JobStatus.FAILED, error=error.message))
        stats = JobStats()
        failures: dict[str, str] = {}
        first_unexpected: Exception | None = None
        announced = False
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
                log.exception("item %r failed", item)
                stats += JobStats(failed=1)
                failures[item] = f"{type(error).__name__}: {error}"
                first_unexpected = first_unexpected or error
            if time.monotonic() - last_write >= self.settings.progress_interval.total_seconds():
                last_write = time.monotonic()
                if not announced:
                    # Announced once it has run a progress interval: a batch that ends
                    # sooner says it all in one line, its outcome (which names the attempt
                    # and where it ran). Two lines per batch cost noop runs 12% of their
                    # throughput, one line 6% (bench.e2e).
                    announced = True
                    emit(
                        Event.BATCH_CLAIMED,
                        f"attempt {batch.attempts} running on {batch.ran_on}:"
                        f" {done} of {len(batch.items)} items read, {stats.ended} done",
                        ran_on=batch.ran_on,
                        items=len(batch.items),
                        read=done,
                        done=stats.ended,
                    )
                if not self.store.record_progress(
                    batch,
                    # Items whose results are stored, not merely read: buffered work
                    # counts once it is written.
                    progress=min(1.0, stats.ended / len(batch.items)),
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
            log.exception("writing the batch's results failed")
            transient = TransientError(f"{type(error).__name__}: {error}")
            transient.__cause__ = error
            return self._transient(job, batch, stats, transient)
        if failures:
            details: dict[str, object] = {
                "failed_items": dict(list(failures.items())[:MAX_FAILED_ITEMS_SHOWN])
            }
            if first_unexpected is not None:
                details["traceback"] = _traceback_tail(first_unexpected)
            outcome = BatchOutcome(
                JobStatus.FAILED,
                stats,
                error=f"{len(failures)} of {len(batch.items)} items failed",
                error_details=details,
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
                    error_details={"traceback": _traceback_tail(error.__cause__ or error)},
                ),
            )
        self.store.release_lease(batch, now=self.clock())
        emit(
            Event.BATCH_RETRIED,
            f"attempt {batch.attempts} on {batch.ran_on} failed and will be retried:"
            f" {error.message}",
            level=logging.WARNING,
            error=error.message,
            ran_on=batch.ran_on,
            attempts_left=self.settings.dispatch.max_attempts - batch.attempts,
        )
        raise error

    def _stop(self, job: Job, batch: Batch, stats: JobStats) -> BatchRun:
        """Progress was refused: the job was cancelled, or this attempt lost its lease."""
        if self.store.get_job(job.job_id).status is JobStatus.CANCELLED:
            return self._finish(job, batch, BatchOutcome(JobStatus.CANCELLED, stats))
        emit(Event.BATCH_REFUSED, "stopped: the lease was lost to another attempt")
        return BatchRun(False, "lease lost to another attempt")

    def _finish(self, job: Job, batch: Batch, outcome: BatchOutcome) -> BatchRun:
        if outcome.status is JobStatus.FAILED:
            # The link to exactly this batch's lines, for whoever reads the error.
            ended = replace(batch, finished_at=self.clock())
            link = {"logs_url": logs_url(job, self.settings, ended)}
            outcome = replace(outcome, error_details={**(outcome.error_details or {}), **link})
        result = self.store.finish_batch(job, batch, outcome, now=self.clock())
        self._batch_ended(batch, outcome, counted=result.counted)
        self._after_finish(result)
        return BatchRun(
            True, None if result.counted else "already finished", outcome, result.finalized
        )

    def _batch_ended(self, batch: Batch, outcome: BatchOutcome, *, counted: bool) -> None:
        if not counted:
            emit(Event.BATCH_REFUSED, "already counted by another delivery: not counted again")
            return
        stats = outcome.stats.to_dict()
        where = f"attempt {batch.attempts} on {batch.ran_on}"
        if outcome.status is JobStatus.FAILED:
            details = outcome.error_details or {}
            emit(
                Event.BATCH_FAILED,
                f"batch failed ({where}): {outcome.error}",
                level=logging.ERROR,
                error=outcome.error,
                failed_items=details.get("failed_items"),
                stats=stats,
                ran_on=batch.ran_on,
            )
        elif outcome.status is JobStatus.CANCELLED:
            emit(
                Event.BATCH_COMPLETED,
                f"batch cancelled with its job ({where})",
                status="cancelled",
                ran_on=batch.ran_on,
            )
        else:
            emit(
                Event.BATCH_COMPLETED,
                f"batch completed ({where})",
                status="completed",
                stats=stats,
                ran_on=batch.ran_on,
            )

    def _after_finish(self, result: FinishResult) -> None:
        if result.finalized:
            job = result.job
            # Job-level lines, even when the batch that counted last writes them.
            with bound(**_job_context(job), batch_id=None, attempt=None):
                emit(
                    Event.JOB_FINALIZED,
                    f"job {job.status.value}: {job.completed_batches} of {job.total_batches}"
                    f" batches completed, {job.failed_batches} failed",
                    level=logging.WARNING if job.status is JobStatus.FAILED else logging.INFO,
                    status=job.status.value,
                    completed_batches=job.completed_batches,
                    failed_batches=job.failed_batches,
                    stats=job.stats.to_dict(),
                )
                self._job_finished(job)

    def _job_finished(self, job: Job) -> None:
        """The once-per-job work of whoever finalized `job`: the processor's tidying up
        (it must not undo the finalization, so its failure is logged), then the callback."""
        try:
            self._processor(job).job_finished(job)
        except Exception:
            log.exception("the processor's end-of-job step failed")
        self._send_callback(job)

    def _processor(self, job: Job) -> Processor:
        return get_processor(job.source, self.settings)

    def _send_callback(self, job: Job) -> None:
        """The first delivery of a just-finalized job's callback. Claimed first: a sweep
        that found this finalization stalled for a lease has taken it over."""
        if not job.callback_url:
            return
        claimed = self.store.claim_callback(job, now=self.clock())
        if claimed is not None:
            self._deliver_callback(claimed)

    def _deliver_callback(self, job: Job) -> bool:
        """Send the callback attempt `job` has claimed, record how it went and log it. A
        retryable failure stays owed, for the sweeper, until `callback_max_sweeps` sweeps
        have tried. True if it was delivered."""
        assert job.callback_url is not None
        delivery = self.callbacks.send(job)
        owed = delivery.retryable and job.callback_attempts <= self.settings.callback_max_sweeps
        status = delivery.status
        if delivery.retryable and not owed:
            status += f" (gave up after {job.callback_attempts} attempts)"
        self.store.record_callback(
            job, status=status, error=None if delivery.delivered else status, owed=owed
        )
        where = redacted_url(job.callback_url)
        emit(
            Event.CALLBACK_SENT if delivery.delivered else Event.CALLBACK_FAILED,
            f"callback to {where}: {status}" + ("; the sweeper sends it again" if owed else ""),
            level=logging.INFO if delivery.delivered else logging.WARNING,
            callback=where,
            outcome=status,
            callback_attempt=job.callback_attempts,
        )
        return delivery.delivered

    # -- operator actions -----------------------------------------------------------------

    def batch_summary(self, job: Job) -> dict[str, int]:
        """How many of `job`'s batches (as `get_job` read it) are in each status, keyed by
        status value, in at most two store queries whatever the job's size, and none once
        it has finished (on Firestore each is an aggregation billed one read per 1,000
        entries it matches: the running batches, or at most 64 counter shards). Completed
        and failed are the job's own counters, which each batch enters exactly once, so
        they agree with the job shown with them. Running is a count of the running
        batches, which the queue's dispatch concurrency keeps small. Cancelled batches are
        counted into the counter shards as they end (only cancelling a job ends batches
        cancelled, so they are read for a cancelled job only), and pending is the rest.
        Completed, failed and cancelled are exact; while batches move, running and pending
        may lag by a batch, as the reads are not one snapshot. (JobStore.batch_counts)"""
        return self.store.batch_counts(job).to_dict()

    def cancel(self, job_id: str) -> Job:
        job = self.store.cancel_job(job_id, now=self.clock())
        with bound(**_job_context(job)):
            emit(
                Event.JOB_CANCELLED,
                f"job cancelled: {job.done_batches} of {job.total_batches} batches had ended",
                done_batches=job.done_batches,
                total_batches=job.total_batches,
            )
        return job

    def retry(self, job_id: str) -> Job:
        """Re-run a failed job's failed batches: re-open them and enqueue them again. A job
        whose manifest could not be planned is refused: retried, it would end with part of
        its items."""
        planned = self.store.get_job(job_id)
        if planned.planning and planned.status is JobStatus.FAILED:
            raise InvalidArgument(
                f"job {job_id} failed while planning ({planned.error}); fix its manifest or"
                " location and submit it as a new job"
            )
        reopened = self.store.retry_failed(job_id, now=self.clock())
        job = self.store.get_job(job_id)
        with bound(**_job_context(job)):
            emit(
                Event.JOB_RETRIED,
                f"retry {job.retries}: {len(reopened)} failed batches re-opened",
                retry=job.retries,
                reopened=len(reopened),
            )
            self._enqueue(job, reopened)
        return job

    # -- the scheduled sweep --------------------------------------------------------------

    def sweep(self) -> SweepReport:
        """Rule 4: nothing stays stuck. Re-enqueue batches whose lease expired (or fail
        them once attempts are exhausted), enqueue batches that never were, re-dispatch
        batches whose task the queue dropped (or fail them once their rounds are used up),
        finalize running jobs whose batches are all terminal, fail jobs never planned, and
        send owed callbacks again. Logs the report as one `swept` line."""
        tally = _Tally()
        self._sweep(tally, self.clock(), dry_run=False)
        return self._swept(tally.report(dry_run=False))

    def cleanup(self, *, dry_run: bool = False) -> SweepReport:
        """The scheduled function: sweep, then delete jobs finished before the retention
        period. A dry run only reads: it reports what a run would do now, with the ids of
        the first few batches and jobs of each kind, and changes nothing. A real run
        reports the same of what it did, which is what its dry run said unless something
        moved in between: the queue refused a task, another sweep or a late delivery took
        a batch first, or the callbacks' time budget ran out. Either way the report is
        logged as one `swept` line, which the scheduler's logs show."""
        tally = _Tally()
        now = self.clock()
        self._sweep(tally, now, dry_run=dry_run)
        cutoff = now - self.settings.retention
        expired = self.store.find_finished_before(cutoff, limit=SUMMARY_IDS)
        deleted = expired.total if dry_run else self.store.delete_finished_before(cutoff)
        tally.counts["deleted"] = deleted
        tally.ids["deleted"] = [job.job_id for job in expired.first][:deleted]
        return self._swept(tally.report(dry_run=dry_run))

    @staticmethod
    def _swept(report: SweepReport) -> SweepReport:
        fields: dict[str, Any] = {
            **report.counts(),
            "dry_run": report.dry_run,
            "ids": {name: list(ids) for name, ids in report.ids.items() if ids},
        }
        emit(Event.SWEPT, "swept: " + report.describe(), **fields)
        return report

    def _sweep(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        self._sweep_expired_leases(tally, now, dry_run=dry_run)
        for job, batch in self.store.find_unenqueued(now - self.settings.enqueue_grace):
            if dry_run or self._enqueue_one(job, batch):
                tally.add("enqueued", batch.batch_id)
        self._sweep_dropped(tally, now, dry_run=dry_run)
        self._finalize_complete_jobs(tally, now, dry_run=dry_run)
        self._sweep_planning(tally, now, dry_run=dry_run)
        self._fail_unplanned_jobs(tally, now, dry_run=dry_run)
        # After the batch steps, so that a dry run foresees the real one: the batches of a
        # job started here are recovered by the next sweep.
        self._start_due_jobs(tally, now, dry_run=dry_run)
        self._redeliver_callbacks(tally, now, dry_run=dry_run)

    def _enqueue_one(self, job: Job, batch: Batch) -> bool:
        with bound(**_job_context(job), batch_id=batch.batch_id):
            return self._enqueue(job, [batch]) == 1

    def _sweep_expired_leases(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Running batches whose lease expired (their worker stopped): enqueued again, or
        failed once their attempts are used up."""
        for job, batch in self.store.find_expired_leases(now):
            exhausted = batch.attempts >= self.settings.dispatch.max_attempts
            if dry_run:
                tally.add("failed" if exhausted else "requeued", batch.batch_id)
                continue
            with bound(**_job_context(job), batch_id=batch.batch_id, attempt=batch.attempts):
                if exhausted:
                    error = f"lease expired on attempt {batch.attempts}; attempts exhausted"
                    self._finish(job, batch, BatchOutcome(JobStatus.FAILED, batch.stats, error))
                    tally.add("failed", batch.batch_id)
                else:
                    emit(
                        Event.BATCH_RETRIED,
                        f"the lease of attempt {batch.attempts} on {batch.ran_on} expired"
                        " (its worker stopped); the sweeper enqueues it again",
                        level=logging.WARNING,
                        error="lease expired",
                        ran_on=batch.ran_on,
                    )
                    if self._enqueue(job, [batch]):
                        tally.add("requeued", batch.batch_id)

    def check_task(self, job: Job, batch: Batch) -> TaskCheck | None:
        """Ask the queue about a pending batch's task (None for any other batch): see
        `TaskCheck`. The same question the sweeper asks (`_sweep_dropped`), which also
        leaves a task alone for the enqueue grace."""
        if batch.status is not JobStatus.PENDING or batch.enqueued_at is None:
            return None
        after_grace = batch.enqueued_at + self.settings.enqueue_grace
        if self.clock() < after_grace:  # just enqueued: not worth a call to the queue
            return TaskCheck("queued", None)
        gone = self.queue.task_gone(self.task_for(job, batch).name, job.priority)
        if gone is None:
            return TaskCheck("unknown", after_grace + retry_window(self.settings.dispatch))
        return TaskCheck("dropped", after_grace) if gone else TaskCheck("queued", None)

    def _dropped_action(self, job: Job, batch: Batch) -> str:
        """What the sweep does with a batch whose task was dropped: the count it goes to."""
        if job.status is JobStatus.CANCELLED:
            return "cancelled"
        if batch.dispatch_rounds >= self.settings.max_dispatch_rounds:
            return "failed"
        return "redispatched"

    def _sweep_dropped(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Batches whose task the queue dropped, every attempt having failed to reach the
        worker (one that reaches it claims the batch). Each is enqueued again under a new
        task name, `max_dispatch_rounds` times; then it fails, and the job with it, for a
        retry once the worker is back. A cancelled job's such batches end cancelled.

        Which batches: those still pending the enqueue grace after their task was
        enqueued, oldest first, whose task the queue says is gone (`task_gone`), until it
        answers "still queued" `STILL_QUEUED_IN_A_ROW` times in a row; and, when the queue
        cannot tell, those still pending a whole retry window (plus the grace) after it. A
        dry run reads what a sweep would take and changes nothing."""
        dropped = _DroppedTasks(self, now)
        if dry_run:
            for job, batch in dropped.find(limit=DROPPED_PER_SWEEP):
                tally.add(self._dropped_action(job, batch), batch.batch_id)
            return
        for _ in range(DROPPED_PER_SWEEP // DROPPED_PAGE):
            found, looked_at = dropped.page(limit=DROPPED_PAGE)
            again: list[tuple[Job, Batch]] = []
            handled = 0
            for job, batch in found:
                action = self._dropped_action(job, batch)
                if action == "cancelled":
                    with bound(**_job_context(job), batch_id=batch.batch_id, attempt=None):
                        ended = self._finish(job, batch, BatchOutcome(JobStatus.CANCELLED))
                    done = ended.reason is None
                elif action == "failed":
                    done = self._fail_dropped(job, batch)
                else:
                    again.append((job, batch))
                    continue
                if done:
                    tally.add(action, batch.batch_id)
                    handled += 1
            for batch_id in self._redispatch(again):
                tally.add("redispatched", batch_id)
                handled += 1
            # Handled batches leave the query's answer; a page that changed nothing (each
            # batch still queued, claimed or moved on by another sweep meanwhile) ends the
            # sweep's share.
            if looked_at < DROPPED_PAGE or not handled:
                break

    def _redispatch(self, found: Sequence[tuple[Job, Batch]]) -> list[str]:
        """Record the next round of each dropped batch, then enqueue the ones this sweep
        recorded, each under its new round's name. The record is a conditional write: of
        concurrent sweeps, one records each round and only that one enqueues it; a batch
        that a late delivery claimed since it was found is left alone. A task the queue
        refuses has used its round: the sweeper tries again after the retry window.
        Returns the ids of the batches enqueued again, in the order they were found."""
        tasks: dict[str, tuple[Task, Job, Batch]] = {}
        for job, batch in found:
            bumped = self.store.mark_redispatched(job, batch, now=self.clock())
            if bumped is not None:  # None: another sweep took this round, or a delivery
                task = self.task_for(job, bumped)
                tasks[task.name] = (task, job, bumped)
        if not tasks:
            return []
        result = self.queue.enqueue([task for task, _, _ in tasks.values()])
        attempts = self.settings.dispatch.max_attempts
        rounds = self.settings.max_dispatch_rounds
        outcomes = [(name, None) for name in result.enqueued] + list(result.failed.items())
        for name, refusal in outcomes:
            _, job, batch = tasks[name]
            this_round = f"re-dispatch round {batch.dispatch_rounds} of {rounds}"
            with bound(**_job_context(job), batch_id=batch.batch_id, attempt=batch.attempts):
                emit(
                    Event.BATCH_RETRIED,
                    f"task dropped after {attempts} attempts (worker unreachable?); {this_round}"
                    if refusal is None
                    else f"{this_round} refused by the queue ({refusal}); the sweeper tries"
                    " again after the retry window",
                    level=logging.WARNING,
                    error=refusal or "task dropped",
                    round=batch.dispatch_rounds,
                    max_rounds=rounds,
                    task=name,
                )
        accepted = set(result.enqueued)
        return [batch.batch_id for name, (_, _, batch) in tasks.items() if name in accepted]

    def _fail_dropped(self, job: Job, batch: Batch) -> bool:
        """Fail a batch whose every round was dropped, unless a late delivery claimed it or
        another sweep moved it on since it was found. True if this call failed it."""
        if not self.store.get_batch(batch.batch_id).still_as_found(batch):
            return False
        tasks = batch.dispatch_rounds + 1
        attempts = self.settings.dispatch.max_attempts
        error = (
            f"the worker could not be reached: the queue dropped {tasks} tasks of {attempts}"
            f" attempts each ({tasks * attempts} attempts in all); retry the job once it is back"
        )
        outcome = BatchOutcome(
            JobStatus.FAILED,
            batch.stats,
            error,
            {"dispatch_rounds": batch.dispatch_rounds, "attempts_per_task": attempts},
        )
        with bound(**_job_context(job), batch_id=batch.batch_id, attempt=batch.attempts):
            return self._finish(job, batch, outcome).reason is None

    def _redeliver_callbacks(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Send again the callbacks still owed a lease after their latest attempt started
        (or their job finalized, when its finalizer stopped before sending): a failed one,
        or one whose sender stopped. Each claims its attempt first, so of concurrent sweeps
        one sends. A callback past its last allowed attempt is given up instead."""
        deadline = time.monotonic() + CALLBACK_SWEEP_SECONDS
        started_before = now - self.settings.lease
        for job in self.store.find_undelivered_callbacks(started_before, limit=CALLBACKS_PER_SWEEP):
            gives_up = job.callback_attempts > self.settings.callback_max_sweeps
            if dry_run:
                if not gives_up:
                    tally.add("callbacks", job.job_id)
                continue
            if time.monotonic() > deadline:
                break
            with bound(**_job_context(job)):
                if gives_up:
                    # Its last allowed attempt never recorded an outcome: its sender stopped.
                    status = f"failed: gave up after {job.callback_attempts} attempts"
                    self.store.record_callback(job, status=status, error=status, owed=False)
                    emit(
                        Event.CALLBACK_FAILED,
                        f"callback to {redacted_url(job.callback_url or '')}: {status}",
                        level=logging.WARNING,
                        callback=redacted_url(job.callback_url or ""),
                        outcome=status,
                        callback_attempt=job.callback_attempts,
                    )
                    continue
                claimed = self.store.claim_callback(job, now=self.clock())
                if claimed is None:
                    continue  # another sweep took it, or it was delivered meanwhile
                self._deliver_callback(claimed)
                tally.add("callbacks", job.job_id)

    def _jobs_with_status(self, status: str) -> Iterator[Job]:
        cursor: str | None = None
        while True:
            page = self.store.list_jobs(JobQuery.build(statuses=[status], limit=200, cursor=cursor))
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _start_due_jobs(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Start scheduled jobs due since the enqueue grace that no delivery started: a
        job's first claim starts it, so these are jobs whose tasks the queue dropped or
        refused. Started, they are running jobs to the rest of the sweep, which recovers
        their batches as any others, from the next sweep on. A job not due yet is left
        alone: its tasks are not stuck, they wait."""
        due_before = now - self.settings.enqueue_grace
        for job in self._jobs_with_status("scheduled"):
            if job.not_before is None or job.not_before >= due_before:
                continue
            if dry_run or self.store.start_due(job.job_id, now=now):
                tally.add("started", job.job_id)
                if not dry_run:
                    with bound(**_job_context(job)):
                        emit(
                            Event.JOB_STARTED,
                            f"job started by the sweeper: due since {job.not_before.isoformat()},"
                            " no delivery had started it",
                            level=logging.WARNING,
                            not_before=job.not_before.isoformat(),
                        )

    def _fail_unplanned_jobs(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Fail jobs whose planning never finished: the instance that submitted them died
        between recording the job and starting it (rule 4, for jobs that never ran)."""
        cutoff = now - self.settings.planning_timeout
        for job in self._jobs_with_status("pending"):
            if job.created_at >= cutoff:
                continue
            if dry_run:
                tally.add("abandoned", job.job_id)
                continue
            error = (
                "planning did not finish (the submitting instance stopped); "
                "submit it again with a new request_id"
            )
            try:
                self.store.fail_unplanned(job.job_id, now=now, error=error)
            except InvalidTransition:
                continue  # its planner started it meanwhile: exactly one of the two wins
            tally.add("abandoned", job.job_id)
            with bound(**_job_context(job)):
                emit(Event.JOB_FINALIZED, f"job failed: {error}", level=logging.ERROR, error=error)

    def _sweep_planning(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Planning jobs whose next planner task the queue no longer holds (dropped after
        its attempts, or refused): enqueued again, under a name of this sweep's own (the
        queue keeps a used name for a while). A page delivered twice is written once."""
        for job in [*self._jobs_with_status("running"), *self._jobs_with_status("scheduled")]:
            if not job.planning or now - job.created_at < self.settings.enqueue_grace:
                continue
            next_page = plan_task_name(job.job_id, job.plan_pages)
            if self.queue.task_gone(next_page, PLAN_PRIORITY) is not True:
                continue
            if dry_run or self._enqueue_plan(job, job.plan_pages, int(now.timestamp())):
                tally.add("planned", job.job_id)

    def _finalize_complete_jobs(self, tally: _Tally, now: datetime, *, dry_run: bool) -> None:
        """Finalize running jobs whose batches have all ended (their last worker stopped
        between counting and finalizing)."""
        for job in self._jobs_with_status("running"):
            if not (job.total_batches and job.all_counted):
                continue
            if dry_run:
                tally.add("finalized", job.job_id)
                continue
            result = self.store.finalize_if_complete(job.job_id, now=now)
            self._after_finish(result)
            if result.finalized:
                tally.add("finalized", job.job_id)
