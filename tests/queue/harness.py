"""Real things to test the local queue against: an HTTP receiver, and the dispatcher run in
a thread or as a subprocess. Every wait here is on a Condition, with a bound."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from functions.config import DispatchSettings
from functions.queue.dispatcher import Dispatcher
from functions.queue.local import LocalTaskQueue, QueuedTask, TaskState

ROOT = Path(__file__).resolve().parents[2]
# Upper bound of any wait for something that should happen; a passing run waits far less.
WAIT = 5.0


@dataclass(frozen=True)
class Received:
    index: int
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    arrived: float  # time.monotonic()
    wall: float  # time.time(), to compare with schedule times

    @property
    def task(self) -> str:
        return self.headers["x-cloudtasks-taskname"]


Behaviour = Callable[[Received], int]


class Receiver:
    """A worker stand-in on 127.0.0.1: records each POST, then answers with the status
    `behaviour` returns; a behaviour may block (on `release`, or events of its own)."""

    def __init__(self) -> None:
        self.behaviour: Behaviour = lambda request: 200
        # Set at teardown so that no handler stays blocked.
        self.release = threading.Event()
        self.requests: list[Received] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                receiver._handle(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        # A short poll interval: shutdown() waits for it.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.02,), daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/tasks/run?via=queue"

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
        with self._cond:
            request = Received(
                index=len(self.requests),
                path=handler.path,
                headers={k.lower(): v for k, v in handler.headers.items()},
                body=body,
                arrived=time.monotonic(),
                wall=time.time(),
            )
            self.requests.append(request)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._cond.notify_all()
        try:
            status = self.behaviour(request)
        finally:
            with self._cond:
                self.in_flight -= 1
                self._cond.notify_all()
        try:
            handler.send_response(status)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        except OSError:
            pass  # the dispatcher gave up on this request (deadline, or it was killed)

    def wait_until(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    def wait_for(self, count: int, timeout: float = WAIT) -> list[Received]:
        """The requests so far, once there are at least `count` of them."""
        if not self.wait_until(lambda: len(self.requests) >= count, timeout):
            raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
        with self._cond:
            return list(self.requests)


class Settled:
    """Records what the dispatcher settled (its `on_settled` hook), for tests to wait on."""

    def __init__(self) -> None:
        self.tasks: list[QueuedTask] = []
        self._cond = threading.Condition()

    def __call__(self, task: QueuedTask) -> None:
        with self._cond:
            self.tasks.append(task)
            self._cond.notify_all()

    def wait(self, name: str, state: TaskState, timeout: float = WAIT) -> QueuedTask:
        def found() -> QueuedTask | None:
            return next((t for t in self.tasks if t.name == name and t.state is state), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"{name} never settled as {state}: {self.tasks}")
            task = found()
        assert task is not None
        return task

    def of(self, name: str) -> list[QueuedTask]:
        with self._cond:
            return [t for t in self.tasks if t.name == name]


class DispatcherThread:
    """`Dispatcher.run` in a thread; `halt` stops it and re-raises what it raised."""

    def __init__(self, path: Path, dispatch: DispatchSettings, grace: float = 0.5) -> None:
        self.settled = Settled()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self._dispatcher = Dispatcher(
            path, dispatch, grace=timedelta(seconds=grace), on_settled=self.settled
        )
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._dispatcher.run(self.stop)
        except BaseException as exc:
            self.error = exc
            raise

    def halt(self, timeout: float = WAIT) -> None:
        self.stop.set()
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "dispatcher did not stop"
        if self.error is not None:
            raise self.error


class DispatcherProcess:
    """`python -m functions.queue.dispatcher` with FANOUT_* settings; stderr kept by line."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")}
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "functions.queue.dispatcher"],
            cwd=ROOT,
            env={**clean, **env, "FANOUT_SQLITE_PATH": str(path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for_line(self, text: str, timeout: float = WAIT) -> str:
        def found() -> str | None:
            return next((line for line in self.lines if text in line), None)

        with self._cond:
            if not self._cond.wait_for(lambda: found() is not None, timeout):
                raise AssertionError(f"no {text!r} in dispatcher stderr:\n" + "\n".join(self.lines))
            line = found()
        assert line is not None
        return line

    def wait(self, timeout: float = WAIT) -> int:
        code = self.process.wait(timeout)
        self._reader.join(timeout)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


def wait_for_state(
    tasks: LocalTaskQueue, name: str, state: TaskState, timeout: float = WAIT
) -> QueuedTask:
    """Poll the queue (written by another process) until task `name` is in `state`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = tasks.get(name)
        if task is not None and task.state is state:
            return task
        time.sleep(0.01)  # the dispatcher process settles asynchronously; bounded poll
    raise AssertionError(f"task {name!r} not {state.value} after {timeout}s: {tasks.get(name)}")
