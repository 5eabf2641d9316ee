"""What every log line says about where it comes from: function, job, batch, attempt, trace.

The entry point binds the function; the service binds the job and batch as soon as it knows
them. A `contextvars` variable carries this, so each request thread has its own and nothing
is passed through the call chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace


@dataclass(frozen=True, slots=True)
class LogContext:
    function: str | None = None
    job_id: str | None = None
    batch_id: str | None = None
    source: str | None = None
    # The job's priority class (functions/priority.py): which queue its batches wait in.
    priority: str | None = None
    attempt: int | None = None
    trace_id: str | None = None
    # The request's own trace and span: the span is shown only on lines of that trace.
    request_trace_id: str | None = None
    span_id: str | None = None

    def labels(self) -> dict[str, str]:
        """Cloud Logging labels are strings; absent values are left out."""
        return {
            f.name: str(value)
            for f in fields(self)
            if f.name not in _NOT_LABELS and (value := getattr(self, f.name)) is not None
        }


_NOT_LABELS = frozenset({"trace_id", "request_trace_id", "span_id"})
_EMPTY = LogContext()
_current: ContextVar[LogContext | None] = ContextVar("fanout_log_context", default=None)


def current() -> LogContext:
    return _current.get() or _EMPTY


@contextmanager
def bound(**values: str | int | None) -> Iterator[LogContext]:
    """Add `values` to the context of every line logged inside the block."""
    context = replace(current(), **values)  # type: ignore[arg-type]
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
