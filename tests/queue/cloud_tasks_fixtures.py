"""Fixtures for the Cloud Tasks adapter tests: the real emulator process, a real HTTP
receiver the emulator dispatches to, and adapters pointed at both.

A test module imports the fixtures it uses by name (`import x as x`, so linters see a
re-export); the names do not clash with the local queue's fixtures in conftest.py.
Nothing here skips: a missing emulator fails the tests with the command that installs it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.cloud import tasks_v2

from functions.config import CloudTasksSettings
from functions.errors import StartupError
from functions.local.tasks_emulator import TasksEmulator, start_tasks_emulator
from functions.queue.cloud_tasks import CloudTasksQueue, task_id

# Upper bound for anything we wait on; every wait returns as soon as its condition holds.
WAIT_SECONDS = 20.0


@dataclass(frozen=True)
class Delivery:
    """One HTTP request the receiver got. Header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    received_at: datetime


class TaskReceiver:
    """A stdlib HTTP server on 127.0.0.1 that answers 200 to every request and records it.
    Tasks are told apart by path: send task `name` to `receiver.url(name)`."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="receiver")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=WAIT_SECONDS)

    def url(self, name: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/tasks/{name}"

    def record(self, delivery: Delivery) -> None:
        with self.changed:
            self.deliveries.append(delivery)
            self.changed.notify_all()

    def to(self, name: str) -> list[Delivery]:
        """What arrived so far for task `name`."""
        with self.changed:
            return [d for d in self.deliveries if d.path == f"/tasks/{name}"]

    def wait_for(self, names: list[str], count: int = 1, timeout: float = WAIT_SECONDS) -> bool:
        """True once each of `names` has at least `count` deliveries; False if `timeout`
        seconds pass first."""
        paths = [f"/tasks/{name}" for name in names]

        def arrived() -> bool:
            got = [d.path for d in self.deliveries]
            return all(got.count(path) >= count for path in paths)

        with self.changed:
            return self.changed.wait_for(arrived, timeout)


def _handler(receiver: TaskReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _record(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
            receiver.record(
                Delivery(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    received_at=datetime.now(UTC),
                )
            )

        do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _record

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture(scope="session")
def tasks_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TasksEmulator]:
    """The emulator, once per session, with the default queue created."""
    try:
        emulator = start_tasks_emulator(tmp_path_factory.mktemp("tasks-emulator"))
    except StartupError as exc:
        problem = str(exc)  # failed below, outside the handler: no chained traceback
    else:
        problem = ""
    if problem:
        pytest.fail(problem, pytrace=False)
    yield emulator
    emulator.stop()


@pytest.fixture(scope="session")
def tasks_receiver() -> Iterator[TaskReceiver]:
    """The worker stand-in, once per session; tests tell their tasks apart by name."""
    receiver = TaskReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


CloudQueueFactory = Callable[..., CloudTasksQueue]


@pytest.fixture
def make_cloud_queue(tasks_emulator: TasksEmulator) -> Iterator[CloudQueueFactory]:
    """Builds adapters on the emulator's queue; `settings` fields and constructor keywords
    can be overridden. Every adapter built is closed after the test."""
    built: list[CloudTasksQueue] = []
    base = CloudTasksSettings(
        project=tasks_emulator.project,
        location=tasks_emulator.location,
        queue=tasks_emulator.queue,
        emulator_host=tasks_emulator.host,
    )

    def make(
        dispatch_deadline: timedelta = timedelta(minutes=10), **overrides: Any
    ) -> CloudTasksQueue:
        fields = set(CloudTasksSettings.__dataclass_fields__)
        settings = replace(base, **{k: v for k, v in overrides.items() if k in fields})
        options = {k: v for k, v in overrides.items() if k not in fields}
        queue = CloudTasksQueue(settings, dispatch_deadline, **options)
        built.append(queue)
        return queue

    yield make
    for queue in built:
        queue.close()


def unique(prefix: str = "t") -> str:
    """A task name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def listed(queue: CloudTasksQueue, task_name: str) -> list[tasks_v2.Task]:
    """The tasks the API holds under `task_name`'s ID, in full (body and headers included)."""
    request = tasks_v2.ListTasksRequest(
        parent=queue.queue_path, response_view=tasks_v2.Task.View.FULL
    )
    return [
        task
        for task in queue.client.list_tasks(request=request)
        if task.name == f"{queue.queue_path}/tasks/{task_id(task_name)}"
    ]


def far_future() -> datetime:
    """A schedule time that keeps a task in the queue (listable) for the whole test run."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
