"""Races that only a store with a gap between its read and its write can lose.

SQLite claims and finishes in one statement each, so there is no such gap there. On
Firestore a claim reads the batch, then writes it: the write must be conditional on the
snapshot it read. Each test forces the interleaving at that seam with a second client, so
the race is deterministic.

Progress writes are guarded by a transaction instead. That race cannot be forced this way
on Google's emulator: like real Firestore it locks what a transaction read, so the competing
write waits for the transaction (it times out here, on one thread) rather than slipping in.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, cast

import pytest

from functions.jobs import BatchOutcome, Job, JobStats, JobStatus, plan_batches, utcnow
from functions.store.firestore import FirestoreJobStore
from tests.contract.conftest import StoreFactory
from tests.contract.factories import LEASE, planned_job

pytestmark = pytest.mark.firestore_only("SQLite reads and writes a claim in one statement")


@pytest.mark.firestore_gap("last_update_time preconditions are ignored")
def test_a_claim_that_read_the_batch_before_it_finished_does_not_reopen_it(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A redelivery reads a batch whose lease just expired; the lease holder then finishes
    it. The redelivery's claim must be refused: granting it would turn a completed, counted
    batch back into a running one and run it again."""
    finisher = store_factory()
    claimer = cast(FirestoreJobStore, store_factory())
    job = planned_job(finisher, 2)
    now = utcnow()
    holder = finisher.claim_batch(f"{job.job_id}_0000", lease=timedelta(seconds=10), now=now)
    read_batch = claimer.db.get_all

    def read_then_let_the_holder_finish(*args: Any, **kwargs: Any) -> Iterator[Any]:
        snapshots = list(read_batch(*args, **kwargs))
        monkeypatch.setattr(claimer.db, "get_all", read_batch)  # only this read races
        finisher.finish_batch(
            holder.job, holder.batch, BatchOutcome(JobStatus.COMPLETED, JobStats(processed=2))
        )
        return iter(snapshots)

    monkeypatch.setattr(claimer.db, "get_all", read_then_let_the_holder_finish)
    late = claimer.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=now + timedelta(seconds=11))

    assert not late.granted
    batch = finisher.get_batch(f"{job.job_id}_0000")
    assert (batch.status, batch.attempts) == (JobStatus.COMPLETED, 1)
    assert finisher.get_job(job.job_id).completed_batches == 1


def test_a_claim_that_read_the_batch_before_it_was_marked_enqueued_still_runs_it(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first delivery can outrun ingest: it reads a batch, then ingest marks that batch
    enqueued. The claim must still be granted, or the delivery is answered as a duplicate
    and the batch never runs (the job would stay running for ever)."""
    ingest = store_factory()
    claimer = cast(FirestoreJobStore, store_factory())
    job = planned_job(ingest, 2)
    read_batch = claimer.db.get_all

    def read_then_let_ingest_mark_it(*args: Any, **kwargs: Any) -> Iterator[Any]:
        snapshots = list(read_batch(*args, **kwargs))
        monkeypatch.setattr(claimer.db, "get_all", read_batch)  # only this read races
        ingest.mark_enqueued(job.job_id, [0, 1])
        return iter(snapshots)

    monkeypatch.setattr(claimer.db, "get_all", read_then_let_ingest_mark_it)
    claim = claimer.claim_batch(f"{job.job_id}_0000", lease=LEASE)

    assert claim.granted, claim.reason
    batch = ingest.get_batch(f"{job.job_id}_0000")
    assert (batch.status, batch.attempts) == (JobStatus.RUNNING, 1)
    assert batch.enqueued_at is not None


@pytest.mark.firestore_gap("last_update_time preconditions are ignored")
def test_a_first_claim_that_read_a_scheduled_job_before_its_cancel_does_not_start_it(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first delivery at a scheduled job's start reads the job scheduled; the job is
    then cancelled. The claim must not start the job nor run the batch: it reads again,
    finds the job cancelled and ends the batch cancelled."""
    canceller = store_factory()
    claimer = cast(FirestoreJobStore, store_factory())
    now = utcnow()
    job, _ = canceller.create_job(
        Job.new(source="noop", collection="docs", not_before=now + timedelta(hours=1), now=now)
    )
    job = canceller.add_batches(job.job_id, plan_batches(job.job_id, ["a", "b"], 1), now=now)
    assert job.status is JobStatus.SCHEDULED and job.not_before is not None
    read_both = claimer.db.get_all

    def read_then_cancel(*args: Any, **kwargs: Any) -> Iterator[Any]:
        snapshots = list(read_both(*args, **kwargs))
        monkeypatch.setattr(claimer.db, "get_all", read_both)  # only this read races
        canceller.cancel_job(job.job_id)
        return iter(snapshots)

    monkeypatch.setattr(claimer.db, "get_all", read_then_cancel)
    claim = claimer.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=job.not_before)

    assert (claim.granted, claim.reason) == (False, "job is cancelled")
    read = canceller.get_job(job.job_id)
    assert (read.status, read.started_at) == (JobStatus.CANCELLED, None)
    batch = canceller.get_batch(f"{job.job_id}_0000")
    assert (batch.status, batch.attempts) == (JobStatus.CANCELLED, 0)
