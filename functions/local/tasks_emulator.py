"""Start and stop `gcloud-tasks-emulator` (PyPI), the Cloud Tasks API stub that the adapter
tests and the emulated cloud (functions/local/emulated.py) run against, with the queue of
each priority class already created.

It needs protobuf < 5, so it runs from its own virtual environment, `.venv-tasks-emulator`,
which `make setup` builds from `tests/support/requirements-tasks-emulator.txt`.

What it is good for (docs/design.md): proving the client code. It keeps tasks in memory,
dispatches HTTP tasks one at a time per queue with the `X-CloudTasks-*` headers, and honours
`schedule_time`. It does not deduplicate task names, validate requests (URL, name, size),
attach OIDC tokens, apply `dispatch_deadline`, back off between retries, or implement
GetTask/DeleteTask. It also listens on every interface (`[::]`), whatever host it is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc  # type: ignore[import-untyped]
from google.api_core.exceptions import ServiceUnavailable
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from functions.errors import StartupError
from functions.local.emulators import ROOT, Emulator, free_port, port_open, start_emulator

TASKS_VENV = ROOT / ".venv-tasks-emulator"
EXECUTABLE = TASKS_VENV / "bin" / "gcloud-tasks-emulator"
PROJECT = "fanout-test"
LOCATION = "us-central1"
QUEUE = "fanout-batches"
# The high and low classes' queues (CloudTasksSettings' defaults, infra/queue.tf's names).
CLASS_QUEUES = ("fanout-batches-high", "fanout-batches-low")
# A task whose worker keeps failing is dropped after this many retries; negative: never
# (the emulator's own default, one retry about every 0.1 s).
MAX_RETRIES = 3


@dataclass(frozen=True)
class TasksEmulator:
    """A running emulator, the (normal class's) queue it was started with, and the other
    classes' queues it holds."""

    emulator: Emulator
    project: str
    location: str
    queue: str
    class_queues: tuple[str, ...] = CLASS_QUEUES

    @property
    def host(self) -> str:
        """host:port for `CloudTasksSettings.emulator_host`."""
        return self.emulator.host

    @property
    def queue_path(self) -> str:
        return f"projects/{self.project}/locations/{self.location}/queues/{self.queue}"

    def stop(self) -> None:
        """Stop the emulator's process group; a no-op when it already ended."""
        self.emulator.stop()


def start_tasks_emulator(
    log_dir: Path,
    *,
    port: int | None = None,
    project: str = PROJECT,
    location: str = LOCATION,
    queue: str = QUEUE,
    class_queues: Sequence[str] = CLASS_QUEUES,
    max_retries: int = MAX_RETRIES,
) -> TasksEmulator:
    """Start the emulator on `port` (a free loopback port by default) with `queue` and
    `class_queues` created; return once they are. Raises StartupError when it is not installed,
    exits early, or is not up in time (the message holds the end of its log)."""
    if not EXECUTABLE.is_file():
        raise StartupError(
            f"Cloud Tasks emulator missing ({EXECUTABLE.relative_to(ROOT)}): run `make setup`"
        )
    port = free_port() if port is None else port
    queue_path = f"projects/{project}/locations/{location}/queues/{queue}"
    argv = [
        str(EXECUTABLE),
        "start",
        f"--port={port}",
        f"--default-queue={queue_path}",
        f"--max-retries={max_retries}",
    ]
    emulator = start_emulator("cloud-tasks", argv, port, log_dir, port_open)
    try:
        _create_queues(emulator.host, f"projects/{project}/locations/{location}", class_queues)
    except BaseException:
        emulator.stop()
        raise
    return TasksEmulator(emulator, project, location, queue, tuple(class_queues))


_UNTIL_UP = Retry(predicate=if_exception_type(ServiceUnavailable), initial=0.05, timeout=30.0)


def _create_queues(host: str, parent: str, names: Sequence[str]) -> None:
    """CreateQueue for each name (the emulator makes only its default queue itself)."""
    channel = grpc.insecure_channel(host)
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    transport = CloudTasksGrpcTransport(host=host, channel=channel, credentials=credentials)
    client = tasks_v2.CloudTasksClient(transport=transport)
    try:
        for name in names:
            queue = tasks_v2.Queue(name=f"{parent}/queues/{name}")
            # Its port can accept connections a moment before its gRPC server answers.
            client.create_queue(parent=parent, queue=queue, retry=_UNTIL_UP, timeout=5.0)
    finally:
        channel.close()
