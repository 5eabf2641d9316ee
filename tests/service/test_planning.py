"""Planning as work (functions/planner.py) on the real SQLite store and local queue: the
test delivers the queue's tasks itself, each twice, as Cloud Tasks may. A job whose items
come from a manifest is planned page by page and ends exact; the manifest rule (README,
"Items from a manifest") holds; and planning survives its faults: a planner killed
mid-page or between its write and its enqueues, a task delivered twice, a task dropped."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from functions.config import DispatchSettings, Settings
from functions.errors import InvalidArgument
from functions.ingest_request import IngestRequest
from functions.ingestion.sources import LocalSource
from functions.jobs import Job, JobStatus, plan_batches, utcnow
from functions.planner import PAGE_ITEMS, SUBMIT_LISTING_ITEMS, page_batches, parse_plan_task
from functions.priority import Priority
from functions.queue.local import Attempt, LocalTaskQueue
from functions.service import FanoutService
from functions.store.protocol import JobQuery
from functions.store.sqlite import SqliteJobStore
from tests.support.gcs import MakeBucket

DISPATCH = DispatchSettings(
    max_attempts=3,
    min_backoff=timedelta(seconds=0.1),
    max_backoff=timedelta(seconds=1),
    deadline=timedelta(seconds=10),
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        sqlite_path=tmp_path / "fanout.sqlite3",
        dispatch=DISPATCH,
        allowed_roots=(tmp_path,),
        enqueue_grace=timedelta(0),
    )


@pytest.fixture
def queue(settings: Settings) -> Iterator[LocalTaskQueue]:
    queue = LocalTaskQueue(settings.sqlite_path, settings.dispatch)
    yield queue
    queue.close()


@pytest.fixture
def service(settings: Settings, queue: LocalTaskQueue) -> Iterator[FanoutService]:
    store = SqliteJobStore(settings.sqlite_path)
    yield FanoutService(store, queue, settings)
    store.close()


def manifest(tmp_path: Path, lines: list[str], name: str = "manifest.txt") -> Path:
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


def submit(service: FanoutService, path: Path | str, batch_size: int = 10) -> Job:
    job, created = service.submit(
        IngestRequest(source="noop", collection="c", items_from=str(path), batch_size=batch_size)
    )
    assert created
    return job


def deliver(service: FanoutService, queue: LocalTaskQueue, *, times: int = 2) -> int:
    """Deliver every task the queue holds (and those they enqueue), each `times` times.
    Returns how many tasks were delivered."""
    delivered = 0
    while tasks := queue.claim(500):
        for task in tasks:
            for _ in range(times):
                deliver_one(service, task.body)
        queue.settle_many([(task, Attempt(200)) for task in tasks])
        delivered += len(tasks)
    return delivered


def deliver_one(service: FanoutService, body: bytes) -> None:
    plan = parse_plan_task(json.loads(body))
    if plan is not None:
        service.plan_page(plan.job_id, plan.page, worker_url=plan.worker_url)
    else:
        service.run_batch(json.loads(body)["batch_id"])


def finalized_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The job-finalized lines logged (each test runs one job)."""
    return [
        r.getMessage()
        for r in caplog.records
        if getattr(r, "json_fields", {}).get("event") == "job_finalized"
    ]


