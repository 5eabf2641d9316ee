"""The scheduled cleanup's dry run, on the real SQLite store and local queue with a clock the
test moves: every kind of stuck work and two jobs past the retention period. The dry run
reports them and changes nothing; the real run then does exactly what it said."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.callbacks import CallbackSender
from functions.config import DispatchSettings, Settings, retry_window
from functions.errors import JobNotFound
from functions.ingest_request import IngestRequest
from functions.jobs import Job, JobStatus
from functions.queue.local import LocalTaskQueue
from functions.service import SUMMARY_IDS, FanoutService
from functions.store.sqlite import SqliteJobStore
from tests.support.callbacks import SECRET, Receiver, receivers
from tests.support.clock import ManualClock
from tests.support.services import RefusingQueue

DISPATCH = DispatchSettings(
    max_attempts=3,
    min_backoff=timedelta(seconds=0.1),
    max_backoff=timedelta(seconds=1),
    deadline=timedelta(seconds=10),
)
SETTINGS = Settings(
    dispatch=DISPATCH,
    enqueue_grace=timedelta(seconds=5),
    max_dispatch_rounds=2,
    lease=timedelta(minutes=10),
    retention=timedelta(days=1),
    planning_timeout=timedelta(minutes=15),
    callback_secret=SECRET,
)


@dataclass
class World:
    service: FanoutService
    queue: RefusingQueue
    clock: ManualClock
    path: Path

    @property
    def store(self) -> SqliteJobStore:
        store = self.service.store
        assert isinstance(store, SqliteJobStore)
        return store

    def submit(self, batches: int, **request: Any) -> Job:
        items = [f"doc-{i}" for i in range(batches)]
        job, _ = self.service.submit(
            IngestRequest(source="noop", collection="c", items=items, batch_size=1, **request)
        )
        return job

    def finished(self) -> Job:
        job = self.submit(1)
        assert self.service.run_batch(f"{job.job_id}_0000").finalized
        return job

    def claim(self, job: Job, index: int, *, ago: timedelta) -> None:
        now = self.clock() - ago
        batch_id = f"{job.job_id}_{index:04d}"
        assert self.store.claim_batch(batch_id, lease=SETTINGS.lease, now=now).granted


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    yield from receivers()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = replace(SETTINGS, sqlite_path=tmp_path / "fanout.sqlite3")
    queue = RefusingQueue(LocalTaskQueue(settings.sqlite_path, DISPATCH))
    store = SqliteJobStore(settings.sqlite_path, retention=settings.retention)
    sender = CallbackSender(
        allow_local_http=True,
        secret=SECRET,
        timeout=5.0,
        wait_initial=0.0,
        wait_max=0.0,
        wait_jitter=0.0,
    )
    clock = ManualClock()
    service = FanoutService(store, queue, settings, callbacks=sender, clock=clock)
    yield World(service, queue, clock, settings.sqlite_path)
    store.close()
    queue.close()


def _state(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the file (the store's and the queue's)."""
    conn = sqlite3.connect(path)
    try:
        tables = [
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}"), key=repr) for t in tables}
    finally:
        conn.close()


def _swept_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    fields = [getattr(r, "json_fields", {}) for r in caplog.records]
    return [f for f in fields if f.get("event") == "swept"]


