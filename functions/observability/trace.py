"""W3C trace context: the trace a job keeps, carried on every task as `traceparent`.

A job's lines in every function share its trace id, so Cloud Logging groups them under one
trace. The incoming trace is taken from `traceparent`, then from Google's older
`X-Cloud-Trace-Context`; anything malformed is ignored and a new trace is started, because a
bad tracing header must never fail a request.
"""

from __future__ import annotations

import re
import secrets
from typing import Protocol

TRACEPARENT = "traceparent"
CLOUD_TRACE_CONTEXT = "X-Cloud-Trace-Context"


# version-trace-parent-flags; version ff and all-zero ids are invalid (W3C Trace Context).
# The project named in trace resources when none is configured (the local stack).
LOCAL_PROJECT = "local"
_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})(?P<trace>[0-9a-f]{32})-(?!0{16})(?P<span>[0-9a-f]{16})"
    r"-[0-9a-f]{2}(-.*)?$"
)
# TRACE_ID[/SPAN_ID][;o=OPTIONS], the span id in decimal
_CLOUD_TRACE = re.compile(r"^(?!0{32})(?P<trace>[0-9a-fA-F]{32})(/(?P<span>\d*))?(;o=\d)?$")
_TRACE_ID = re.compile(r"^(?!0{32})[0-9a-f]{32}$")


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    span = secrets.token_hex(8)
    return span if span != "0" * 16 else new_span_id()


def is_trace_id(value: str) -> bool:
    return bool(_TRACE_ID.match(value))


class Headers(Protocol):
    """Flask's request headers, or a plain dict."""

    def get(self, key: str, /) -> str | None: ...


def incoming_trace(headers: Headers) -> tuple[str, str | None] | None:
    """The trace id and span id of an incoming request, or None if it carries no valid
    trace."""
    parent = (headers.get(TRACEPARENT) or "").strip().lower()
    if match := _TRACEPARENT.match(parent):
        return match["trace"], match["span"]
    cloud = (headers.get(CLOUD_TRACE_CONTEXT) or "").strip()
    if match := _CLOUD_TRACE.match(cloud):
        span = int(match["span"] or 0)
        return match["trace"].lower(), f"{span:016x}" if 0 < span < 2**64 else None
    return None


def trace_id_from(headers: Headers) -> str | None:
    """The trace id of an incoming request, or None if it carries no valid one."""
    incoming = incoming_trace(headers)
    return incoming[0] if incoming else None


def traceparent(trace_id: str, span_id: str | None = None) -> str:
    """A `traceparent` header continuing `trace_id` from a fresh span (sampled)."""
    return f"00-{trace_id}-{span_id or new_span_id()}-01"


def trace_resource(project: str, trace_id: str) -> str:
    """The value of `logging.googleapis.com/trace`."""
    return f"projects/{project}/traces/{trace_id}"
