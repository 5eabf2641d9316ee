"""Typed errors. Raised deep in the code; turned into HTTP status codes only at the edge.

Each class says when it is raised and carries the HTTP status the edge should answer with,
so that `main.py` / `api.py` need one mapping and no knowledge of where the error came from.
"""

from __future__ import annotations

from pathlib import Path


class FanoutError(Exception):
    """Base of every error Fanout raises on purpose."""

    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The JSON body the edge sends back."""
        return {"error": type(self).__name__, "message": self.message}


class InvalidArgument(FanoutError):
    """Raised when a caller passes a value the operation cannot accept (unknown status, bad
    limit, malformed input). Nothing has been written when it is raised."""

    http_status = 400


class InvalidField(InvalidArgument):
    """Raised when one field of a request is well formed but cannot be accepted now (a
    `not_before` in the past). The edge names the field, as for any invalid field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid request: {field}: {problem}")
        self.field = field
        self.problem = problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return type(self), (self.field, self.problem)


class InvalidCursor(InvalidArgument):
    """Raised when a pagination cursor was not produced by this store for this listing."""


class NotFound(FanoutError):
    """Raised when the addressed record does not exist."""

    http_status = 404


class JobNotFound(NotFound):
    """Raised when no job has the given id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id!r} not found")
        self.job_id = job_id

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.job_id,)


class BatchNotFound(NotFound):
    """Raised when no batch has the given id."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} not found")
        self.batch_id = batch_id

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.batch_id,)


class LogsUnavailable(FanoutError):
    """Raised when the jobs API is asked for a job's lines on a deployment that has neither
    a local log file nor a Cloud Logging project configured (FANOUT_LOG_DIR and
    FANOUT_GCP_PROJECT both unset)."""

    http_status = 501

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"this deployment cannot read the lines of job {job_id!r}: it has no log "
            "directory and no Cloud Logging project; open the job's logs_url"
        )
        self.job_id = job_id

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.job_id,)


class CloudLogsError(FanoutError):
    """Raised when Cloud Logging cannot be read: no credentials, no permission on the
    project, an invalid filter, or the API unreachable."""

    http_status = 502


class InvalidTransition(FanoutError):
    """Raised when a job or batch is asked to move to a status its current status does not
    allow, for example cancelling a completed job. Nothing is written."""

    http_status = 409

    def __init__(self, what: str, current: str, requested: str) -> None:
        super().__init__(f"{what} is {current}; cannot move to {requested}")
        self.what = what
        self.current = current
        self.requested = requested

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # Picklable, so that it crosses process boundaries (worker pools) intact.
        return type(self), (self.what, self.current, self.requested)


class ConfigError(FanoutError):
    """Raised at start-up when the environment holds an unusable setting."""


class PayloadTooLarge(InvalidArgument):
    """Raised when a request body is over the size the endpoint accepts."""

    http_status = 413


class Unauthorized(FanoutError):
    """Raised when a worker call lacks the stack's shared secret."""

    http_status = 401


class Busy(FanoutError):
    """Raised when another attempt holds the batch's lease. Not a failure: the queue
    retries later and finds the batch finished, or the lease expired."""

    http_status = 409


class NotDue(FanoutError):
    """Raised when a batch's task arrives before its job's `not_before` (its schedule_time
    was honoured loosely). Not a failure: the queue retries later, once the job is due."""

    http_status = 409


class TransientError(FanoutError):
    """Raised by a processor when retrying the whole batch later may succeed (a dependency
    is down). The worker answers 503 so the queue retries, until attempts run out."""

    http_status = 503


class ItemFailed(FanoutError):
    """Raised by a processor for one bad item: only that item fails, the batch goes on."""

    http_status = 422


class ItemSkipped(FanoutError):
    """Raised by a processor for an item it does not handle (a file type it has no loader
    for): the item is counted as skipped, not failed, and the batch goes on."""

    http_status = 422


class CollectionNotFound(NotFound):
    """Raised when a search names a collection that does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"collection {name!r} not found")
        self.name = name

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return type(self), (self.name,)


class RouteNotFound(FanoutError):
    """Raised when no API route matches the request path."""

    http_status = 404


class MethodNotAllowedError(FanoutError):
    """Raised when the route exists but not for this HTTP method; `allowed` are the methods
    it takes (the answer's `Allow` header)."""

    http_status = 405

    def __init__(self, message: str, allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.allowed = allowed

    def __reduce__(self) -> tuple[type, tuple[str, tuple[str, ...]]]:
        return type(self), (self.message, self.allowed)


class UnsupportedMediaType(FanoutError):
    """Raised when a state-changing JSON route gets a body that is not UTF-8 JSON declared
    as `application/json` (a form, text/plain, UTF-16, a BOM, no Content-Type). Nothing is
    changed."""

    http_status = 415


class StartupError(FanoutError):
    """Raised when a local process (an emulator, or a member of the local stack) does not
    start: its port is taken, it exits early, or it is not up in time."""


class ProcessCrashLoop(FanoutError):
    """Raised by the local stack when one of its processes keeps dying after restarts
    (`deaths` times within `window` seconds). The stack has stopped when it is raised."""

    def __init__(self, name: str, deaths: int, window: float, status: str, log_file: Path):
        super().__init__(
            f"{name} died {deaths} times within {window:g} s (last: exited with {status}); "
            f"stopped the local stack. See {log_file}"
        )
        self.name, self.deaths, self.window = name, deaths, window
        self.status, self.log_file = status, log_file

    def __reduce__(self) -> tuple[type, tuple[str, int, float, str, Path]]:
        return type(self), (self.name, self.deaths, self.window, self.status, self.log_file)


class EmbeddingError(FanoutError):
    """Raised when the embedding service refuses a request that retrying cannot fix: Vertex
    AI answers 400 (bad input), 403 (no permission), 404 (unknown project or model), or a
    reply that is not the vectors asked for. Carries the service's message and its HTTP
    status; never retried (unavailability raises `TransientError` instead)."""

    http_status = 502

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __reduce__(self) -> tuple[type, tuple[str, int | None]]:
        return type(self), (self.message, self.status)


class CrossSiteRequest(FanoutError):
    """Raised when a state-changing request (a page's POST, the API's cancel, retry,
    delete, ingest) comes from another site, or a page's POST without the token its form
    carries: a browser may have been tricked into sending it. Nothing is changed."""

    http_status = 403
