"""`LogLine`: one log entry as the API and the CLI show it, from a local JSON line or a Cloud
Logging entry alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from functions.errors import InvalidArgument

# The file every process of the local stack appends its lines to, in its log directory.
LOCAL_LOG_FILE = "fanout.jsonl"
LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
SPAN = "logging.googleapis.com/spanId"
SOURCE_LOCATION = "logging.googleapis.com/sourceLocation"
# Lines per page: Cloud Logging's entries.list takes at most 1,000, so every backend can.
DEFAULT_LOG_PAGE = 100
MAX_LOG_PAGE = 1000
# Keys of a structured line that are not part of the entry's JSON payload.
_ENVELOPE = frozenset(
    {
        "time",
        "severity",
        "message",
        LABELS,
        TRACE,
        SPAN,
        SOURCE_LOCATION,
        "logging.googleapis.com/trace_sampled",
        "httpRequest",
    }
)


@dataclass(frozen=True, slots=True)
class LogLine:
    time: str
    severity: str
    message: str
    labels: Mapping[str, str] = field(default_factory=dict)
    trace: str | None = None
    event: str | None = None
    # The rest of the JSON payload: an event's fields (counts, failed items, errors).
    fields: Mapping[str, Any] = field(default_factory=dict)
    source_location: Mapping[str, Any] | None = None

    @classmethod
    def from_structured(cls, line: Mapping[str, Any]) -> LogLine:
        """From a line as `FanoutLogHandler` writes it (the local log file)."""
        payload = {k: v for k, v in line.items() if k not in _ENVELOPE}
        return cls(
            time=str(line.get("time", "")),
            severity=str(line.get("severity") or "DEFAULT"),
            message=str(line.get("message", "")),
            labels=dict(line.get(LABELS) or {}),
            trace=line.get(TRACE) or None,
            event=payload.pop("event", None),
            fields=payload,
            source_location=line.get(SOURCE_LOCATION) or None,
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogLine:
        """From its `to_dict()` form, as the jobs API sends it."""
        return cls(
            time=str(data.get("time") or ""),
            severity=str(data.get("severity") or "DEFAULT"),
            message=str(data.get("message") or ""),
            labels=dict(data.get("labels") or {}),
            trace=data.get("trace"),
            event=data.get("event"),
            fields=dict(data.get("fields") or {}),
            source_location=data.get("source_location"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "severity": self.severity,
            "message": self.message,
            "event": self.event,
            "labels": dict(self.labels),
            "trace": self.trace,
            "fields": dict(self.fields),
            "source_location": dict(self.source_location) if self.source_location else None,
        }


@dataclass(frozen=True, slots=True)
class LogPage:
    """One page of a job's lines, oldest first."""

    lines: list[LogLine]
    # Pass it back for the next page; None when the lines were read to the end.
    next_cursor: str | None
    # Where a follower (`fanout logs --follow`) continues once more lines are written.
    resume_cursor: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lines": [line.to_dict() for line in self.lines],
            "next_cursor": self.next_cursor,
            "resume_cursor": self.resume_cursor,
        }


def check_log_limit(limit: int) -> int:
    """`limit` if it is a valid page size for log lines; InvalidArgument otherwise."""
    if not 1 <= limit <= MAX_LOG_PAGE:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LOG_PAGE}, got {limit}")
    return limit
