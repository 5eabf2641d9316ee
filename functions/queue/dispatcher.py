"""The local dispatcher: delivers `LocalTaskQueue` tasks over HTTP the way Cloud Tasks does.

    python -m functions.queue.dispatcher      # FANOUT_SQLITE_PATH, FANOUT_* dispatch knobs

One loop thread owns the database: it settles finished requests, claims as many due tasks
as there are free slots (`max_concurrent`), and hands each to a short-lived daemon thread
that POSTs it. Daemon threads, not a `ThreadPoolExecutor`, because the executor's threads
are joined at interpreter exit and a request may hang for the whole deadline (10 min by
default): a stopped dispatcher must exit promptly. Requests it gives up on stay
`dispatching` and are delivered again at the next start (at least once).

The priority classes share the slots (`SlotShares`): while several have tasks due, each gets
free slots in proportion to its share (`DispatchSettings.shares`, the dispatch rates of the
classes' Cloud Tasks queues), so a high job overtakes a low backlog and low never starves.

Only one dispatcher runs per SQLite file: it holds an exclusive `flock` on a file beside
it, which the kernel releases when the process dies, however it dies. A second dispatcher
waits for that lock, so the start-up recovery never re-queues a live dispatcher's work.
"""

from __future__ import annotations

import fcntl
import http.client
import logging
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from functions.config import DispatchSettings, PriorityShares, Settings
from functions.errors import ConfigError
from functions.jobs import utcnow
from functions.priority import Priority
from functions.queue.local import Attempt, LocalTaskQueue, QueuedTask, TaskState

log = logging.getLogger("fanout.dispatcher")

DEFAULT_POLL = timedelta(milliseconds=25)
DEFAULT_GRACE = timedelta(seconds=5)
# How much of a non-2xx answer's body is kept as the task's last error.
_DETAIL_BYTES = 512

Result = tuple[QueuedTask, Attempt, float]


def dispatch_headers(task: QueuedTask, queue_name: str) -> dict[str, str]:
    """The task's own headers plus the ones Cloud Tasks sets (which win, as there)."""
    headers = {
        k: v
        for k, v in task.headers.items()
        if not k.lower().startswith("x-cloudtasks-") and k.lower() != "user-agent"
    }
    if not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = "application/json"
    headers.update(
        {
            "User-Agent": "Google-Cloud-Tasks",
            "X-CloudTasks-QueueName": queue_name,
            "X-CloudTasks-TaskName": task.name,
            "X-CloudTasks-TaskRetryCount": str(task.attempts),
            "X-CloudTasks-TaskExecutionCount": str(task.responses),
            "X-CloudTasks-TaskETA": f"{task.schedule_time.timestamp():.6f}",
        }
    )
    return headers


