"""`FirestoreJobStore`: production state in Firestore.

Layout (docs/design.md, "The data model"):

    jobs/{job_id}                              the parent
    jobs/{job_id}/batches/{job_id}_{NNNN}      one sub-job per batch
    jobs/{job_id}/counters/{k}                 counter shards: every count lands here
    jobs/{job_id}/done/{name}                  "happens once" markers (see below)
    jobs/{job_id}/leases/{batch_id}_g{r}_a{n}  one marker per claim attempt
    jobs/{job_id}/leases/{batch_id}_g{r}_r{n}  one marker per re-dispatch of a dropped task
    idempotency/{sha256(client_id, request_id)} -> job_id

Why counting is exactly once, on real Firestore and on emulators without transactions:
every step that must happen once is ONE batched commit whose FIRST write is a `create()` of
a marker named after the step: `done/{index}` counts batch `index`, `done/final` finalizes
(or cancels) the job, `done/planned` plans it, `done/retry_{n}` re-opens it,
`done/callback_r{retries}_a{n}` takes attempt n of its callback, and
`leases/{batch}_g{retries}_a{attempt}` claims an attempt. A second attempt at the same step
fails that `create()` with AlreadyExists, and none of its commit applies: real Firestore
commits a batch atomically, and an emulator that applies writes in order stops at the first
failure, which is the marker. No transaction (and so no lock and no retry-on-contention) is
needed for these guarantees, which is also why they hold under heavy concurrency.

Finalize once: the counting commit's `Increment`s return the shard's new counts (the
write's transform results), and a shard knows how many batches count into it (`shard_size`).
Only a commit that completes its shard goes on to sum every shard (one query reading the
shards, strongly consistent). The commit that completes the job necessarily completes its
shard, and Firestore serializes commits, so it is followed by a read that sees every count;
that reader (and maybe others) tries the `done/final` commit, and exactly one wins. A commit
whose transform results are missing (the npm emulator returns none) sums the shards every
time.

No hot document (rule 3): counts never touch the parent. They go to
`counters/{index % shards}`, where `shards` grows with the job's size. The parent is written
only at lifecycle steps (create, plan, finalize, cancel, retry); while a job runs, readers sum
the shards, so the API always shows the true sum. Finalizing copies the sums onto the parent.

Claims use the lease marker for concurrent duplicates, plus a `last_update_time`
precondition on the batch update, so that a claim racing a finish cannot re-open a terminal
batch on real Firestore (that precondition is one of the npm emulator's documented gaps).
A claim whose precondition fails reads the batch again: any write in between (ingest marking
the batch enqueued, typically) would otherwise make a first delivery look like a duplicate.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from functions.errors import (
    BatchNotFound,
    Busy,
    InvalidArgument,
    InvalidTransition,
    JobNotFound,
)
from functions.jobs import (
    STAT_FIELDS,
    Batch,
    BatchOutcome,
    Job,
    JobStats,
    JobStatus,
    check_job_id,
    check_transition,
    parse_batch_id,
    utcnow,
)
from functions.paging import decode_cursor, encode_cursor
from functions.store.finalize import expire_at_for, final_fields
from functions.store.job_cursor import decode_job_cursor
from functions.store.protocol import (
    DEFAULT_PAGE_SIZE,
    BatchCounts,
    Claim,
    FinishResult,
    Found,
    JobQuery,
    Page,
    Planned,
    PlanPage,
    check_limit,
    check_progress,
    not_due,
)
from functions.store.shards import MATERIALIZED, shard_of, shard_size, shards_of

# Writes per commit when writing many documents; commits of a bulk write run in parallel.
CHUNK = 400
PARALLEL_COMMITS = 8
# Seconds a bulk commit may take. Real Firestore commits CHUNK writes in well under a
# second; emulators whose cost per write grows with their content need far longer.
BULK_COMMIT_TIMEOUT = 300.0

# Reads a claim may take when the batch keeps changing between its read and its write.
CLAIM_READS = 5

_COUNTER_FIELDS = ("completed_batches", "failed_batches", *STAT_FIELDS)

DocRef = Any  # google.cloud.firestore.DocumentReference (the library ships no type hints)
Snapshot = Any


def _idempotency_key(client_id: str, request_id: str) -> str:
    return hashlib.sha256(f"{client_id}\x00{request_id}".encode()).hexdigest()


def _job_doc(job: Job) -> dict[str, Any]:
    doc = job.to_dict()
    del doc["progress"]
    if job.client_id is not None and job.request_id is not None:
        doc["idempotency_key"] = _idempotency_key(job.client_id, job.request_id)
    return doc


def _batch_doc(batch: Batch) -> dict[str, Any]:
    doc = batch.to_dict()
    doc["batch_index"] = doc.pop("index")
    doc["enqueued"] = batch.enqueued_at is not None
    return doc


@dataclass(frozen=True, slots=True)
class _Counted:
    """A counting commit that landed. `shard_ended` is its shard's completed + failed batches
    just after it, or None when the commit did not report them."""

    shard_ended: int | None


def _ended_after(result: Any, increments: Mapping[str, Any]) -> int | None:
    """completed + failed batches of a shard just after the write whose `WriteResult` is
    `result`. Firestore returns one transform result per field transform, in the order they
    were sent, and the client sends a write's transforms sorted by field path. None when the
    results are missing (the npm emulator sends none)."""
    values = list(result.transform_results)
    if len(values) != len(increments):
        return None
    after = dict(zip(sorted(increments), values, strict=True))
    return sum(int(after[name].integer_value) for name in ("completed_batches", "failed_batches"))


def _job(snap: Snapshot) -> Job:
    return Job.from_dict(snap.to_dict())


def _batch(snap: Snapshot) -> Batch:
    doc = snap.to_dict()
    doc["index"] = doc.pop("batch_index")
    return Batch.from_dict(doc)


class FirestoreJobStore:
    """`JobStore` on Firestore. The client is built on first use, once per instance."""

    def __init__(
        self,
        *,
        project: str | None = None,
        database: str = "(default)",
        retention: timedelta = timedelta(days=30),
        client: Any = None,
    ) -> None:
        self._project = project
        self._database = database
        self.retention = retention
        self._client = client
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    # -- plumbing -------------------------------------------------------------------------

    @property
    def db(self) -> Any:
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = firestore.Client(project=self._project, database=self._database)
        return self._client

    def _parallel(self, tasks: Iterable[Callable[[], object]]) -> None:
        if self._pool is None:
            with self._lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        PARALLEL_COMMITS, thread_name_prefix="firestore-commit"
                    )
        for future in [self._pool.submit(task) for task in tasks]:
            future.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def _job_ref(self, job_id: str) -> DocRef:
        return self.db.collection("jobs").document(check_job_id(job_id))

    def _batch_ref(self, job_id: str, index: int) -> DocRef:
        return self._job_ref(job_id).collection("batches").document(f"{job_id}_{index:04d}")

    def _done_ref(self, job_id: str, name: str) -> DocRef:
        return self._job_ref(job_id).collection("done").document(name)

    def _write_chunks(self, writes: Sequence[tuple[str, DocRef, Mapping[str, Any]]]) -> None:
        """Apply many (op, ref, data) writes in commits of CHUNK, in parallel. Not atomic
        as a whole: callers order their steps so that a partial write is safe to redo."""

        def commit(chunk: Sequence[tuple[str, DocRef, Mapping[str, Any]]]) -> None:
            wb = self.db.batch()
            for op, ref, data in chunk:
                if op == "set":
                    wb.set(ref, data)
                elif op == "update":
                    wb.update(ref, data)
                else:
                    wb.delete(ref)
            wb.commit(timeout=BULK_COMMIT_TIMEOUT)

        chunks = [writes[i : i + CHUNK] for i in range(0, len(writes), CHUNK)]
        self._parallel([lambda c=c: commit(c) for c in chunks])  # type: ignore[misc]

    def _delete_all(self, collection: Any) -> None:
        """Delete every document of a (sub)collection, a page at a time. Re-querying after
        each page needs no cursor, so it works on every emulator."""
        while docs := list(collection.limit(CHUNK).stream()):
            self._write_chunks([("delete", d.reference, {}) for d in docs])

    # -- counters -------------------------------------------------------------------------

    def _shard_sums(self, job_id: str) -> dict[str, int]:
        """Every counter of the job, summed over its shards, read whole by one query (at most
        MAX_SHARDS documents). Not an aggregation: an aggregation needs its fields indexed,
        and the counters' only-growing values are left unindexed (infra/firestore.tf)."""
        sums = dict.fromkeys((*_COUNTER_FIELDS, "cancelled_batches"), 0)
        for snap in self._job_ref(job_id).collection("counters").stream():
            for name, value in (snap.to_dict() or {}).items():
                if name in sums:
                    sums[name] += int(value)
        return sums

    def _sum_shards(self, job: Job) -> Job:
        """`job` with its counters replaced by the true sums over its shards."""
        if job.status in MATERIALIZED:
            return job
        sums = self._shard_sums(job.job_id)
        return replace(
            job,
            completed_batches=sums["completed_batches"],
            failed_batches=sums["failed_batches"],
            stats=JobStats.from_dict(sums),
        )

    def _count_done(self, job_id: str) -> int:
        """completed + failed batches, summed over the shards."""
        sums = self._shard_sums(job_id)
        return sums["completed_batches"] + sums["failed_batches"]

    def _counter_writes(
        self, job: Job, batch: Batch, sign: int, outcome: BatchOutcome
    ) -> tuple[DocRef, dict[str, Any]]:
        shard = shard_of(batch.index, job.total_batches, shards_of(job))
        deltas = {
            "completed_batches": int(outcome.status is JobStatus.COMPLETED),
            "failed_batches": int(outcome.status is JobStatus.FAILED),
            "cancelled_batches": int(outcome.status is JobStatus.CANCELLED),
            **outcome.stats.to_dict(),
        }
        ref = self._job_ref(job.job_id).collection("counters").document(str(shard))
        # Both batch counters are always written (Increment(0) included), so that the
        # commit's transform results report the shard's completed + failed (_ended_after).
        return ref, {
            k: firestore.Increment(sign * v)
            for k, v in deltas.items()
            if v or k in ("completed_batches", "failed_batches")
        }

    # -- jobs -----------------------------------------------------------------------------

    def create_job(self, job: Job) -> tuple[Job, bool]:
        ref = self._job_ref(job.job_id)
        if job.client_id is None or job.request_id is None:
            ref.create(_job_doc(job))
            return job, True
        marker = self.db.collection("idempotency").document(
            _idempotency_key(job.client_id, job.request_id)
        )
        wb = self.db.batch()
        wb.create(marker, {"job_id": job.job_id, "created_at": job.created_at})
        wb.create(ref, _job_doc(job))
        try:
            wb.commit()
        except gexc.AlreadyExists:
            existing = marker.get()
            return self.get_job(existing.get("job_id")), False
        return job, True

    def add_batches(
        self, job_id: str, batches: Sequence[Batch], *, now: datetime | None = None
    ) -> Job:
        now = now or utcnow()
        job = self.get_job(job_id)
        if job.status is not JobStatus.PENDING:
            raise InvalidTransition("job", job.status.value, "running (already planned)")
        for expected, batch in enumerate(batches):
            if batch.job_id != job_id or batch.index != expected:
                raise InvalidArgument(
                    f"batch {batch.batch_id!r} is not batch {expected} of job {job_id!r}"
                )
        # Plan once: the marker goes first, so a second planner writes no batch at all.
        try:
            self._done_ref(job_id, "planned").create({"at": now, "batches": len(batches)})
        except gexc.AlreadyExists:
            raise InvalidTransition("job", "planned", "running (already planned)") from None
        if not batches:
            return self._finalize(replace(job, started_at=now), now, counted=False).job
        self._write_chunks(
            [("set", self._batch_ref(job_id, b.index), _batch_doc(b)) for b in batches]
        )
        # Start once: the sweeper fails a job stuck in planning by taking this same marker,
        # so a planner that resumes too late cannot turn a failed job back to running. A
        # job whose start is ahead is scheduled instead: its first claim starts it.
        waits = job.waits_at(now)
        status = JobStatus.SCHEDULED if waits else JobStatus.RUNNING
        started = None if waits else now
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, "started"), {"at": now})
        wb.update(
            self._job_ref(job_id),
            {"status": status.value, "total_batches": len(batches), "started_at": started},
        )
        try:
            wb.commit()
        except gexc.AlreadyExists:
            current = self.get_job(job_id)
            raise InvalidTransition("job", current.status.value, status.value) from None
        return replace(job, status=status, total_batches=len(batches), started_at=started)

    def start_due(self, job_id: str, *, now: datetime | None = None) -> bool:
        now = now or utcnow()
        snap = self._job_ref(job_id).get()
        if not snap.exists:
            raise JobNotFound(job_id)
        job = _job(snap)
        if job.status is not JobStatus.SCHEDULED or job.waits_at(now):
            return False
        try:  # only the job as read: a claim or a cancel that moved it first wins
            self._job_ref(job_id).update(
                {"status": JobStatus.RUNNING.value, "started_at": now},
                option=self.db.write_option(last_update_time=snap.update_time),
            )
        except gexc.FailedPrecondition:
            return False
        return True

    def fail_unplanned(self, job_id: str, *, error: str, now: datetime | None = None) -> Job:
        now = now or utcnow()
        job = self.get_job(job_id)
        if job.status is not JobStatus.PENDING:
            raise InvalidTransition("job", job.status.value, "failed (never planned)")
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, "started"), {"at": now, "abandoned": True})
        wb.create(self._done_ref(job_id, "final"), {"status": "failed", "at": now})
        wb.update(
            self._job_ref(job_id),
            {
                "status": JobStatus.FAILED.value,
                "finished_at": now,
                "error": error,
                "expire_at": expire_at_for(now, self.retention),
                "message": error,
            },
        )
        try:
            wb.commit()
        except gexc.AlreadyExists:
            current = self.get_job(job_id)
            raise InvalidTransition("job", current.status.value, "failed (never planned)") from None
        return self.get_job(job_id)

    def add_plan_page(self, job_id: str, page: PlanPage, *, now: datetime | None = None) -> Planned:
        now = now or utcnow()
        snap = self._job_ref(job_id).get()
        if not snap.exists:
            raise JobNotFound(job_id)
        job = _job(snap)
        refusal = page.refusal(job)
        if refusal is not None:
            return Planned(False, False, self._sum_shards(job), refusal)
        if len(page.batches) > CHUNK:
            raise InvalidArgument(f"a page holds at most {CHUNK} batches, got {len(page.batches)}")
        changes = {
            "total_batches": job.total_batches + len(page.batches),
            "planned_items": job.planned_items + page.items,
            "plan_pages": page.number + 1,
            "plan_cursor": page.cursor,
            "planning": not page.last,
        }
        # One commit, its marker first: the page is written whole or not at all, and once.
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, f"page_{page.number}"), {"at": now})
        for batch in page.batches:
            wb.set(self._batch_ref(job_id, batch.index), _batch_doc(replace(batch, created_at=now)))
        wb.update(self._job_ref(job_id), changes)
        try:
            wb.commit(timeout=BULK_COMMIT_TIMEOUT)
        except gexc.AlreadyExists:
            current = self.get_job(job_id)
            return Planned(False, False, current, f"page {page.number} is already planned")
        planned = replace(job, **changes)  # type: ignore[arg-type]
        if not page.last:
            return Planned(True, False, planned)
        # Every batch counted before this commit is in the shards read now; any later one
        # reads `planning` False after counting (finish_batch): one of the two finalizes.
        final = self._finalize(planned, now, counted=True)
        return Planned(True, final.finalized, final.job)

    def fail_planning(
        self, job_id: str, page: int, *, error: str, now: datetime | None = None
    ) -> Job | None:
        now = now or utcnow()
        job = self.get_job(job_id)
        if job.is_terminal or not job.planning or job.plan_pages != page:
            return None
        changes = {
            "status": JobStatus.FAILED.value,
            "finished_at": now,
            "expire_at": expire_at_for(now, self.retention),
            "error": error,
            "message": error,
            "completed_batches": job.completed_batches,
            "failed_batches": job.failed_batches,
            "stats": job.stats.to_dict(),
        }
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, "final"), {"status": "failed", "at": now})
        wb.update(self._job_ref(job_id), changes)
        try:
            wb.commit()
        except gexc.AlreadyExists:
            return None
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> Job:
        snap = self._job_ref(job_id).get()
        if not snap.exists:
            raise JobNotFound(job_id)
        return self._sum_shards(_job(snap))

    def get_batch(self, batch_id: str) -> Batch:
        job_id, index = parse_batch_id(batch_id)
        snap = self._batch_ref(job_id, index).get()
        if not snap.exists:
            raise BatchNotFound(batch_id)
        return _batch(snap)

    def list_jobs(self, query: JobQuery) -> Page[Job]:
        base = self.db.collection("jobs")
        if len(query.statuses) == 1:
            base = base.where(filter=FieldFilter("status", "==", next(iter(query.statuses))))
        elif query.statuses:
            base = base.where(
                filter=FieldFilter("status", "in", sorted(s.value for s in query.statuses))
            )
        if query.source is not None:
            base = base.where(filter=FieldFilter("source", "==", query.source))
        if query.client_id is not None:
            base = base.where(filter=FieldFilter("client_id", "==", query.client_id))
        if query.priority is not None:
            base = base.where(filter=FieldFilter("priority", "==", query.priority.value))
        page = base
        if query.cursor:
            page = page.where(filter=FieldFilter("job_id", "<", decode_job_cursor(query.cursor)))
        page = page.order_by("job_id", direction=firestore.Query.DESCENDING)
        snaps = list(page.limit(query.limit + 1).stream())
        total = _count(base)
        jobs = [self._sum_shards(_job(s)) for s in snaps[: query.limit]]
        more = len(snaps) > query.limit
        return Page(jobs, encode_cursor("jobs", jobs[-1].job_id) if more else None, total)

    def list_batches(
        self,
        job_id: str,
        *,
        status: JobStatus | None = None,
        limit: int = DEFAULT_PAGE_SIZE,
        cursor: str | None = None,
    ) -> Page[Batch]:
        check_limit(limit)
        after = decode_cursor(cursor, "batches", int) if cursor else -1
        if not self._job_ref(job_id).get().exists:
            raise JobNotFound(job_id)
        base = self._job_ref(job_id).collection("batches")
        if status is not None:
            base = base.where(filter=FieldFilter("status", "==", status.value))
        page = (
            base.where(filter=FieldFilter("batch_index", ">", after))
            .order_by("batch_index")
            .limit(limit + 1)
        )
        snaps = list(page.stream())
        batches = [_batch(s) for s in snaps[:limit]]
        more = len(snaps) > limit
        return Page(
            batches, encode_cursor("batches", batches[-1].index) if more else None, _count(base)
        )

    def batch_counts(self, job: Job) -> BatchCounts:
        # A count is billed one read per 1,000 index entries it matches: running batches
        # are as few as the queue runs at once. The shards are at most MAX_SHARDS reads.
        if job.status not in (JobStatus.RUNNING, JobStatus.CANCELLED):
            return BatchCounts.of(job)  # every batch has ended, or none was planned yet
        batches = self._job_ref(job.job_id).collection("batches")
        running = _count(batches.where(filter=FieldFilter("status", "==", JobStatus.RUNNING.value)))
        if job.status is not JobStatus.CANCELLED:
            return BatchCounts.of(job, running=running)
        cancelled = self._shard_sums(job.job_id)["cancelled_batches"]
        return BatchCounts.of(job, running=running, cancelled=cancelled)

    # -- the batch lifecycle --------------------------------------------------------------

    def claim_batch(
        self,
        batch_id: str,
        *,
        lease: timedelta,
        ran_on: str | None = None,
        now: datetime | None = None,
    ) -> Claim:
        now = now or utcnow()
        # A failed precondition means the batch changed after we read it. That is usually
        # ingest marking it enqueued, which the first delivery can outrun; read it again
        # and decide on what is there now, or the batch would never run.
        for _ in range(CLAIM_READS):
            claim = self._try_claim(batch_id, lease, ran_on, now)
            if claim is not None:
                return claim
        raise Busy(f"batch {batch_id} kept changing while it was being claimed")

    def _try_claim(
        self, batch_id: str, lease: timedelta, ran_on: str | None, now: datetime
    ) -> Claim | None:
        """One read-decide-write round of a claim; None if the batch changed under it."""
        job_id, index = parse_batch_id(batch_id)
        batch_ref, job_ref = self._batch_ref(job_id, index), self._job_ref(job_id)
        snaps = {s.reference.path: s for s in self.db.get_all([batch_ref, job_ref])}
        batch_snap, job_snap = snaps[batch_ref.path], snaps[job_ref.path]
        if not batch_snap.exists or not job_snap.exists:
            raise BatchNotFound(batch_id)
        batch, job = _batch(batch_snap), _job(job_snap)
        if job.status is JobStatus.CANCELLED:
            if not batch.is_terminal:
                self._commit_outcome(job, batch, BatchOutcome(JobStatus.CANCELLED), now)
                batch = self.get_batch(batch_id)
            return Claim(False, job, batch, "job is cancelled")
        if batch.is_terminal:
            return Claim(False, job, batch, f"batch is {batch.status.value}")
        if job.is_terminal:
            return Claim(False, job, batch, f"job is {job.status.value}")
        starts = job.status is JobStatus.SCHEDULED
        if starts and job.waits_at(now):
            return Claim(False, job, batch, not_due(job))
        if (
            batch.status is JobStatus.RUNNING
            and batch.lease_expires_at
            and (batch.lease_expires_at > now)
        ):
            return Claim(
                False,
                job,
                batch,
                f"leased by attempt {batch.attempts} until {batch.lease_expires_at.isoformat()}",
            )
        attempt = batch.attempts + 1
        changes = {
            "status": JobStatus.RUNNING.value,
            "attempts": attempt,
            "lease_expires_at": now + lease,
            "heartbeat_at": now,
            "started_at": batch.started_at or now,
            "ran_on": ran_on,
        }
        wb = self.db.batch()
        wb.create(
            job_ref.collection("leases").document(f"{batch_id}_g{job.retries}_a{attempt}"),
            {"at": now, "lease_expires_at": now + lease},
        )
        wb.update(
            batch_ref, changes, option=self.db.write_option(last_update_time=batch_snap.update_time)
        )
        if starts:  # the first claim of a due scheduled job starts it, if still as read
            wb.update(
                job_ref,
                {"status": JobStatus.RUNNING.value, "started_at": now},
                option=self.db.write_option(last_update_time=job_snap.update_time),
            )
        try:
            wb.commit()
        except gexc.AlreadyExists:
            return Claim(False, job, batch, "claimed by a concurrent delivery")
        except gexc.FailedPrecondition:
            return None
        claimed = replace(
            batch,
            status=JobStatus.RUNNING,
            attempts=attempt,
            lease_expires_at=now + lease,
            heartbeat_at=now,
            started_at=batch.started_at or now,
            ran_on=ran_on,
        )
        if starts:
            job = replace(job, status=JobStatus.RUNNING, started_at=now)
        return Claim(True, job, claimed)

    def record_progress(
        self,
        batch: Batch,
        *,
        progress: float,
        stats: JobStats,
        lease: timedelta,
        now: datetime | None = None,
    ) -> bool:
        check_progress(progress)
        now = now or utcnow()
        batch_ref, job_ref = self._batch_ref(batch.job_id, batch.index), self._job_ref(batch.job_id)

        # A transaction is the right tool here: a conditional update of one document that
        # is written at a bounded rate by its one lease holder.
        @firestore.transactional
        def update(tx: Any) -> bool:
            snaps = {
                s.reference.path: s for s in self.db.get_all([batch_ref, job_ref], transaction=tx)
            }
            current, job = snaps[batch_ref.path], snaps[job_ref.path]
            if not (current.exists and job.exists):
                return False
            if (
                current.get("status") != JobStatus.RUNNING.value
                or current.get("attempts") != batch.attempts
                or job.get("status") != JobStatus.RUNNING.value
            ):
                return False
            tx.update(
                batch_ref,
                {
                    "progress": progress,
                    "stats": stats.to_dict(),
                    "heartbeat_at": now,
                    "lease_expires_at": now + lease,
                },
            )
            return True

        return bool(update(self.db.transaction()))

    def release_lease(self, batch: Batch, *, now: datetime | None = None) -> bool:
        now = now or utcnow()
        ref = self._batch_ref(batch.job_id, batch.index)

        @firestore.transactional
        def release(tx: Any) -> bool:
            snap = ref.get(transaction=tx)
            if (
                not snap.exists
                or snap.get("status") != JobStatus.RUNNING.value
                or (snap.get("attempts") != batch.attempts)
            ):
                return False
            tx.update(ref, {"lease_expires_at": now})
            return True

        return bool(release(self.db.transaction()))

    def finish_batch(
        self, job: Job, batch: Batch, outcome: BatchOutcome, *, now: datetime | None = None
    ) -> FinishResult:
        now = now or utcnow()
        counted = self._commit_outcome(job, batch, outcome, now)
        if counted is None:
            return FinishResult(False, False, job)
        if job.planning:
            # Read while planning: the shards' sizes were unknown. Planning's end comes
            # before this read or after this count; in the second case the last page's own
            # check finds this count (add_plan_page).
            job = _job(self._job_ref(job.job_id).get())
            if job.planning:
                return FinishResult(True, False, job)
        # While its shard waits for batches, so does the job: no read (module docstring).
        shards = shards_of(job)
        shard = shard_of(batch.index, job.total_batches, shards)
        if counted.shard_ended is not None and (
            counted.shard_ended < shard_size(shard, job.total_batches, shards)
        ):
            return FinishResult(True, False, job)
        if self._count_done(job.job_id) < job.total_batches:
            return FinishResult(True, False, job)
        return self._finalize(job, now, counted=True)

    def _commit_outcome(
        self, job: Job, batch: Batch, outcome: BatchOutcome, now: datetime
    ) -> _Counted | None:
        """The counting step: marker `done/{index}` first, then the batch's terminal state
        and the shard increments. None if the batch had already been counted."""
        if not batch.is_terminal:  # a terminal copy is a duplicate: the marker answers it
            check_transition("batch", batch.status, outcome.status)
        wb = self.db.batch()
        wb.create(
            self._done_ref(job.job_id, str(batch.index)),
            {"status": outcome.status.value, "at": now},
        )
        changes: dict[str, Any] = {
            "status": outcome.status.value,
            "stats": outcome.stats.to_dict(),
            "error": outcome.error,
            "error_details": dict(outcome.error_details) if outcome.error_details else None,
            "finished_at": now,
            "lease_expires_at": None,
        }
        if outcome.status is JobStatus.COMPLETED:
            changes["progress"] = 1.0
        wb.update(self._batch_ref(job.job_id, batch.index), changes)
        shard, increments = self._counter_writes(job, batch, +1, outcome)
        wb.set(shard, increments, merge=True)
        try:
            results = wb.commit()
        except gexc.AlreadyExists:
            return None
        return _Counted(_ended_after(results[-1], increments))

    def finalize_if_complete(self, job_id: str, *, now: datetime | None = None) -> FinishResult:
        return self._finalize(self.get_job(job_id), now or utcnow(), counted=False)

    def _finalize(self, job: Job, now: datetime, *, counted: bool) -> FinishResult:
        """Try the finalize step (marker `done/final`); only one caller ever wins it."""
        job = self.get_job(job.job_id) if job.total_batches or job.planning else job
        # Scheduled: planned by pages, and no batch at all (none runs before the start).
        finalizable = (JobStatus.RUNNING, JobStatus.PENDING, JobStatus.SCHEDULED)
        if job.status not in finalizable or not job.all_counted:
            return FinishResult(counted, False, job)
        fields = final_fields(job, now, self.retention)
        changes = {
            "status": fields.status.value,
            "started_at": job.started_at or now,
            "finished_at": now,
            "expire_at": fields.expire_at,
            "message": fields.message,
            "error": fields.error,
            "completed_batches": job.completed_batches,
            "failed_batches": job.failed_batches,
            "stats": job.stats.to_dict(),
        }
        if job.callback_url:  # each finalization owes its callback: attempts start over
            changes |= {
                "callback_attempts": 0,
                "callback_status": None,
                "callback_error": None,
                "callback_pending_since": now,
            }
        wb = self.db.batch()
        wb.create(self._done_ref(job.job_id, "final"), {"status": fields.status.value, "at": now})
        wb.update(self._job_ref(job.job_id), changes)
        try:
            wb.commit()
        except gexc.AlreadyExists:
            return FinishResult(counted, False, self.get_job(job.job_id))
        return FinishResult(counted, True, Job.from_dict({**job.to_dict(), **changes}))

    # -- operator actions -----------------------------------------------------------------

    def cancel_job(self, job_id: str, *, now: datetime | None = None) -> Job:
        now = now or utcnow()
        job = self.get_job(job_id)
        check_transition("job", job.status, JobStatus.CANCELLED)
        changes = {
            "status": JobStatus.CANCELLED.value,
            "finished_at": now,
            "expire_at": expire_at_for(now, self.retention),
            "message": "cancelled",
        }
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, "final"), {"status": "cancelled", "at": now})
        wb.update(self._job_ref(job_id), changes)
        try:
            wb.commit()
        except gexc.AlreadyExists:
            job = self.get_job(job_id)
            raise InvalidTransition("job", job.status.value, "cancelled") from None
        return self.get_job(job_id)

    def retry_failed(self, job_id: str, *, now: datetime | None = None) -> list[Batch]:
        now = now or utcnow()
        job = self.get_job(job_id)
        if job.status is not JobStatus.FAILED:
            raise InvalidTransition("job", job.status.value, "running (retry)")
        batches = self._job_ref(job_id).collection("batches")
        failed = [
            _batch(s)
            for s in batches.where(
                filter=FieldFilter("status", "==", JobStatus.FAILED.value)
            ).stream()
        ]
        if not failed:
            raise InvalidArgument(f"job {job_id!r} has no failed batches to retry")
        # Step 1, once: re-open the job. Until step 2 lands, the failed batches still count,
        # so a crash here leaves a job the sweeper finalizes again, never a stuck one.
        wb = self.db.batch()
        wb.create(self._done_ref(job_id, f"retry_{job.retries + 1}"), {"at": now})
        wb.delete(self._done_ref(job_id, "final"))
        wb.update(
            self._job_ref(job_id),
            {
                "status": JobStatus.RUNNING.value,
                "finished_at": None,
                "expire_at": None,
                "error": None,
                "message": None,
                "retries": job.retries + 1,
            },
        )
        try:
            wb.commit()
        except gexc.AlreadyExists:
            current = self.get_job(job_id)
            raise InvalidTransition("job", current.status.value, "running (retry)") from None
        # Step 2: per batch, one commit that un-counts it and re-opens it.
        reset = {
            "status": JobStatus.PENDING.value,
            "attempts": 0,
            "lease_expires_at": None,
            "heartbeat_at": None,
            "enqueued_at": None,
            "enqueued": False,
            "dispatch_rounds": 0,
            "stats": JobStats().to_dict(),
            "progress": 0.0,
            "error": None,
            "error_details": None,
            "started_at": None,
            "finished_at": None,
        }

        def reopen(batch: Batch) -> None:
            wb = self.db.batch()
            wb.delete(self._done_ref(job_id, str(batch.index)))
            wb.update(self._batch_ref(job_id, batch.index), reset)
            shard, decrements = self._counter_writes(
                job, batch, -1, BatchOutcome(JobStatus.FAILED, batch.stats)
            )
            wb.set(shard, decrements, merge=True)
            wb.commit()

        self._parallel([lambda b=b: reopen(b) for b in failed])  # type: ignore[misc]
        return [Batch.from_dict({**b.to_dict(), **reset, "index": b.index}) for b in failed]

    def mark_enqueued(
        self, job_id: str, indexes: Sequence[int], *, now: datetime | None = None
    ) -> None:
        now = now or utcnow()
        if not self._job_ref(job_id).get().exists:
            raise JobNotFound(job_id)
        self._write_chunks(
            [
                ("update", self._batch_ref(job_id, i), {"enqueued": True, "enqueued_at": now})
                for i in indexes
            ]
        )

    def delete_job(self, job_id: str) -> None:
        job = self.get_job(job_id)
        if not job.is_terminal:
            raise InvalidTransition("job", job.status.value, "deleted (cancel it first)")
        self._delete(job)

    def _delete(self, job: Job) -> None:
        # Children first, parent last: a crash half-way leaves a parent to delete again.
        ref = self._job_ref(job.job_id)
        for name in ("batches", "counters", "leases", "done"):
            self._delete_all(ref.collection(name))
        if job.client_id is not None and job.request_id is not None:
            self.db.collection("idempotency").document(
                _idempotency_key(job.client_id, job.request_id)
            ).delete()
        ref.delete()

    def delete_finished_before(self, cutoff: datetime, *, chunk_size: int = 100) -> int:
        if chunk_size < 1:
            raise InvalidArgument(f"chunk_size must be at least 1, got {chunk_size}")
        query = (
            self.db.collection("jobs")
            .where(filter=FieldFilter("finished_at", "<", cutoff))
            .limit(chunk_size)
        )
        deleted = 0
        while snaps := list(query.stream()):
            for snap in snaps:
                self._delete(_job(snap))
            deleted += len(snaps)
            if len(snaps) < chunk_size:
                break
        return deleted

    def find_finished_before(self, cutoff: datetime, *, limit: int = 5) -> Found[Job]:
        query = self.db.collection("jobs").where(filter=FieldFilter("finished_at", "<", cutoff))
        first = query.order_by("finished_at").limit(limit).stream()
        return Found([self._sum_shards(_job(snap)) for snap in first], _count(query))

    # -- callbacks ------------------------------------------------------------------------

    def claim_callback(self, job: Job, *, now: datetime | None = None) -> Job | None:
        # The marker `done/callback_r{retry round}_a{attempt}` lets one of concurrent claims
        # of the same attempt win, on every emulator; the update_time precondition also
        # refuses a claim that read the job before a delivery was recorded (real Firestore
        # and Google's emulator; the npm emulator ignores it).
        now = now or utcnow()
        ref = self._job_ref(job.job_id)
        snap = ref.get()
        if not snap.exists:
            return None
        current = _job(snap)
        if (
            (snap.to_dict() or {}).get("callback_pending_since") is None
            or current.status not in (JobStatus.COMPLETED, JobStatus.FAILED)
            or current.retries != job.retries
            or current.callback_attempts != job.callback_attempts
        ):
            return None
        attempt = job.callback_attempts + 1
        wb = self.db.batch()
        wb.create(self._done_ref(job.job_id, f"callback_r{job.retries}_a{attempt}"), {"at": now})
        wb.update(
            ref,
            {"callback_attempts": attempt, "callback_pending_since": now},
            option=self.db.write_option(last_update_time=snap.update_time),
        )
        try:
            wb.commit()
        except (gexc.AlreadyExists, gexc.FailedPrecondition):
            return None
        return replace(current, callback_attempts=attempt)

    def record_callback(self, job: Job, *, status: str, error: str | None, owed: bool) -> None:
        ref = self._job_ref(job.job_id)

        @firestore.transactional
        def record(tx: Any) -> None:
            snap = ref.get(transaction=tx)
            stored = (snap.to_dict() or {}) if snap.exists else {}
            if not stored or stored.get("retries", 0) != job.retries:
                return
            latest = stored.get("callback_attempts", 0) == job.callback_attempts
            if error is not None and not (latest and stored.get("callback_pending_since")):
                return  # a failure of an attempt that is no longer the latest
            changes: dict[str, Any] = {"callback_status": status, "callback_error": error}
            if not owed:
                changes["callback_pending_since"] = None
            tx.update(ref, changes)

        record(self.db.transaction())

    def find_undelivered_callbacks(
        self, started_before: datetime, *, limit: int = 100
    ) -> list[Job]:
        # Index: jobs (status, callback_pending_since), infra/firestore.tf. A delivered
        # callback's null never matches a range on timestamps.
        query = (
            self.db.collection("jobs")
            .where(
                filter=FieldFilter(
                    "status", "in", [JobStatus.COMPLETED.value, JobStatus.FAILED.value]
                )
            )
            .where(filter=FieldFilter("callback_pending_since", "<", started_before))
            .order_by("callback_pending_since")
            .limit(limit)
        )
        return [_job(snap) for snap in query.stream()]

    # -- the sweeper's queries ------------------------------------------------------------

    def _running_jobs(self) -> Iterable[Job]:
        query = self.db.collection("jobs").where(
            filter=FieldFilter("status", "==", JobStatus.RUNNING.value)
        )
        return (_job(s) for s in query.stream())

    def find_expired_leases(self, now: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        found: list[tuple[Job, Batch]] = []
        for job in self._running_jobs():
            query = (
                self._job_ref(job.job_id)
                .collection("batches")
                .where(filter=FieldFilter("status", "==", JobStatus.RUNNING.value))
                .where(filter=FieldFilter("lease_expires_at", "<", now))
                .limit(limit - len(found))
            )
            found.extend((job, _batch(s)) for s in query.stream())
            if len(found) >= limit:
                break
        return found

    def find_unenqueued(self, older_than: datetime, *, limit: int = 500) -> list[tuple[Job, Batch]]:
        found: list[tuple[Job, Batch]] = []
        for job in self._running_jobs():
            if job.started_at is None or job.started_at >= older_than:
                continue
            query = (
                self._job_ref(job.job_id)
                .collection("batches")
                .where(filter=FieldFilter("status", "==", JobStatus.PENDING.value))
                .where(filter=FieldFilter("enqueued", "==", False))
                .order_by("batch_index")
                .limit(limit - len(found))
            )
            found.extend((job, _batch(s)) for s in query.stream())
            if len(found) >= limit:
                break
        return found

    def find_dropped(
        self, enqueued_before: datetime, *, limit: int = 500
    ) -> list[tuple[Job, Batch]]:
        # One collection-group query over every job's batches (its COLLECTION_GROUP index
        # is in infra/firestore.tf), then one read of the distinct jobs: at most 2 x limit
        # documents, however many jobs run. Never-enqueued batches hold a null enqueued_at,
        # which a range filter on timestamps leaves out.
        query = (
            self.db.collection_group("batches")
            .where(filter=FieldFilter("status", "==", JobStatus.PENDING.value))
            .where(filter=FieldFilter("enqueued_at", "<", enqueued_before))
            .order_by("enqueued_at")
            .limit(limit)
        )
        batches = [_batch(s) for s in query.stream()]
        refs = [self._job_ref(job_id) for job_id in dict.fromkeys(b.job_id for b in batches)]
        jobs = {s.id: _job(s) for s in (self.db.get_all(refs) if refs else ()) if s.exists}
        wanted = (JobStatus.RUNNING, JobStatus.CANCELLED)
        return [
            (jobs[b.job_id], b)
            for b in batches
            if b.job_id in jobs and jobs[b.job_id].status in wanted
        ]

    def mark_redispatched(
        self, job: Job, batch: Batch, *, now: datetime | None = None
    ) -> Batch | None:
        now = now or utcnow()
        ref = self._batch_ref(batch.job_id, batch.index)
        (snap,) = self.db.get_all([ref])
        if not snap.exists:
            raise BatchNotFound(batch.batch_id)
        current = _batch(snap)
        if not current.still_as_found(batch):
            return None
        rounds = batch.dispatch_rounds + 1
        # Once per round: the marker decides between concurrent sweeps (on every emulator);
        # the precondition refuses the write if a delivery claimed the batch since the read.
        wb = self.db.batch()
        wb.create(
            self._job_ref(batch.job_id)
            .collection("leases")
            .document(f"{batch.batch_id}_g{job.retries}_r{rounds}"),
            {"at": now},
        )
        wb.update(
            ref,
            {"dispatch_rounds": rounds, "enqueued_at": now, "enqueued": True},
            option=self.db.write_option(last_update_time=snap.update_time),
        )
        try:
            wb.commit()
        except (gexc.AlreadyExists, gexc.FailedPrecondition):
            return None
        return replace(current, dispatch_rounds=rounds, enqueued_at=now)


def _count(query: Any) -> int:
    return sum(int(r.value) for row in query.count(alias="n").get() for r in row)
