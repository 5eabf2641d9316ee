"""Typed errors. Raised deep in the code; turned into HTTP status codes only at the edge.

Each class says when it is raised and carries the HTTP status the edge should answer with,
so that `main.py` / `api.py` need one mapping and no knowledge of where the error came from.
"""

from __future__ import annotations


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


class BatchNotFound(NotFound):
    """Raised when no batch has the given id."""

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"batch {batch_id!r} not found")
        self.batch_id = batch_id


class InvalidTransition(FanoutError):
    """Raised when a job or batch is asked to move to a status its current status does not
    allow, for example cancelling a completed job. Nothing is written."""

    http_status = 409

    def __init__(self, what: str, current: str, requested: str) -> None:
        super().__init__(f"{what} is {current}; cannot move to {requested}")
        self.current = current
        self.requested = requested


class ConfigError(FanoutError):
    """Raised at start-up when the environment holds an unusable setting."""
