"""Listing jobs and batches: filters, totals, keyset pagination, bad arguments."""

from __future__ import annotations

import pytest

from functions.errors import InvalidArgument, InvalidCursor, JobNotFound
from functions.jobs import JobStatus
from functions.paging import encode_cursor
from functions.priority import Priority
from functions.store.protocol import MAX_PAGE_SIZE, JobQuery, JobStore
from tests.contract.factories import new_job, planned_job, run


def test_pagination_visits_every_job_once_while_jobs_are_created(store: JobStore) -> None:
    """Walking pages of 7 while new jobs arrive between pages sees each pre-existing job
    exactly once, newest first, and never a job created after the walk began."""
    existing = [new_job(store).job_id for _ in range(30)]
    seen: list[str] = []
    cursor: str | None = None
    arrived: list[str] = []
    while True:
        page = store.list_jobs(JobQuery.build(limit=7, cursor=cursor))
        seen.extend(j.job_id for j in page.items)
        arrived.append(new_job(store).job_id)
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == sorted(existing, reverse=True)
    assert len(arrived) == 5


def test_filters_and_totals(store: JobStore) -> None:
    """Filters on status (one or several), source and client combine; `total` counts every
    match across pages."""
    running = [planned_job(store, 1, source="web").job_id for _ in range(3)]
    done = planned_job(store, 1, source="web")
    run(store, done, 0)
    pending = [new_job(store, source="gcs").job_id for _ in range(4)]
    new_job(store, source="gcs", client_id="acme", request_id="1")

    page = store.list_jobs(JobQuery.build(statuses=["running"], limit=2))
    assert page.total == 3 and len(page.items) == 2 and page.next_cursor
    assert {j.job_id for j in page.items} <= set(running)
    both = store.list_jobs(JobQuery.build(statuses=["running", "completed"]))
    assert both.total == 4 and both.next_cursor is None
    assert {j.status for j in both.items} == {JobStatus.RUNNING, JobStatus.COMPLETED}
    gcs = store.list_jobs(JobQuery.build(source="gcs", statuses=["pending"]))
    assert gcs.total == 5 and set(pending) < {j.job_id for j in gcs.items}
    assert store.list_jobs(JobQuery.build(client_id="acme")).total == 1
    assert store.list_jobs(JobQuery.build(source="web", statuses=["pending"])).total == 0
    everything = store.list_jobs(JobQuery.build(limit=MAX_PAGE_SIZE))
    assert everything.total == 9
    ids = [j.job_id for j in everything.items]
    assert ids == sorted(ids, reverse=True)
    listed_done = next(j for j in everything.items if j.job_id == done.job_id)
    assert listed_done.completed_batches == 1


def test_priority_is_kept_and_filters_with_the_others(store: JobStore) -> None:
    """A job keeps its priority through creation, planning and its end; `priority`
    filters alone and with status and source, and `total` counts the matches."""
    high = planned_job(store, 1, priority=Priority.HIGH)
    run(store, high, 0)
    low = [planned_job(store, 1, source="web", priority=Priority.LOW) for _ in range(2)]
    normal = new_job(store)

    assert store.get_job(high.job_id).priority is Priority.HIGH
    assert store.get_job(high.job_id).status is JobStatus.COMPLETED
    assert store.get_job(normal.job_id).priority is Priority.NORMAL
    lows = store.list_jobs(JobQuery.build(priority="low"))
    assert lows.total == 2 and {j.job_id for j in lows.items} == {j.job_id for j in low}
    assert {j.priority for j in lows.items} == {Priority.LOW}
    done_high = store.list_jobs(JobQuery.build(priority="high", statuses=["completed"]))
    assert [j.job_id for j in done_high.items] == [high.job_id]
    assert store.list_jobs(JobQuery.build(priority="high", statuses=["running"])).total == 0
    assert store.list_jobs(JobQuery.build(priority="low", source="web")).total == 2
    assert store.list_jobs(JobQuery.build(priority="normal", source="web")).total == 0
    assert store.list_jobs(JobQuery.build(priority="normal")).total == 1


def test_listed_running_jobs_show_true_counts(store: JobStore) -> None:
    """A running job in a listing shows the batches counted so far."""
    job = planned_job(store, 3)
    run(store, job, 0)
    run(store, job, 2)
    listed = store.list_jobs(JobQuery.build()).items[0]
    assert listed.status is JobStatus.RUNNING and listed.completed_batches == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"statuses": ["bogus"]}, "unknown status 'bogus'"),
        ({"priority": "urgent"}, "unknown priority 'urgent'; expected one of: high, normal, low"),
        ({"limit": 0}, "limit must be between 1 and 200"),
        ({"limit": MAX_PAGE_SIZE + 1}, "limit must be between 1 and 200"),
    ],
)
def test_bad_query_arguments_are_refused(kwargs: dict[str, object], error: str) -> None:
    """Unknown statuses and page sizes out of 1..200 raise InvalidArgument naming them."""
    with pytest.raises(InvalidArgument, match=error):
        JobQuery.build(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "e30",
        encode_cursor("batches", 3),
        encode_cursor("jobs", "../x"),
        encode_cursor("jobs", 5),
    ],
)
def test_malformed_cursors_are_refused(store: JobStore, cursor: str) -> None:
    """Cursors that this listing did not produce raise InvalidCursor."""
    new_job(store)
    with pytest.raises(InvalidCursor):
        store.list_jobs(JobQuery.build(cursor=cursor))


def test_batches_are_listed_in_order_by_page_and_status(store: JobStore) -> None:
    """A job's batches page in index order; a status filter narrows them and the total."""
    job = planned_job(store, 12)
    for i in (1, 5, 6):
        run(store, job, i)
    first = store.list_batches(job.job_id, limit=5)
    assert [b.index for b in first.items] == [0, 1, 2, 3, 4] and first.total == 12
    rest = store.list_batches(job.job_id, limit=10, cursor=first.next_cursor)
    assert [b.index for b in rest.items] == list(range(5, 12)) and rest.next_cursor is None
    done = store.list_batches(job.job_id, status=JobStatus.COMPLETED, limit=2)
    assert [b.index for b in done.items] == [1, 5] and done.total == 3
    tail = store.list_batches(job.job_id, status=JobStatus.COMPLETED, cursor=done.next_cursor)
    assert [b.index for b in tail.items] == [6]


def test_bad_batch_listing_arguments_are_refused(store: JobStore) -> None:
    """Unknown jobs, bad limits and foreign cursors raise typed errors."""
    job = planned_job(store, 2)
    with pytest.raises(JobNotFound):
        store.list_batches("20260101-000000-000000-deadbeef")
    with pytest.raises(InvalidArgument):
        store.list_batches(job.job_id, limit=0)
    with pytest.raises(InvalidCursor):
        store.list_batches(job.job_id, cursor=encode_cursor("jobs", job.job_id))
