"""`CloudTasksQueue`: the production `TaskQueue`, one Cloud Tasks HTTP task per batch.

What one `Task` becomes:

- a task in its priority class's queue (`CloudTasksSettings.queue_for`: infra/queue.tf
  creates one queue per class, each with its own dispatch rate and concurrency);
- the task name `{queue_path}/tasks/{task_id(task.name)}`, where `task_id` puts a short
  hash of the name in front of it. Cloud Tasks deduplicates on that name, so it must be a
  pure function of `task.name`; the hash prefix spreads names that would otherwise be
  sequential (`{job_id}_0001`, `{job_id}_0002`, ...), which Cloud Tasks documents as slow;
- an HTTP POST to `task.url` with `task.body` and `task.headers`;
- an OIDC token for `settings.service_account` when one is configured, with audience
  `settings.audience`, or the task's URL when that is unset (Cloud Tasks' own default);
- the queue's `dispatch_deadline`, and `schedule_time` when the task has one (a naive
  datetime is taken as UTC, protobuf's convention).

Dispatch deadline: Cloud Tasks accepts 15 s to 30 min for HTTP tasks. A deadline outside
that range raises `ConfigError` when the queue is built (it comes from
`FANOUT_DISPATCH_DEADLINE_SECONDS`). It is not clamped: a silently shortened deadline would
cut long batches off mid-run, and a lengthened one would hide a stuck worker for longer
than the operator asked; either way the process would run with a setting nobody chose.

Tasks are created one CreateTask call each, concurrently on a bounded thread pool.
(google-cloud-tasks 2.26 also exposes BatchCreateTasks, a long-running operation of at most
100 tasks; the design does not count on it and the test emulator does not implement it.)
Each create is named, which makes it idempotent, so transient errors
(Unavailable, DeadlineExceeded, ResourceExhausted, InternalServerError) are retried with
exponential backoff; if a retried create had in fact landed, the retry answers AlreadyExists,
which counts as enqueued, as does any name already taken (deduplication). Any other error
puts the name in `EnqueueResult.failed` with the reason, and never stops the other tasks.

Checked here before any call, because the API would refuse them anyway and the reason is
clearer: a name outside `[A-Za-z0-9_-]{1,400}` (the `Task` contract), and a task larger
than 1 MiB (Cloud Tasks' task size limit). Everything else (the URL's form, header rules,
schedule range) is left to the API, which is the authority on it.

When one call holds the same name twice, the first occurrence is created and the others
count as enqueued, exactly as if they had met AlreadyExists.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import grpc  # type: ignore[import-untyped]
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.auth.credentials import AnonymousCredentials
from google.cloud import tasks_v2
from google.cloud.tasks_v2.services.cloud_tasks.transports import CloudTasksGrpcTransport

from functions.config import CloudTasksSettings
from functions.errors import ConfigError
from functions.priority import Priority
from functions.queue.protocol import EnqueueResult, Task, name_problem, size_problem

log = logging.getLogger(__name__)

MIN_DISPATCH_DEADLINE = timedelta(seconds=15)
MAX_DISPATCH_DEADLINE = timedelta(minutes=30)
MAX_WORKERS = 32
# Per attempt; the same as the library's default for CreateTask.
CALL_TIMEOUT_SECONDS = 20.0
DEFAULT_RETRY_SECONDS = 60.0
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.ResourceExhausted,
    gexc.InternalServerError,
)


def task_id(name: str) -> str:
    """The task ID sent to Cloud Tasks for `name`: 8 hex digits of its SHA-256, a dash, the
    name. Deterministic (deduplication depends on it) and at most 409 characters (the API
    allows 500)."""
    prefix = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{prefix}-{name}"


class CloudTasksQueue:
    """`TaskQueue` on Cloud Tasks. Safe to share between threads.

    `client` is a `tasks_v2.CloudTasksClient` to use instead of building one; the queue
    then leaves its transport open on `close()`, since the caller owns it. Otherwise the
    client is built on first use, once: on an insecure gRPC channel with anonymous
    credentials when `settings.emulator_host` is set, else with Application Default
    Credentials.
    """

    def __init__(
        self,
        settings: CloudTasksSettings,
        dispatch_deadline: timedelta,
        client: Any = None,
        *,
        max_workers: int = MAX_WORKERS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        if not settings.project:
            raise ConfigError(
                "Cloud Tasks needs a project: set FANOUT_TASKS_PROJECT or FANOUT_GCP_PROJECT"
            )
        if not MIN_DISPATCH_DEADLINE <= dispatch_deadline <= MAX_DISPATCH_DEADLINE:
            raise ConfigError(
                "FANOUT_DISPATCH_DEADLINE_SECONDS must be between 15 and 1800 for Cloud Tasks "
                f"HTTP tasks, got {dispatch_deadline.total_seconds():g}"
            )
        self._settings = settings
        self._deadline = dispatch_deadline
        self._retry_seconds = retry_seconds
        # One queue per priority class; `queue_path` is the normal class's.
        self.queue_paths: dict[Priority, str] = {
            priority: tasks_v2.CloudTasksClient.queue_path(
                settings.project, settings.location, settings.queue_for(priority)
            )
            for priority in Priority
        }
        self.queue_path: str = self.queue_paths[Priority.NORMAL]
        self._client: Any = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        self._closed = False
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="cloud-tasks-enqueue")

    @property
    def client(self) -> Any:
        """The `tasks_v2.CloudTasksClient`, built on first use (once, whichever thread asks
        first)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._closed:
                raise RuntimeError("CloudTasksQueue is closed")
            if self._client is None:
                self._client = self._build_client()
            return self._client

    def _build_client(self) -> Any:
        host = self._settings.emulator_host
        if host is None:
            return tasks_v2.CloudTasksClient()
        # The transport ignores credentials when it is given a channel; anonymous ones say
        # so, and keep it from looking up Application Default Credentials in any version.
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        channel = grpc.insecure_channel(host)
        transport = CloudTasksGrpcTransport(host=host, channel=channel, credentials=credentials)
        return tasks_v2.CloudTasksClient(transport=transport)

    def enqueue(self, tasks: Sequence[Task]) -> EnqueueResult:
        """Create every task; see the module docstring for what counts as enqueued."""
        if self._closed:
            raise RuntimeError("CloudTasksQueue is closed")
        outcomes: dict[str, Future[str | None] | str] = {}
        for task in tasks:
            if task.name in outcomes:
                continue
            request = self._request(task)
            if isinstance(request, str):
                outcomes[task.name] = request
            else:
                parent = self.queue_paths[task.priority]
                outcomes[task.name] = self._pool.submit(self._create, task.name, parent, request)
        enqueued: list[str] = []
        failed: dict[str, str] = {}
        for name, outcome in outcomes.items():
            reason = outcome.result() if isinstance(outcome, Future) else outcome
            if reason is None:
                enqueued.append(name)
            else:
                failed[name] = reason
        return EnqueueResult(enqueued=enqueued, failed=failed)

    def task_gone(self, name: str, priority: Priority = Priority.NORMAL) -> bool | None:
        """GetTask: NOT_FOUND means Cloud Tasks deleted the task (it succeeded, or used up
        its attempts) or never had it. None for any other error (the emulator answers
        UNIMPLEMENTED; a missing cloudtasks.tasks.get permission is PERMISSION_DENIED),
        logged, so the sweeper falls back to the retry window."""
        try:
            self.client.get_task(
                name=f"{self.queue_paths[priority]}/tasks/{task_id(name)}",
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except gexc.NotFound:
            return True
        except gexc.GoogleAPICallError as exc:
            log.warning("cannot ask Cloud Tasks about task %s: %s", name, exc)
            return None
        return False

    def close(self) -> None:
        """Wait for creates in flight, stop the pool, and close the gRPC channel if this
        queue built it. Idempotent; `enqueue` raises RuntimeError afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.shutdown(wait=True)
        if self._owns_client and self._client is not None:
            self._client.transport.close()

    def _request(self, task: Task) -> tasks_v2.Task | str:
        """The Task to create, or why it cannot be: refusals the API would make anyway."""
        if problem := name_problem(task.name):
            return problem
        try:
            http = tasks_v2.HttpRequest(
                url=task.url,
                http_method=tasks_v2.HttpMethod.POST,
                body=task.body,
                headers=dict(task.headers),
            )
            if self._settings.service_account:
                http.oidc_token = tasks_v2.OidcToken(
                    service_account_email=self._settings.service_account,
                    audience=self._settings.audience or task.url,
                )
            request = tasks_v2.Task(
                name=f"{self.queue_paths[task.priority]}/tasks/{task_id(task.name)}",
                http_request=http,
                dispatch_deadline=self._deadline,
            )
            if task.schedule_time is not None:
                request.schedule_time = task.schedule_time
            size = tasks_v2.Task.pb(request).ByteSize()
        except Exception as exc:  # a malformed field fails this task, not the call
            return f"cannot build the task: {type(exc).__name__}: {exc}"
        return size_problem(size) or request

    def _create(self, name: str, parent: str, request: tasks_v2.Task) -> str | None:
        """Create one task; the reason it was refused, or None when the queue holds it."""
        retry = Retry(
            predicate=if_exception_type(*TRANSIENT_ERRORS),
            initial=0.1,
            maximum=5.0,
            multiplier=2.0,
            timeout=self._retry_seconds,
            on_error=functools.partial(_log_transient, name),
        )
        try:
            self.client.create_task(
                parent=parent,
                task=request,
                retry=retry,
                timeout=CALL_TIMEOUT_SECONDS,
            )
        except gexc.AlreadyExists:
            return None
        except gexc.RetryError as exc:
            cause = exc.cause
            last = f"{type(cause).__name__}: {cause}" if cause else str(exc)
            return f"gave up after {self._retry_seconds:g}s of transient errors; last: {last}"
        except gexc.GoogleAPICallError as exc:
            return f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # one task's failure must never stop the others
            log.exception("unexpected error creating Cloud Tasks task %s", name)
            return f"{type(exc).__name__}: {exc}"
        return None


def _log_transient(name: str, exc: Exception) -> None:
    log.warning("transient error creating Cloud Tasks task %s, retrying: %r", name, exc)