def test_a_dry_run_reports_the_work_and_the_real_run_does_exactly_that(
    world: World, receiver: Callable[..., Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    """Two jobs past the retention period; a batch whose worker stopped and one whose
    attempts are used up; batches the queue refused at submit; dropped tasks (to
    re-dispatch, of a cancelled job, and with every round used up); a job whose batches
    ended but which was never finalized; a job never planned; a scheduled job due long ago
    that no delivery started (and one not due, left alone); a planning job whose planner
    task is gone; a callback owed. The dry run
    reports each count with its first ids and leaves every row of the file as it was; the
    real run reports the same and leaves the state that says it did it."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    clock = world.clock
    old = [world.finished()]
    clock.advance(timedelta(minutes=1))
    old.append(world.finished())
    clock.advance(SETTINGS.retention + timedelta(hours=1))

    # Enqueued now: dropped once the queue's whole retry window (and the grace) has passed.
    dropped = world.submit(2)
    # Scheduled: one due long before the sweep, which no delivery started; one not due.
    due = world.submit(2, not_before=(clock() + timedelta(minutes=1)).isoformat())
    waiting = world.submit(1, not_before=(clock() + timedelta(days=2)).isoformat())
    cancelled = world.submit(2)
    world.service.cancel(cancelled.job_id)
    rounds_used = world.submit(1)
    batch = world.store.get_batch(f"{rounds_used.job_id}_0000")
    for _ in range(SETTINGS.max_dispatch_rounds):
        bumped = world.store.mark_redispatched(rounds_used, batch, now=clock())
        assert bumped is not None
        batch = bumped
    world.queue.down = True
    refused = world.submit(2)  # never enqueued
    world.queue.down = False
    hook = receiver(answers=(503,))
    owed = world.submit(1, callback_url=hook.url())
    assert world.service.run_batch(f"{owed.job_id}_0000").finalized
    unplanned, _ = world.store.create_job(Job.new(source="noop", collection="c", now=clock()))
    # Planning by pages, its planner task never enqueued (as if the queue dropped it).
    replanned, _ = world.store.create_job(
        Job.new(source="noop", collection="c", now=clock(), planning=True)
    )
    clock.advance(SETTINGS.planning_timeout + timedelta(minutes=1))
    assert SETTINGS.planning_timeout > retry_window(DISPATCH) + SETTINGS.enqueue_grace
    assert SETTINGS.planning_timeout > SETTINGS.lease

    stuck = world.submit(2)
    world.claim(stuck, 0, ago=2 * SETTINGS.lease)  # its worker stopped
    for ago in (10, 8, 6):  # three attempts, each lease expired
        world.claim(stuck, 1, ago=ago * SETTINGS.lease)
    unfinalized = world.submit(1)
    world.claim(unfinalized, 0, ago=timedelta(0))
    # Counted, then its worker stopped before finalizing: the batch ends by itself.
    world.store.db.write(
        "UPDATE batches SET status = 'completed' WHERE job_id = ?", (unfinalized.job_id,)
    )
    recent = world.finished()  # finished within the retention period: kept

    before = _state(world.path)
    caplog.clear()
    dry = world.service.cleanup(dry_run=True)
    assert _state(world.path) == before
    expected = {
        "requeued": [f"{stuck.job_id}_0000"],
        "failed": sorted([f"{stuck.job_id}_0001", f"{rounds_used.job_id}_0000"]),
        "enqueued": [f"{refused.job_id}_0000", f"{refused.job_id}_0001"],
        "redispatched": [f"{dropped.job_id}_0000", f"{dropped.job_id}_0001"],
        "cancelled": [f"{cancelled.job_id}_0000", f"{cancelled.job_id}_0001"],
        "finalized": [unfinalized.job_id],
        "abandoned": [unplanned.job_id],
        "started": [due.job_id],
        "planned": [replanned.job_id],
        "callbacks": [owed.job_id],
        "deleted": sorted([old[0].job_id, old[1].job_id]),
    }
    summary = dry.to_dict()
    assert summary["dry_run"] is True
    assert {name: sorted(ids) for name, ids in summary["ids"].items()} == expected
    assert {name: summary[name] for name in expected} == {k: len(v) for k, v in expected.items()}
    assert summary["ids"]["deleted"] == [old[0].job_id, old[1].job_id]  # first finished first
    (line,) = _swept_lines(caplog)
    assert line["dry_run"] is True and line["deleted"] == 2 and line["requeued"] == 1
    assert line["ids"]["deleted"] == summary["ids"]["deleted"]

    caplog.clear()
    done = world.service.cleanup()
    assert done.to_dict() == summary | {"dry_run": False}
    (line,) = _swept_lines(caplog)
    assert line["dry_run"] is False and line["deleted"] == 2

    for job in old:
        with pytest.raises(JobNotFound):
            world.store.get_job(job.job_id)
    assert world.store.get_job(recent.job_id).status is JobStatus.COMPLETED
    assert world.store.get_batch(f"{stuck.job_id}_0001").status is JobStatus.FAILED
    assert world.store.get_job(rounds_used.job_id).status is JobStatus.FAILED
    assert all(b.enqueued_at for b in world.store.list_batches(refused.job_id).items)
    assert {b.dispatch_rounds for b in world.store.list_batches(dropped.job_id).items} == {1}
    assert world.store.batch_counts(world.store.get_job(cancelled.job_id)).cancelled == 2
    assert world.store.get_job(unfinalized.job_id).status is JobStatus.COMPLETED
    assert world.store.get_job(unplanned.job_id).status is JobStatus.FAILED
    assert world.store.get_job(due.job_id).status is JobStatus.RUNNING
    assert world.store.get_job(waiting.job_id).status is JobStatus.SCHEDULED
    assert world.store.get_job(owed.job_id).callback_attempts == 2
    tasks = {row[0] for row in world.queue.inner.db.conn().execute("SELECT name FROM queue_tasks")}
    assert f"{replanned.job_id}-plan-0-r{int(clock().timestamp())}" in tasks
    assert f"{stuck.job_id}_0000-g0-a1" in tasks  # the expired attempt's task again


def test_a_dry_run_with_nothing_to_do_says_so(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """A store with only finished, recent jobs: every count is zero, every id list empty,
    and the line says there is nothing to do."""
    caplog.set_level(logging.INFO, logger="fanout.events")
    world.finished()
    summary = world.service.cleanup(dry_run=True).to_dict()
    names = ["requeued", "failed", "enqueued", "redispatched", "cancelled", "finalized"]
    names += ["abandoned", "started", "planned", "callbacks", "deleted"]
    assert summary == {
        **dict.fromkeys(names, 0),
        "dry_run": True,
        "ids": {name: [] for name in names},
    }
    messages = [r.getMessage() for r in caplog.records if "swept" in r.getMessage()]
    assert messages == ["swept: dry run, would do: nothing; nothing was changed"]


def test_the_summary_names_only_the_first_few_ids(world: World) -> None:
    """Eight batches the queue refused: the count says 8, the ids name the first few."""
    world.queue.down = True
    job = world.submit(8)
    world.queue.down = False
    world.clock.advance(SETTINGS.enqueue_grace + timedelta(seconds=1))
    dry = world.service.cleanup(dry_run=True)
    assert dry.enqueued == 8
    assert list(dry.ids["enqueued"]) == [f"{job.job_id}_{i:04d}" for i in range(SUMMARY_IDS)]
    assert world.service.cleanup().to_dict() == dry.to_dict() | {"dry_run": False}