def assert_exact(service: FanoutService, job: Job, items: int, batch_size: int) -> Job:
    done = service.store.get_job(job.job_id)
    batches = -(-items // batch_size)
    assert (done.status, done.planning) == (JobStatus.COMPLETED, False)
    assert (done.total_batches, done.completed_batches, done.planned_items) == (
        batches,
        batches,
        items,
    )
    assert done.stats.processed == items
    return done


def test_a_manifest_job_is_planned_by_pages_and_ends_exact(
    service: FanoutService,
    queue: LocalTaskQueue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A three-page manifest is planned page by page after the submit and ends with exact totals."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    items = PAGE_ITEMS * 2 + 7  # three pages at batch size 100
    path = manifest(tmp_path, [f"doc-{i}" for i in range(items)])
    job = submit(service, path, batch_size=100)
    assert (job.status, job.planning, job.total_batches) == (JobStatus.RUNNING, True, 0)
    assert queue.get(f"{job.job_id}-plan-0") is not None
    assert service.store.list_batches(job.job_id).total == 0
    deliver(service, queue)
    done = assert_exact(service, job, items, 100)
    assert done.plan_pages == 3
    assert len(finalized_lines(caplog)) == 1


def test_the_manifest_rule_blank_lines_skipped_duplicates_kept(
    service: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """A manifest's blank lines are skipped, surrounding spaces trimmed, and repeated items kept."""
    path = tmp_path / "m.txt"
    path.write_bytes(b"a\n\n   \r\n  b  \r\na\nc")  # no final line end either
    job = submit(service, path, batch_size=2)
    deliver(service, queue)
    assert_exact(service, job, 4, 2)
    batches = service.store.list_batches(job.job_id).items
    assert [b.items for b in batches] == [("a", "b"), ("a", "c")]


def test_a_line_too_long_fails_the_job_naming_the_line(
    service: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """A manifest line over the limit fails the job naming its line number, and writes no page."""
    path = manifest(tmp_path, ["a", "", "b", "x" * 100_000, "c"])
    job = submit(service, path, batch_size=1)
    deliver(service, queue)
    failed = service.store.get_job(job.job_id)
    assert failed.status is JobStatus.FAILED and failed.planning  # its plan never ended
    assert failed.error == (
        f"manifest {path}: line 4 is longer than 4096 bytes (one item reference a line)"
    )
    assert failed.total_batches == 0  # the page holding it was never written
    with pytest.raises(InvalidArgument, match="failed while planning"):
        service.retry(job.job_id)  # it would end with part of its items


def test_a_manifest_that_cannot_be_read_fails_the_job_by_name(
    service: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """A manifest gone before planning fails the job naming the file."""
    path = manifest(tmp_path, ["a", "b"])
    job = submit(service, path)
    path.unlink()
    deliver(service, queue)
    failed = service.store.get_job(job.job_id)
    assert failed.status is JobStatus.FAILED
    assert failed.error == f"manifest {path} cannot be read: it does not exist"


@pytest.mark.parametrize(
    ("items_from", "problem"),
    [
        ("/etc/hostname", "outside the allowed roots"),
        ("gs://not-allowed/m.txt", "not-allowed"),
        ("ftp://x/m.txt", "use gs://bucket/object or a local path"),
        ("{tmp}", "is not a file"),
        ("{tmp}/missing.txt", "does not exist"),
    ],
)
def test_a_manifest_outside_the_roots_is_refused_and_creates_nothing(
    service: FanoutService, tmp_path: Path, items_from: str, problem: str
) -> None:
    """A manifest that cannot be planned is refused at submit, naming why; no job is made."""
    with pytest.raises(InvalidArgument, match=problem):
        submit(service, items_from.format(tmp=tmp_path))
    assert service.store.list_jobs(JobQuery.build()).total == 0


def test_a_dropped_planner_task_is_enqueued_again_by_the_sweeper(
    service: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """A planner task the queue dropped is enqueued again by the sweeper, and the job ends exact."""
    path = manifest(tmp_path, [f"doc-{i}" for i in range(25)])
    job = submit(service, path)
    for attempt in range(1, DISPATCH.max_attempts + 1):  # none reaches the worker
        later = utcnow() + attempt * timedelta(minutes=1)
        (task,) = queue.claim(10, now=later)
        queue.settle(task, Attempt(None, "connection refused"), now=later)
    assert queue.task_gone(f"{job.job_id}-plan-0")
    assert service.store.get_job(job.job_id).plan_pages == 0
    assert service.sweep().planned == 1
    deliver(service, queue)
    assert_exact(service, job, 25, 10)


KILLER = """
import os, signal, sys
from functions.config import Settings
from functions.queue.local import LocalTaskQueue
from functions.service import FanoutService
from functions.store.sqlite import SqliteJobStore
import functions.store.sqlite as sqlite_store

path, root, job_id, where = sys.argv[1:]
settings = Settings(sqlite_path=path, allowed_roots=(root,))
store = SqliteJobStore(path)
queue = LocalTaskQueue(path, settings.dispatch)

def die():
    os.kill(os.getpid(), signal.SIGKILL)

if where == "mid-page":  # after the page's batches are inserted, before its commit
    real = store.db.transaction
    from contextlib import contextmanager
    @contextmanager
    def dying(*args, **kwargs):
        with real(*args, **kwargs) as conn:
            class Conn:
                def execute(self, sql, *params):
                    if sql.startswith("UPDATE jobs SET total_batches"):
                        die()
                    return conn.execute(sql, *params)
                def __getattr__(self, name):
                    return getattr(conn, name)
            yield Conn()
    store.db.transaction = dying
else:  # after the page is written, before its tasks are enqueued
    queue.enqueue = lambda tasks, **kw: die()
FanoutService(store, queue, settings).plan_page(job_id, 1)
"""


@pytest.mark.parametrize("where", ["mid-page", "before-enqueue"])
def test_a_planner_killed_mid_page_leaves_a_job_that_still_ends_exact(
    service: FanoutService,
    queue: LocalTaskQueue,
    settings: Settings,
    tmp_path: Path,
    where: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Page 1 is delivered to a planner that is killed (SIGKILL) mid-page or after writing
    it; the queue then delivers it again (and everything else twice)."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    items = page_batches(1) * 2 + 3
    path = manifest(tmp_path, [f"doc-{i}" for i in range(items)])
    job = submit(service, path, batch_size=1)
    service.plan_page(job.job_id, 0)
    killed = subprocess.run(
        [sys.executable, "-c", KILLER, str(settings.sqlite_path), str(tmp_path), job.job_id, where],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    after = service.store.get_job(job.job_id)
    written = where == "before-enqueue"
    assert after.plan_pages == (2 if written else 1)
    assert after.total_batches == page_batches(1) * (2 if written else 1)
    deliver(service, queue)  # page 1's task is still queued: delivered again
    assert_exact(service, job, items, 1)
    assert len(finalized_lines(caplog)) == 1


def test_a_gs_manifest_is_read_page_by_page_by_byte_ranges(
    settings: Settings, queue: LocalTaskQueue, make_bucket: MakeBucket
) -> None:
    """The same job from a manifest in Cloud Storage (fake-gcs-server): every page is a
    seek and a read of its own; a line too long there fails the job alike."""
    lines = [f"gs://elsewhere/doc-{i}.txt" for i in range(PAGE_ITEMS + 5)]
    bucket = make_bucket(
        {
            "lists/m.txt": "".join(f"{line}\n" for line in lines).encode(),
            "lists/long.txt": b"a\n" + b"x" * 5000 + b"\n",
        }
    )
    on_gcs = replace(settings, ingestion=replace(settings.ingestion, allowed_buckets=(bucket,)))
    store = SqliteJobStore(settings.sqlite_path)
    service = FanoutService(store, queue, on_gcs)
    try:
        job = submit(service, f"gs://{bucket}/lists/m.txt", batch_size=1_000)
        deliver(service, queue, times=1)
        done = assert_exact(service, job, len(lines), 1_000)
        assert done.plan_pages == 2
        last = store.get_batch(f"{job.job_id}_{done.total_batches - 1:04d}")
        assert last.items == tuple(lines[-5:])

        long = submit(service, f"gs://{bucket}/lists/long.txt")
        deliver(service, queue, times=1)
        failed = store.get_job(long.job_id)
        assert failed.status is JobStatus.FAILED
        assert failed.error is not None and "line 2 is longer than 4096 bytes" in failed.error
        with pytest.raises(InvalidArgument, match="not-this-one"):
            submit(service, "gs://not-this-one/m.txt")
    finally:
        store.close()


# -- a location listed by pages -------------------------------------------------------------

# Nine items a page at batch size 3: three batches.
PAGE = 10


@pytest.fixture
def paged(settings: Settings, queue: LocalTaskQueue) -> Iterator[FanoutService]:
    """The service with pages of `PAGE` items, so that small folders take several."""
    store = SqliteJobStore(settings.sqlite_path)
    yield FanoutService(store, queue, replace(settings, plan_page_items=PAGE))
    store.close()


def folder(root: Path) -> list[str]:
    """A tree of 26 files whose walk order is not string order ("a/…" before "a-b.txt"),
    one of them too big to share a batch; plus what a listing skips. Returns the listing."""
    root.mkdir()
    names = [f"a/{i}.txt" for i in range(7)] + ["a-b.txt", "a/deep/x.txt", "a/deep/y.txt"]
    names += [f"b/{i:02d}.txt" for i in range(12)] + ["c.txt", "d/e/f.txt", "d/g.txt", "z.txt"]
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * (4096 if name == "b/05.txt" else 10))
    (root / ".hidden").mkdir()
    (root / ".hidden" / "skipped.txt").write_text("x")
    return [item.uri for item in LocalSource(str(root), replace_roots(root)).list_items()]


def replace_roots(root: Path) -> Settings:
    return Settings(allowed_roots=(root,))


def sizes_of(listing: list[str]) -> list[int]:
    return [Path(uri).stat().st_size for uri in listing]


def submitted_listed(caplog: pytest.LogCaptureFixture) -> list[object]:
    """The names each submit read from its location (the submitted lines)."""
    return [
        r.json_fields.get("listed")  # type: ignore[attr-defined]
        for r in caplog.records
        if getattr(r, "json_fields", {}).get("event") == "submitted"
    ]


def location_job(service: FanoutService, location: str, **fields: object) -> Job:
    request = IngestRequest.model_validate(
        {"source": "noop", "collection": "c", "location": location, "batch_size": 3} | fields
    )
    job, created = service.submit(request)
    assert created
    return job


def assert_planned_as_whole(
    service: FanoutService, job: Job, listing: list[str], sizes: list[int]
) -> Job:
    """The job ended exact, its batches the same as a plan of the whole listing in one go
    (the same items, in the same batches, each counted once), made from several pages."""
    done = service.store.get_job(job.job_id)
    batches = service.store.list_batches(job.job_id, limit=200).items
    max_bytes = job.request["max_batch_bytes"] or service.settings.ingestion.max_batch_bytes
    whole = plan_batches(job.job_id, listing, 3, sizes=sizes, max_bytes=max_bytes)
    assert [b.items for b in batches] == [b.items for b in whole]
    assert (done.status, done.planning, done.planned_items) == (
        JobStatus.COMPLETED,
        False,
        len(listing),
    )
    assert done.total_batches == done.completed_batches == len(whole)
    assert done.stats.processed == len(listing) and done.plan_pages > 1
    return done


def test_a_folder_larger_than_a_page_is_planned_by_pages_and_ends_exact(
    paged: FanoutService,
    queue: LocalTaskQueue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The submit reads one page of the listing (and the name after it), no more, and
    records the job as planning; the planner pages resume the walk where the page before
    stopped, across directories, each page delivered twice; a file over max_batch_bytes
    runs alone as when planned whole."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    listing = folder(tmp_path / "docs")
    job = location_job(paged, str(tmp_path / "docs"), max_batch_bytes=2048)
    assert submitted_listed(caplog) == [PAGE]
    assert (job.status, job.planning, job.total_batches) == (JobStatus.RUNNING, True, 0)
    assert paged.store.list_batches(job.job_id).total == 0
    deliver(paged, queue)
    done = assert_planned_as_whole(paged, job, listing, sizes_of(listing))
    assert listing[9] == str(tmp_path / "docs" / "a-b.txt")  # after the nine under a/
    alone = (str(tmp_path / "docs" / "b" / "05.txt"),)
    assert alone in [b.items for b in paged.store.list_batches(job.job_id, limit=200).items]
    assert done.plan_pages == 4  # 3 + 3 + 3 + 1 batches (b/05.txt runs alone)
    assert len(finalized_lines(caplog)) == 1


def test_a_listing_within_one_page_is_planned_in_the_request(
    paged: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """The fast path: a listing that ends within the first page is written as the submit
    answers, no planner task."""
    root = tmp_path / "small"
    root.mkdir()
    for i in range(PAGE - 1):
        (root / f"{i}.txt").write_text("x")
    job = location_job(paged, str(root))
    assert (job.planning, job.total_batches, job.plan_pages) == (False, 3, 0)
    assert queue.get(f"{job.job_id}-plan-0") is None
    deliver(paged, queue)
    assert paged.store.get_job(job.job_id).status is JobStatus.COMPLETED


def test_a_dropped_planner_task_of_a_listing_is_enqueued_again_by_the_sweeper(
    paged: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """Page 1's task never reaches the worker: the sweeper enqueues it again, and the
    listing resumes where page 0 stopped. A low job's planner tasks wait in the high
    queue (tiny, and they gate the job), its batches in the low one."""
    listing = folder(tmp_path / "docs")
    job = location_job(paged, str(tmp_path / "docs"), max_batch_bytes=2048, priority="low")
    first_page = queue.get(f"{job.job_id}-plan-0")
    assert first_page is not None and first_page.priority is Priority.HIGH
    plan_task = f"{job.job_id}-plan-1"
    for attempt in range(1, DISPATCH.max_attempts + 2):  # page 0 and its batches run
        later = utcnow() + attempt * timedelta(minutes=1)
        for task in queue.claim(100, now=later):
            if task.name == plan_task:
                queue.settle(task, Attempt(None, "connection refused"), now=later)
            else:
                deliver_one(paged, task.body)
                queue.settle(task, Attempt(200), now=later)
    assert queue.task_gone(plan_task)
    assert paged.store.get_job(job.job_id).plan_pages == 1
    assert paged.sweep().planned == 1
    batch_task = queue.get(f"{job.job_id}_0000-g0-a0")
    assert batch_task is not None and batch_task.priority is Priority.LOW
    deliver(paged, queue)
    assert_planned_as_whole(paged, job, listing, sizes_of(listing))


def test_a_listing_gone_while_planning_fails_the_job_by_name(
    paged: FanoutService, queue: LocalTaskQueue, tmp_path: Path
) -> None:
    """The folder was there at submit and is gone when page 0 is planned: the job fails,
    naming it, never half-planned and silent."""
    root = tmp_path / "docs"
    folder(root)
    job = location_job(paged, str(root))
    shutil.rmtree(root)
    deliver(paged, queue)
    failed = paged.store.get_job(job.job_id)
    assert (failed.status, failed.total_batches) == (JobStatus.FAILED, 0)
    assert failed.error == f"location {str(root)!r} does not exist"


def test_a_gs_prefix_larger_than_a_page_is_planned_by_pages_and_ends_exact(
    settings: Settings,
    queue: LocalTaskQueue,
    make_bucket: MakeBucket,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The same on Cloud Storage (fake-gcs-server): each page lists from the name after the
    page before (`start_offset`); names outside the prefix and "folder/" placeholders are
    not items; every task delivered twice."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    names = [f"docs/{i:02d}.txt" for i in range(25)] + [f"docs/sub/{c}.txt" for c in "abc"]
    objects = {name: b"x" for name in names} | {"docs/sub/": b"", "docs2/no.txt": b"x"}
    bucket = make_bucket(objects)
    on_gcs = replace(
        settings,
        plan_page_items=PAGE,
        ingestion=replace(settings.ingestion, allowed_buckets=(bucket,)),
    )
    store = SqliteJobStore(settings.sqlite_path)
    service = FanoutService(store, queue, on_gcs)
    try:
        job = location_job(service, f"gs://{bucket}/docs/")
        assert submitted_listed(caplog) == [PAGE] and job.planning
        deliver(service, queue)
        listing = [f"gs://{bucket}/{name}" for name in names]
        done = assert_planned_as_whole(service, job, listing, [1] * len(names))
        assert done.plan_pages == 4  # 28 items, 9 a page
    finally:
        store.close()


def test_a_submit_reads_a_thousand_names_of_a_listing_at_most(
    service: FanoutService,
    queue: LocalTaskQueue,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With the default page size (20,000): a folder of 1,500 files is not listed whole by
    its submit, which reads 1,000 names and the one after; the planner plans the rest."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    root = tmp_path / "many"
    root.mkdir()
    for i in range(SUBMIT_LISTING_ITEMS + 500):
        (root / f"{i:05d}.txt").touch()
    job = location_job(service, str(root), batch_size=100)
    assert submitted_listed(caplog) == [SUBMIT_LISTING_ITEMS + 1] and job.planning
    deliver(service, queue, times=1)
    done = service.store.get_job(job.job_id)
    assert (done.status, done.total_batches, done.planned_items) == (
        JobStatus.COMPLETED,
        15,
        SUBMIT_LISTING_ITEMS + 500,
    )
    assert done.plan_pages == 1
