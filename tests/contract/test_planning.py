"""Planning by pages (functions/planner.py) on every store: each page is written once and
whole, batches run while planning goes on, and the job finalizes once, after planning has
ended and every batch has counted, whichever of the last page and the last batch comes
last, including when they meet at the seam between counting and checking."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from functions.errors import InvalidArgument
from functions.jobs import BatchOutcome, Job, JobStatus, plan_batches, utcnow
from functions.store.protocol import Claim, FinishResult, JobStore, Planned, PlanPage
from tests.contract.conftest import StoreFactory
from tests.contract.factories import LEASE, run, stats_for


def planning_job(store: JobStore) -> Job:
    job, created = store.create_job(
        Job.new(source="noop", collection="docs", request={"batch_size": 2}, planning=True)
    )
    assert created and job.status is JobStatus.RUNNING and job.planning
    return job


def page(job: Job, number: int, items: int, *, last: bool = False, first: int = 0) -> PlanPage:
    names = [f"doc-{number}-{i}" for i in range(items)]
    batches = plan_batches(job.job_id, names, 2, first_index=first)
    return PlanPage(number, batches, items, f"{number + 1}:0", last)


def run_claimed(store: JobStore, claim: Claim) -> FinishResult:
    outcome = BatchOutcome(JobStatus.COMPLETED, stats_for(claim.batch))
    return store.finish_batch(claim.job, claim.batch, outcome)


def test_a_page_is_written_once_and_totals_follow_the_pages(store: JobStore) -> None:
    """A page delivered twice is written once, and the job's totals grow by each page's batches."""
    job = planning_job(store)
    first = store.add_plan_page(job.job_id, page(job, 0, 4))
    again = store.add_plan_page(job.job_id, page(job, 0, 4))
    assert (first.written, again.written) == (True, False)
    assert again.reason == "page 0 is already planned"
    second = store.add_plan_page(job.job_id, page(job, 1, 3, first=2))
    assert second.written
    stored = store.get_job(job.job_id)
    assert (stored.total_batches, stored.planned_items, stored.plan_pages) == (4, 7, 2)
    assert stored.plan_cursor == "2:0" and stored.planning
    assert store.get_batch(f"{job.job_id}_0003").items == ("doc-1-2",)
    listed = store.list_batches(job.job_id, limit=10)
    assert [b.index for b in listed.items] == [0, 1, 2, 3]


def test_a_page_out_of_turn_or_misnumbered_writes_nothing(store: JobStore) -> None:
    """A page before its predecessor, or numbering its batches wrongly, changes nothing."""
    job = planning_job(store)
    early = store.add_plan_page(job.job_id, page(job, 1, 2))
    assert (early.written, early.reason) == (False, "page 0 is not planned yet")
    with pytest.raises(InvalidArgument, match="is not batch 0"):
        store.add_plan_page(job.job_id, page(job, 0, 2, first=5))
    stored = store.get_job(job.job_id)
    assert (stored.total_batches, stored.plan_pages) == (0, 0)
    assert store.list_batches(job.job_id).total == 0


def test_batches_run_while_planning_and_the_last_page_finalizes(store: JobStore) -> None:
    """Every batch of the first page counts before the last page is written: the job
    waits for planning, and the last page finalizes it (once)."""
    job = planning_job(store)
    store.add_plan_page(job.job_id, page(job, 0, 4))
    assert not any(run(store, job, i).finalized for i in (0, 1))
    assert store.get_job(job.job_id).status is JobStatus.RUNNING
    last = store.add_plan_page(job.job_id, page(job, 1, 0, last=True, first=2))
    assert (last.written, last.finalized) == (True, True)
    done = store.get_job(job.job_id)
    assert (done.status, done.completed_batches, done.total_batches) == (JobStatus.COMPLETED, 2, 2)
    assert not done.planning


def test_the_last_batch_after_the_last_page_finalizes(store: JobStore) -> None:
    """When planning ends first, the last batch to count finalizes the job, once."""
    job = planning_job(store)
    store.add_plan_page(job.job_id, page(job, 0, 2))
    last = store.add_plan_page(job.job_id, page(job, 1, 2, last=True, first=1))
    assert (last.written, last.finalized) == (True, False)
    assert [run(store, job, i).finalized for i in (0, 1)] == [False, True]
    assert store.get_job(job.job_id).status is JobStatus.COMPLETED


def test_an_empty_manifest_completes_at_its_only_page(store: JobStore) -> None:
    """A manifest with no items completes its job at its only page."""
    job = planning_job(store)
    only = store.add_plan_page(job.job_id, page(job, 0, 0, last=True))
    assert only.finalized
    assert store.get_job(job.job_id).status is JobStatus.COMPLETED


def test_the_last_page_written_between_a_batch_counting_and_its_check(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race: the last batch has counted, and before it looks at the job the last page
    is written (and looks at the counts). Exactly one of the two finalizes."""
    worker, planner = store_factory(), store_factory()
    job = planning_job(worker)
    worker.add_plan_page(job.job_id, page(job, 0, 2))
    planned: list[Planned] = []
    seam = "_end_batch" if hasattr(worker, "_end_batch") else "_commit_outcome"
    count = getattr(worker, seam)

    def count_then_plan_the_last_page(*args: Any, **kwargs: Any) -> Any:
        counted = count(*args, **kwargs)
        planned.append(planner.add_plan_page(job.job_id, page(job, 1, 0, last=True, first=1)))
        return counted

    monkeypatch.setattr(worker, seam, count_then_plan_the_last_page)
    finished = run(worker, job, 0)
    assert finished.counted and planned[0].written
    assert [finished.finalized, planned[0].finalized].count(True) == 1
    done = worker.get_job(job.job_id)
    assert (done.status, done.completed_batches, done.total_batches) == (JobStatus.COMPLETED, 1, 1)


