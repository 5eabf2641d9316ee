"""The local queue keeps Cloud Tasks' semantics: against a real SQLite file, a real HTTP
receiver, and the dispatcher in a thread or as a real process. What every queue promises is
in the shared contract (tests/contract/test_queue.py); this module holds what only the local
dispatcher does: retries, backoff, deadlines, concurrency and crash recovery."""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Callable
from datetime import timedelta

from functions.jobs import utcnow
from functions.queue.local import Attempt, LocalTaskQueue, TaskState, backoff
from functions.queue.protocol import Task
from tests.queue.conftest import FAST
from tests.queue.harness import (
    WAIT,
    DispatcherProcess,
    DispatcherThread,
    Received,
    Receiver,
    wait_for_state,
)

StartDispatcher = Callable[..., DispatcherThread]


def block_first_request(receiver: Receiver, gate: threading.Event | None = None) -> None:
    """The first request waits for `gate` (by default, the end of the test), then gets
    200; later ones get 200 at once."""

    def behaviour(request: Received) -> int:
        if request.index == 0:
            (gate or receiver.release).wait(WAIT)
        return 200

    receiver.behaviour = behaviour


# -- enqueue ------------------------------------------------------------------------------


def test_existing_name_counts_as_enqueued_and_changes_nothing(tasks: LocalTaskQueue) -> None:
    """Re-enqueueing a name, queued or already done, reports it enqueued and leaves the
    stored task (body, state, attempts) as it was: Cloud Tasks' name deduplication."""
    first = tasks.enqueue([Task("batch-1", "http://127.0.0.1:9/", b"first")])
    again = tasks.enqueue([Task("batch-1", "http://127.0.0.1:9/", b"second")])
    assert first.enqueued == again.enqueued == ["batch-1"] and again.failed == {}
    assert tasks.get("batch-1").body == b"first"  # type: ignore[union-attr]

    (claimed,) = tasks.claim(1)
    tasks.settle(claimed, Attempt(200))
    after_done = tasks.enqueue([Task("batch-1", "http://127.0.0.1:9/", b"third")])
    assert after_done.enqueued == ["batch-1"]
    stored = tasks.get("batch-1")
    assert stored is not None and stored.state is TaskState.DONE and stored.body == b"first"
    assert tasks.counts() == {
        TaskState.QUEUED: 0,
        TaskState.DISPATCHING: 0,
        TaskState.DONE: 1,
        TaskState.FAILED: 0,
    }


def test_names_free_up_an_hour_after_the_task_finished(tasks: LocalTaskQueue) -> None:
    """Finished tasks are purged after the one-hour dedup window, so their names can be
    used again; unfinished tasks are never purged, however old."""
    tasks.enqueue([Task("old-done", "http://127.0.0.1:9/", b"1")])
    (claimed,) = tasks.claim(1)
    tasks.settle(claimed, Attempt(204))
    tasks.enqueue([Task("still-queued", "http://127.0.0.1:9/", b"2")])

    assert tasks.purge(now=utcnow() + timedelta(minutes=59)) == 0
    assert tasks.purge(now=utcnow() + timedelta(minutes=61)) == 1
    assert tasks.get("old-done") is None and tasks.get("still-queued") is not None

    tasks.enqueue([Task("old-done", "http://127.0.0.1:9/", b"new")])
    reborn = tasks.get("old-done")
    assert reborn is not None and reborn.state is TaskState.QUEUED and reborn.body == b"new"


def test_bad_url_and_oversized_body_are_refused(tasks: LocalTaskQueue) -> None:
    """Tasks Cloud Tasks would refuse (no http(s) URL, over 1 MiB in all) are refused here
    too, each with its reason, and nothing of them is stored."""
    url = "http://127.0.0.1:9/"
    room = 1024 * 1024 - len(url) - len("fine")  # what is left for the body of a 1 MiB task
    result = tasks.enqueue(
        [
            Task("no-scheme", "127.0.0.1:8082/", b"{}"),
            Task("too-big", url, b"x" * (room - 1), {"X": "yz"}),
            Task("fine", url, b"x" * room),
        ]
    )
    assert result.enqueued == ["fine"]
    assert "http(s)" in result.failed["no-scheme"] and "at most" in result.failed["too-big"]
    assert tasks.get("no-scheme") is None and tasks.get("too-big") is None


# -- delivery -----------------------------------------------------------------------------