def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> Attempt:
    """One POST; never raises. `timeout` bounds the whole exchange up to the status line."""
    parts = urlsplit(url)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ends = time.monotonic() + timeout
    conn = connection_class(parts.hostname or "", parts.port, timeout=timeout)
    try:
        try:
            conn.request("POST", target, body=body, headers=headers)
            if conn.sock is not None:  # what is left of the deadline, not a fresh one
                conn.sock.settimeout(max(ends - time.monotonic(), 0.001))
            response = conn.getresponse()
        except TimeoutError:
            return Attempt(None, f"no response within the {timeout:g}s deadline")
        except (OSError, http.client.HTTPException) as exc:
            return Attempt(None, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status < 300:
            return Attempt(response.status)
        try:
            detail = response.read(_DETAIL_BYTES).decode(errors="replace").strip()
        except (OSError, http.client.HTTPException):
            detail = ""
        return Attempt(response.status, f"HTTP {response.status} {detail}".strip())
    finally:
        conn.close()


def deliver(task: QueuedTask, dispatch: DispatchSettings) -> Attempt:
    """One attempt. With `duplicate_delivery`, two concurrent POSTs that count as one
    attempt, successful if either is (Cloud Tasks may duplicate; the worker must cope)."""
    headers = dispatch_headers(task, dispatch.queue_name_for(task.priority))
    timeout = dispatch.deadline.total_seconds()
    if not dispatch.duplicate_delivery:
        return post(task.url, task.body, headers, timeout)
    twin: list[Attempt] = []
    thread = threading.Thread(
        target=lambda: twin.append(post(task.url, task.body, headers, timeout)), daemon=True
    )
    thread.start()
    first = post(task.url, task.body, headers, timeout)
    thread.join()
    attempts = [first, *twin]
    return next(
        (a for a in attempts if a.ok),
        next((a for a in attempts if a.status is not None), first),
    )


class SlotShares:
    """Which priority class gets each free slot: stride scheduling. A class's pass moves on
    by 1/share for each slot it takes, and the next slot goes to the due class with the
    lowest pass, so classes with tasks due get slots in proportion to their shares, and
    every share being above zero, none starves. A class that had nothing due rejoins at
    the lowest pass of the classes that kept running: idle time earns no credit."""

    def __init__(self, shares: PriorityShares) -> None:
        self.shares = shares
        self.passes = dict.fromkeys(Priority, 0.0)
        self.due: frozenset[Priority] = frozenset()

    def split(self, free: int, due: Collection[Priority]) -> dict[Priority, int]:
        """How many of `free` slots each class in `due` should take now."""
        staying = [p for p in due if p in self.due] or list(due)
        floor = min((self.passes[p] for p in staying), default=0.0)
        for priority in due:
            if priority not in self.due:
                self.passes[priority] = max(self.passes[priority], floor)
        self.due = frozenset(due)
        passes = {p: self.passes[p] for p in due}
        split = dict.fromkeys(due, 0)
        for _ in range(free if due else 0):
            # Ties go to the higher class (Priority lists high first).
            chosen = min(passes, key=lambda p: (passes[p], list(Priority).index(p)))
            split[chosen] += 1
            passes[chosen] += 1 / self.shares.of(chosen)
        return {p: n for p, n in split.items() if n}

    def charge(self, priority: Priority, slots: int) -> None:
        """Count `slots` taken by `priority` (what it claimed, not what it was offered)."""
        self.passes[priority] += slots / self.shares.of(priority)


class Dispatcher:
    """Delivers due tasks from the queue in `path` until `run`'s stop event is set."""

    def __init__(
        self,
        path: str | Path,
        dispatch: DispatchSettings,
        *,
        poll: timedelta = DEFAULT_POLL,
        grace: timedelta = DEFAULT_GRACE,
        on_settled: Callable[[QueuedTask], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.dispatch = dispatch
        self.poll = poll.total_seconds()
        self.grace = grace.total_seconds()
        self.on_settled = on_settled
        self.shares = SlotShares(dispatch.shares)
        self._wake = threading.Event()

    def run(self, stop: threading.Event) -> None:
        with self._exclusive(stop) as held:
            if not held:
                return
            tasks = LocalTaskQueue(self.path, self.dispatch)
            try:
                self._loop(tasks, stop)
            finally:
                tasks.close()

    @contextmanager
    def _exclusive(self, stop: threading.Event) -> Iterator[bool]:
        """Hold the queue's dispatcher lock, waiting for it; yields False if stopped first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.path.with_name(self.path.name + ".dispatcher.lock")
        with lock_path.open("a") as lock_file:
            held = self._acquire(lock_file.fileno(), lock_path, stop)
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _acquire(self, fd: int, lock_path: Path, stop: threading.Event) -> bool:
        waiting = False
        while not stop.is_set():
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if not waiting:
                    log.info("another dispatcher holds %s; waiting for it", lock_path)
                    waiting = True
            stop.wait(self.poll)
        return False

    def _loop(self, tasks: LocalTaskQueue, stop: threading.Event) -> None:
        recovered = tasks.requeue_in_flight()
        if recovered:
            log.warning("redelivering %d task(s) left in flight: %s", len(recovered), recovered)
        d = self.dispatch
        log.info(
            "dispatcher started path=%s queue=%s max_concurrent=%d max_attempts=%d deadline=%gs",
            self.path,
            d.queue_name,
            d.max_concurrent,
            d.max_attempts,
            d.deadline.total_seconds(),
        )
        # A fresh queue per run: requests abandoned by an earlier run cannot count here.
        results: queue.SimpleQueue[Result] = queue.SimpleQueue()
        in_flight = 0
        while not stop.is_set():
            self._wake.clear()  # before draining, so a result arriving later wakes the wait
            finished = []
            while not results.empty():
                finished.append(results.get())
            if finished:
                self._settle(tasks, finished)
                in_flight -= len(finished)
            claimed, wait = self._claim_due(tasks, d.max_concurrent - in_flight)
            for task in claimed:
                threading.Thread(
                    target=self._work, args=(task, results), name="dispatch", daemon=True
                ).start()
            in_flight += len(claimed)
            self._wake.wait(wait)
        self._drain(tasks, results, in_flight)

    def _claim_due(self, tasks: LocalTaskQueue, free: int) -> tuple[list[QueuedTask], float]:
        """Claim due tasks for the free slots; also how long to wait before looking again.

        The claim takes SQLite's writer lock, so it runs only when a read says something is
        due: an idle dispatcher polls (for enqueues from other processes) with reads alone.
        """
        if free <= 0:
            return [], self.poll  # slots full: a finishing request sets the wake event
        due = tasks.due_by_priority()
        if not due:
            return [], self.poll
        now = utcnow()
        ready = [priority for priority, at in due.items() if at <= now]
        if not ready:
            return [], min(self.poll, (min(due.values()) - now).total_seconds())
        claimed: list[QueuedTask] = []
        for priority, slots in self.shares.split(free, ready).items():
            taken = tasks.claim(slots, priority=priority, now=now)
            self.shares.charge(priority, len(taken))
            claimed.extend(taken)
        # Slots left and claimed < free: look again at once for the next due time.
        return claimed, 0.0 if 0 < len(claimed) < free else self.poll

    def _drain(
        self, tasks: LocalTaskQueue, results: queue.SimpleQueue[Result], in_flight: int
    ) -> None:
        log.info("stopping: %d request(s) in flight, waiting up to %gs", in_flight, self.grace)
        ends = time.monotonic() + self.grace
        while in_flight and (left := ends - time.monotonic()) > 0:
            try:
                result = results.get(timeout=left)
            except queue.Empty:
                break
            self._settle(tasks, [result])
            in_flight -= 1
        if in_flight:
            log.warning("abandoned %d request(s); redelivered at the next start", in_flight)
        log.info("dispatcher stopped")

    def _work(self, task: QueuedTask, results: queue.SimpleQueue[Result]) -> None:
        started = time.monotonic()
        attempt = deliver(task, self.dispatch)
        results.put((task, attempt, time.monotonic() - started))
        self._wake.set()

    def _settle(self, tasks: LocalTaskQueue, finished: list[Result]) -> None:
        states = tasks.settle_many([(task, attempt) for task, attempt, _ in finished])
        for (task, attempt, elapsed), settled in zip(finished, states, strict=True):
            self._log(task, attempt, elapsed, settled)
            if settled is not None and self.on_settled is not None:
                self.on_settled(settled)

    def _log(
        self, task: QueuedTask, attempt: Attempt, elapsed: float, settled: QueuedTask | None
    ) -> None:
        """One line per dispatch: DEBUG when it succeeded (busy queues would flood the log
        and spend their time writing it), WARNING when it did not."""
        if settled is None:
            log.warning("dispatch task=%s outcome=lost (claim no longer held)", task.name)
            return
        level = logging.DEBUG if settled.state is TaskState.DONE else logging.WARNING
        if not log.isEnabledFor(level):
            return
        outcome = {TaskState.QUEUED: "retry"}.get(settled.state, settled.state.value)
        retry = (
            f" retry_in={(settled.schedule_time - utcnow()).total_seconds():.3f}s"
            if settled.state is TaskState.QUEUED
            else ""
        )
        error = f" error={attempt.error!r}" if attempt.error else ""
        log.log(
            level,
            "dispatch task=%s outcome=%s status=%s attempt=%d/%d elapsed=%.3fs%s%s",
            task.name,
            outcome,
            attempt.status if attempt.status is not None else "-",
            settled.attempts,
            self.dispatch.max_attempts,
            elapsed,
            retry,
            error,
        )


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        log.error("bad configuration: %s", exc.message)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()  # only set the event: the loop logs and drains outside the handler

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    Dispatcher(settings.sqlite_path, settings.dispatch).run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
