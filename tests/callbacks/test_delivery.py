"""Callback delivery as the service does it, on the real SQLite store and real local
receivers: the finalizer's attempt, the sweeper's redeliveries (a lease after each attempt,
at most `callback_max_sweeps`), and nothing after a 2xx. Time is a clock the test moves."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from functions.callbacks import CallbackSender
from functions.config import Settings
from functions.ingest_request import IngestRequest
from functions.jobs import BatchOutcome, Job, JobStatus
from functions.queue.local import LocalTaskQueue
from functions.service import FanoutService, SweepReport
from functions.signing import verify
from functions.store.protocol import FinishResult
from functions.store.sqlite import SqliteJobStore
from tests.support.callbacks import SECRET, Receiver, loopback_alias_available, receivers
from tests.support.clock import ManualClock

LEASE = timedelta(minutes=10)
AFTER_LEASE = LEASE + timedelta(seconds=1)


class Stack:
    """A service on one SQLite file; `another()` is a second instance on the same file (a
    second cleanup_jobs instance)."""

    def __init__(self, tmp_path: Path, settings: Settings, clock: ManualClock) -> None:
        self.settings = settings
        self.clock = clock
        self.opened: list[FanoutService] = []
        self.service = self.another()

    def another(self) -> FanoutService:
        store = SqliteJobStore(self.settings.sqlite_path)
        queue = LocalTaskQueue(self.settings.sqlite_path, self.settings.dispatch)
        sender = CallbackSender(
            allow_local_http=True,
            secret=self.settings.callback_secret,
            timeout=5.0,
            wait_initial=0.0,
            wait_max=0.0,
            wait_jitter=0.0,
        )
        service = FanoutService(store, queue, self.settings, callbacks=sender, clock=self.clock)
        self.opened.append(service)
        return service

    def finished_job(self, url: str) -> Job:
        """Submit a one-batch job calling back `url` and run its batch (which finalizes it
        and sends the first attempt)."""
        job, _ = self.service.submit(
            IngestRequest(
                source="noop", collection="c", items=["a"], batch_size=1, callback_url=url
            )
        )
        run = self.service.run_batch(f"{job.job_id}_0000")
        assert run.finalized
        return self.job(job.job_id)

    def finalized_without_callback(self, url: str) -> FinishResult:
        """A one-batch job calling back `url`, finalized by the store's finish alone: a
        worker that stopped before the service's step after it (the callback)."""
        job, _ = self.service.submit(
            IngestRequest(
                source="noop", collection="c", items=["a"], batch_size=1, callback_url=url
            )
        )
        store = self.service.store
        claim = store.claim_batch(f"{job.job_id}_0000", lease=LEASE, now=self.clock())
        return store.finish_batch(
            claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED), now=self.clock()
        )

    def job(self, job_id: str) -> Job:
        return self.service.store.get_job(job_id)

    def sweep_after_lease(self) -> SweepReport:
        self.clock.advance(AFTER_LEASE)
        return self.service.sweep()

    def close(self) -> None:
        for service in self.opened:
            service.store.close()
            service.queue.close()


MakeStack = Callable[..., Stack]


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[MakeStack]:
    made: list[Stack] = []

    def make(**settings: object) -> Stack:
        base = Settings(
            sqlite_path=tmp_path / "fanout.sqlite3", lease=LEASE, callback_secret=SECRET
        )
        made.append(Stack(tmp_path, replace(base, **settings), ManualClock()))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for stack in made:
        stack.close()


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    yield from receivers()