def test_delivers_body_path_and_every_cloud_tasks_header(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """A POST to the task's URL with its body and headers, plus Cloud Tasks' headers;
    Content-Type defaults to application/json unless the task sets one."""
    when = utcnow() - timedelta(seconds=1)
    tasks.enqueue(
        [
            Task("json-task", receiver.url, b'{"batch": 7}', {"X-Secret": "s3"}, when),
            Task("text-task", receiver.url, b"plain", {"content-type": "text/plain"}),
        ]
    )
    dispatcher = start_dispatcher()
    by_name = {r.task: r for r in receiver.wait_for(2)}

    json_request = by_name["json-task"]
    assert json_request.path == "/tasks/run?via=queue"
    assert json_request.body == b'{"batch": 7}'
    headers = json_request.headers
    assert headers["x-secret"] == "s3"
    assert headers["content-type"] == "application/json"
    assert headers["x-cloudtasks-queuename"] == "fanout-test"
    assert headers["x-cloudtasks-taskname"] == "json-task"
    assert headers["x-cloudtasks-taskretrycount"] == "0"
    assert headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert abs(float(headers["x-cloudtasks-tasketa"]) - when.timestamp()) < 1e-5
    assert by_name["text-task"].headers["content-type"] == "text/plain"
    assert by_name["text-task"].body == b"plain"

    done = dispatcher.settled.wait("json-task", TaskState.DONE)
    assert done.attempts == 1 and done.last_status == 200


def test_retries_with_backoff_until_success(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """Non-2xx answers are retried; each retry carries the incremented retry and execution
    counts, and comes at least min_backoff * 2**(n-1) after the previous attempt."""
    receiver.behaviour = lambda request: 500 if request.index < 3 else 200
    tasks.enqueue([Task("flaky", receiver.url, b"{}")])
    dispatcher = start_dispatcher(min_backoff=timedelta(seconds=0.05))

    done = dispatcher.settled.wait("flaky", TaskState.DONE)
    requests = receiver.wait_for(4)
    assert len(requests) == 4
    assert [r.headers["x-cloudtasks-taskretrycount"] for r in requests] == ["0", "1", "2", "3"]
    assert [r.headers["x-cloudtasks-taskexecutioncount"] for r in requests] == ["0", "1", "2", "3"]
    gaps = [b.arrived - a.arrived for a, b in itertools.pairwise(requests)]
    # 2 ms of slack: due times are wall-clock, arrivals monotonic.
    assert all(gap >= want - 0.002 for gap, want in zip(gaps, [0.05, 0.1, 0.2], strict=True))
    assert done.attempts == 4 and done.responses == 4 and done.last_status == 200


def test_backoff_doubles_from_min_and_caps_at_max() -> None:
    """The delay after the n-th failed attempt is min(max_backoff, min_backoff * 2**(n-1)),
    and stays finite for any attempt count."""
    settings = FAST  # 0.05 s doubling, capped at 0.2 s
    delays = [backoff(n, settings).total_seconds() for n in (1, 2, 3, 4, 5, 10_000)]
    assert delays == [0.05, 0.1, 0.2, 0.2, 0.2, 0.2]


def test_max_attempts_then_failed_with_last_status_kept(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """After max_attempts failed attempts the task is `failed`, is not dispatched again,
    and keeps its last status and error for inspection."""
    receiver.behaviour = lambda request: 503
    tasks.enqueue([Task("doomed", receiver.url, b"{}")])
    dispatcher = start_dispatcher(max_attempts=3)

    failed = dispatcher.settled.wait("doomed", TaskState.FAILED)
    assert len(receiver.requests) == 3
    assert failed.attempts == 3 and failed.last_status == 503
    assert failed.last_error is not None and "503" in failed.last_error
    assert tasks.get("doomed") == failed
    assert tasks.counts()[TaskState.FAILED] == 1


def test_deadline_exceeded_is_a_failed_attempt_and_retried(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """A request unanswered within the dispatch deadline counts as a failed attempt without
    a response (the execution count stays 0) and is retried."""
    block_first_request(receiver)  # answered only after the deadline
    tasks.enqueue([Task("slow", receiver.url, b"{}")])
    dispatcher = start_dispatcher(deadline=timedelta(seconds=0.2))

    done = dispatcher.settled.wait("slow", TaskState.DONE)
    first = dispatcher.settled.of("slow")[0]
    assert first.state is TaskState.QUEUED and first.last_status is None
    assert first.last_error is not None and "deadline" in first.last_error
    second = receiver.wait_for(2)[1]
    assert second.headers["x-cloudtasks-taskretrycount"] == "1"
    assert second.headers["x-cloudtasks-taskexecutioncount"] == "0"
    assert done.attempts == 2 and done.responses == 1


def test_connection_refused_is_a_failed_attempt(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """A worker that cannot be reached fails attempts (no status, the error kept) until
    max_attempts, like any other failure."""
    closed = Receiver()
    dead_url = closed.url
    closed.close()
    tasks.enqueue([Task("unreachable", dead_url, b"{}")])
    dispatcher = start_dispatcher(max_attempts=2)

    failed = dispatcher.settled.wait("unreachable", TaskState.FAILED)
    assert failed.attempts == 2 and failed.responses == 0 and failed.last_status is None
    assert failed.last_error is not None and "Connection" in failed.last_error


def test_concurrent_dispatches_never_exceed_max_concurrent(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """With every request held open, exactly max_concurrent are in flight, no more are
    sent, and only that many tasks are claimed; released, all are delivered."""
    gate = threading.Event()
    receiver.behaviour = lambda request: 200 if gate.wait(WAIT) else 500
    names = [f"batch-{i}" for i in range(8)]
    tasks.enqueue([Task(n, receiver.url, b"{}") for n in names])
    dispatcher = start_dispatcher(max_concurrent=3)

    assert receiver.wait_until(lambda: receiver.in_flight == 3)
    assert not receiver.wait_until(lambda: len(receiver.requests) > 3, timeout=0.3)
    assert tasks.counts()[TaskState.DISPATCHING] == 3
    assert tasks.counts()[TaskState.QUEUED] == 5

    gate.set()
    for name in names:
        dispatcher.settled.wait(name, TaskState.DONE)
    assert receiver.max_in_flight == 3
    assert len(receiver.requests) == 8


def test_duplicate_delivery_posts_twice_concurrently_as_one_attempt(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """With duplicate_delivery, each dispatch sends two simultaneous identical POSTs; they
    are one attempt, which succeeds if either answers 2xx."""
    both_in = threading.Barrier(2, timeout=WAIT)

    def behaviour(request: Received) -> int:
        try:
            both_in.wait()  # passes only if the two POSTs are in flight together
        except threading.BrokenBarrierError:
            return 500
        return 500 if request.index == 0 else 200

    receiver.behaviour = behaviour
    tasks.enqueue([Task("twice", receiver.url, b'{"n": 1}')])
    dispatcher = start_dispatcher(duplicate_delivery=True, max_attempts=1)

    done = dispatcher.settled.wait("twice", TaskState.DONE)
    first, second = receiver.wait_for(2)
    assert first.task == second.task == "twice" and first.body == second.body
    assert first.headers["x-cloudtasks-taskretrycount"] == "0"
    assert second.headers["x-cloudtasks-taskretrycount"] == "0"
    assert done.attempts == 1


# -- stopping, crashing, restarting -------------------------------------------------------


def test_killed_dispatcher_redelivers_the_in_flight_task_on_restart(
    tasks: LocalTaskQueue, receiver: Receiver, spawn_dispatcher: Callable[[], DispatcherProcess]
) -> None:
    """A task is durably `dispatching` before its POST; if the dispatcher process is
    SIGKILLed mid-request, the next one re-queues it and delivers it again."""
    block_first_request(receiver)
    tasks.enqueue([Task("in-flight", receiver.url, b'{"batch": 1}')])
    first = spawn_dispatcher()
    receiver.wait_for(1)
    assert tasks.get("in-flight").state is TaskState.DISPATCHING  # type: ignore[union-attr]

    first.kill()
    assert first.process.returncode == -signal.SIGKILL
    second = spawn_dispatcher()
    second.wait_for_line("redelivering 1 task(s)")
    again = receiver.wait_for(2)[1]
    assert again.task == "in-flight" and again.body == b'{"batch": 1}'
    wait_for_state(tasks, "in-flight", TaskState.DONE)


def test_sigterm_waits_for_in_flight_requests_then_exits_0(
    tasks: LocalTaskQueue, receiver: Receiver, spawn_dispatcher: Callable[[], DispatcherProcess]
) -> None:
    """On SIGTERM the dispatcher stops claiming, waits for the request in flight, records
    its outcome, and exits 0."""
    gate = threading.Event()
    block_first_request(receiver, gate)
    tasks.enqueue([Task("finishing", receiver.url, b"{}")])
    process = spawn_dispatcher()
    receiver.wait_for(1)

    process.process.send_signal(signal.SIGTERM)
    process.wait_for_line("stopping: 1 request(s) in flight")
    tasks.enqueue([Task("too-late", receiver.url, b"{}")])
    gate.set()
    assert process.wait() == 0
    assert tasks.get("finishing").state is TaskState.DONE  # type: ignore[union-attr]
    assert tasks.get("too-late").state is TaskState.QUEUED  # type: ignore[union-attr]
    assert len(receiver.requests) == 1


def test_second_dispatcher_waits_then_redelivers_what_the_first_abandoned(
    tasks: LocalTaskQueue, receiver: Receiver, start_dispatcher: StartDispatcher
) -> None:
    """One dispatcher per file: a second one waits for the first (so it never re-queues
    live work); a request the first gave up on when it stopped is delivered again."""
    block_first_request(receiver)
    tasks.enqueue([Task("abandoned", receiver.url, b"{}")])
    first = start_dispatcher(grace=0.05)
    receiver.wait_for(1)

    second = start_dispatcher()
    assert not receiver.wait_until(lambda: len(receiver.requests) > 1, timeout=0.3)
    assert tasks.get("abandoned").state is TaskState.DISPATCHING  # type: ignore[union-attr]

    first.halt()
    second.settled.wait("abandoned", TaskState.DONE)
    assert [r.task for r in receiver.wait_for(2)] == ["abandoned", "abandoned"]