@pytest.mark.firestore_only("SQLite checks the counts under the lock the last page holds")
def test_the_last_batch_counting_between_the_last_page_and_its_check(
    store_factory: StoreFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The other seam: the last page is written, and before it reads the counts the last
    batch counts (and reads planning ended). Exactly one of the two finalizes."""
    worker, planner = store_factory(), store_factory()
    job = planning_job(worker)
    worker.add_plan_page(job.job_id, page(job, 0, 2))
    claim = worker.claim_batch(f"{job.job_id}_0000", lease=LEASE)
    finishes: list[Any] = []
    check = planner._finalize  # type: ignore[attr-defined]

    def let_the_batch_count_first(*args: Any, **kwargs: Any) -> Any:
        finishes.append(run_claimed(worker, claim))
        return check(*args, **kwargs)

    monkeypatch.setattr(planner, "_finalize", let_the_batch_count_first)
    last = planner.add_plan_page(job.job_id, page(job, 1, 0, last=True, first=1))
    assert [finishes[0].finalized, last.finalized].count(True) == 1
    assert worker.get_job(job.job_id).status is JobStatus.COMPLETED


def test_a_cancelled_job_takes_no_more_pages(store: JobStore) -> None:
    """A cancelled job's planner writes no further page, so no more batches appear."""
    job = planning_job(store)
    store.add_plan_page(job.job_id, page(job, 0, 2))
    store.cancel_job(job.job_id)
    refused = store.add_plan_page(job.job_id, page(job, 1, 2, first=1))
    assert (refused.written, refused.reason) == (False, "job is cancelled")
    assert store.get_job(job.job_id).total_batches == 1


def test_failing_planning_fails_the_job_naming_why_once(store: JobStore) -> None:
    """A planner that cannot go on fails the job once, with the reason, not twice."""
    job = planning_job(store)
    store.add_plan_page(job.job_id, page(job, 0, 2))
    assert store.fail_planning(job.job_id, 0, error="manifest m cannot be read") is None
    failed = store.fail_planning(job.job_id, 1, error="manifest m cannot be read")
    assert failed is not None
    assert (failed.status, failed.error, failed.planning) == (
        JobStatus.FAILED,
        "manifest m cannot be read",
        True,  # its plan never ended
    )
    assert store.fail_planning(job.job_id, 1, error="again") is None


def scheduled_job(store: JobStore) -> Job:
    later = utcnow() + timedelta(hours=1)
    job, _ = store.create_job(
        Job.new(
            source="noop",
            collection="docs",
            request={"batch_size": 2},
            planning=True,
            not_before=later,
        )
    )
    assert (job.status, job.planning, job.started_at) == (JobStatus.SCHEDULED, True, None)
    return job


def test_a_scheduled_job_is_planned_and_stays_scheduled_until_a_claim_at_its_start(
    store: JobStore,
) -> None:
    """Pages are written while the job waits for its start; no batch is claimed before it,
    and the first claim at the start starts the job."""
    job = scheduled_job(store)
    store.add_plan_page(job.job_id, page(job, 0, 4))
    last = store.add_plan_page(job.job_id, page(job, 1, 1, last=True, first=2))
    assert (last.written, last.finalized) == (True, False)
    planned = store.get_job(job.job_id)
    assert (planned.status, planned.planning, planned.total_batches) == (
        JobStatus.SCHEDULED,
        False,
        3,
    )
    assert job.not_before is not None
    early = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=job.not_before - LEASE)
    assert not early.granted and (early.reason or "").startswith("scheduled")
    claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=job.not_before)
    assert claim.granted and store.get_job(job.job_id).status is JobStatus.RUNNING


def test_a_scheduled_job_whose_plan_is_empty_completes_at_its_only_page(
    store: JobStore,
) -> None:
    """No batch to wait for: the last page completes it at once, as a plan made whole
    with no batch does."""
    job = scheduled_job(store)
    only = store.add_plan_page(job.job_id, page(job, 0, 0, last=True))
    assert only.finalized
    done = store.get_job(job.job_id)
    assert (done.status, done.total_batches) == (JobStatus.COMPLETED, 0)
    assert done.started_at is not None and done.finished_at is not None


def test_a_scheduled_job_whose_plan_fails_fails_naming_why(store: JobStore) -> None:
    """A scheduled job whose plan fails before its start fails with the reason."""
    job = scheduled_job(store)
    failed = store.fail_planning(job.job_id, 0, error="location /x does not exist")
    assert failed is not None
    assert (failed.status, failed.error) == (JobStatus.FAILED, "location /x does not exist")