def test_a_receiver_down_through_the_retries_gets_it_once_from_the_sweeper(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """The receiver refuses connections through every try of the finalizer's attempt and
    of the first sweeper attempt; sweeps before a lease has passed leave it alone. Once it
    is back, the next sweep delivers it, exactly once and signed; the job shows 3 attempts
    and no error, and later sweeps send nothing."""
    stack = make_stack()
    hook = receiver(listen_now=False)
    job = stack.finished_job(hook.url())
    assert job.callback_attempts == 1
    assert job.callback_status is not None
    assert job.callback_status.startswith("failed: ConnectionRefusedError")
    assert job.callback_error == job.callback_status
    assert stack.service.sweep().callbacks == 0  # the attempt started less than a lease ago

    assert stack.sweep_after_lease().callbacks == 1
    job = stack.job(job.job_id)
    assert job.callback_attempts == 2 and job.callback_error is not None

    hook.listen()
    assert stack.service.sweep().callbacks == 0
    assert stack.sweep_after_lease().callbacks == 1
    (request,) = hook.wait_for(1)
    assert json.loads(request.body)["job"]["job_id"] == job.job_id
    verify(request.headers["fanout-signature"], request.body, SECRET)
    job = stack.job(job.job_id)
    assert (job.callback_status, job.callback_attempts, job.callback_error) == (
        "delivered: HTTP 200",
        3,
        None,
    )
    for _ in range(3):
        assert stack.sweep_after_lease().callbacks == 0
    assert len(hook.received) == 1


def test_a_final_answer_is_not_sent_again(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """A 404 is final: recorded as rejected, never redelivered."""
    stack = make_stack()
    hook = receiver(answers=[404])
    job = stack.finished_job(hook.url())
    assert (job.callback_status, job.callback_attempts) == ("rejected: HTTP 404", 1)
    assert job.callback_error == "rejected: HTTP 404"
    assert stack.sweep_after_lease().callbacks == 0
    assert len(hook.received) == 1


@pytest.mark.skipif(not loopback_alias_available(), reason="no 127.0.0.2 on this machine")
def test_a_redirect_is_recorded_on_the_job_and_never_followed(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    stack = make_stack()
    inside = receiver(host="127.0.0.2")
    hook = receiver(answers=[302], location=inside.url("/steal"))
    job = stack.finished_job(hook.url())
    assert job.callback_status == "rejected: HTTP 302 redirect not followed"
    assert stack.sweep_after_lease().callbacks == 0
    assert len(hook.received) == 1 and inside.received == []


def test_the_sweeper_gives_up_after_its_sweeps(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """A receiver that always answers 503 gets the finalizer's attempt and
    `callback_max_sweeps` more; the job then says it gave up, and no sweep sends again."""
    stack = make_stack(callback_max_sweeps=2)
    stack.service.callbacks.attempts = 1
    hook = receiver(answers=[503])
    job = stack.finished_job(hook.url())
    assert [stack.sweep_after_lease().callbacks for _ in range(4)] == [1, 1, 0, 0]
    job = stack.job(job.job_id)
    assert job.callback_status == "failed: HTTP 503 (gave up after 3 attempts)"
    assert job.callback_attempts == 3 and job.callback_error == job.callback_status
    assert len(hook.received) == 3


def test_a_finalizer_that_stopped_before_sending_is_covered_by_the_sweeper(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """The job is finalized by a worker that stops before its callback (the store's
    finish, without the service's step after it): a lease later, the sweeper sends it."""
    stack = make_stack()
    hook = receiver()
    finished = stack.finalized_without_callback(hook.url())
    job = finished.job
    assert finished.finalized
    assert stack.service.sweep().callbacks == 0
    assert hook.received == []
    assert stack.sweep_after_lease().callbacks == 1
    hook.wait_for(1)
    assert stack.job(job.job_id).callback_status == "delivered: HTTP 200"
    assert stack.job(job.job_id).callback_attempts == 1


def test_concurrent_sweeps_send_a_callback_once(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """Four cleanup instances sweep at the same moment, on the same store: one of them
    claims the redelivery and sends it."""
    stack = make_stack()
    hook = receiver(answers=[503, 200])
    stack.service.callbacks.attempts = 1
    job = stack.finished_job(hook.url())
    assert job.callback_error == "failed: HTTP 503"
    stack.clock.advance(AFTER_LEASE)
    services = [stack.service, *(stack.another() for _ in range(3))]
    start = threading.Barrier(len(services))
    reports: list[SweepReport] = []

    def sweep(service: FanoutService) -> None:
        start.wait()
        reports.append(service.sweep())

    threads = [threading.Thread(target=sweep, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(report.callbacks for report in reports) == 1
    assert len(hook.received) == 2  # the finalizer's 503, then one redelivery
    assert stack.job(job.job_id).callback_status == "delivered: HTTP 200"


def test_an_attempt_whose_sender_stopped_is_given_up_once_the_sweeps_are_spent(
    make_stack: MakeStack, receiver: Callable[..., Receiver]
) -> None:
    """Senders that claimed every allowed attempt and never recorded an outcome (they
    stopped): a lease later the sweeper records that it gave up, and sends nothing."""
    stack = make_stack(callback_max_sweeps=1)
    hook = receiver()
    store = stack.service.store
    finished = stack.finalized_without_callback(hook.url())
    job = finished.job
    first = store.claim_callback(finished.job, now=stack.clock())
    assert first is not None
    second = store.claim_callback(first, now=stack.clock())
    assert second is not None and second.callback_attempts == 2
    assert stack.service.sweep().callbacks == 0
    assert stack.sweep_after_lease().callbacks == 0
    stored = stack.job(job.job_id)
    assert stored.callback_status == stored.callback_error == "failed: gave up after 2 attempts"
    assert store.find_undelivered_callbacks(stack.clock() + LEASE) == []
    assert hook.received == []
