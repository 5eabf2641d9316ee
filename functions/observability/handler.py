"""The log handler: google-cloud-logging's `StructuredLogHandler`, one JSON object per line.

Cloud Run (and so Cloud Functions 2nd gen) turns each stdout line into a log entry, reading
`severity`, the labels, the trace and the source location from it. Locally the same lines are
appended to one file that the jobs API and `make dev` read.

Two additions to the library's handler, both made before its own filter runs:
- the labels and the job's trace come from the `LogContext`, so a batch's lines carry its
  job's trace even where the HTTP request has another (the sweeper, a callback);
- every line carries `time` (RFC 3339): Cloud Logging reads it as the entry's timestamp, and
  the local reader needs it, since a file has no receive time.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from google.cloud.logging_v2.handlers import StructuredLogHandler
from google.cloud.logging_v2.handlers.structured_log import GCP_FORMAT

from functions.observability.context import LogContext, current
from functions.observability.lines import LOCAL_LOG_FILE
from functions.observability.trace import LOCAL_PROJECT, trace_resource

_TIMED_FORMAT = '{"time": "%(_time_str)s", ' + GCP_FORMAT.removeprefix("{")


class _Encoder(json.JSONEncoder):
    """Fields of events may hold datetimes, paths and the like: log them as text."""

    def default(self, o: Any) -> Any:
        if isinstance(o, datetime):
            return o.isoformat()
        return str(o)


# A line's labels and source location change with its context and call site, of which
# there are few: their JSON is made once, not for every line.
@functools.lru_cache(maxsize=4096)
def _labels_json(logger: str, context: LogContext) -> str:
    return json.dumps({"python_logger": logger, **context.labels()}, ensure_ascii=False)


@functools.lru_cache(maxsize=1024)
def _source_location_json(file: str, line: int, function: str) -> str:
    return json.dumps({"line": line, "file": file, "function": function}, ensure_ascii=False)


class LineStream(Protocol):
    """Where lines go: stdout, or `AppendOnlyLines`."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class FanoutLogHandler(StructuredLogHandler):
    def __init__(self, *, project: str, stream: LineStream | None = None) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            project_id=project, stream=stream, json_encoder_cls=_Encoder
        )
        self.project = project
        self._second: tuple[int, str] = (-1, "")
        # The library's formatter class, given a format that also writes `time`.
        self._gcp_formatter = type(self._gcp_formatter)(_TIMED_FORMAT)

    def filter(self, record: logging.LogRecord) -> bool:
        """Fill in the fields the library's format reads, as its `CloudLoggingFilter` would,
        but from the `LogContext` rather than from the Flask request. That filter parses
        the request (URL, user agent, trace headers) again for every line: two thirds of a
        line's cost, and with it logging took 16% of end-to-end throughput (bench.e2e).
        The entry point binds the request's trace once; the service binds the job's."""
        context = current()
        extra_labels = getattr(record, "labels", None)
        if extra_labels:
            labels = {"python_logger": record.name, **context.labels(), **extra_labels}
            record._labels_str = json.dumps(labels, ensure_ascii=False)
        else:
            record._labels_str = _labels_json(record.name, context)
        trace = context.trace_id
        record._trace_str = trace_resource(self.project, trace) if trace else ""
        # A span belongs to the request's trace, which need not be the job's (the sweeper).
        own_span = trace is not None and trace == context.request_trace_id
        record._span_id_str = (context.span_id or "") if own_span else ""
        record._trace_sampled_str = "false"
        # Cloud Run logs every request with its httpRequest; lines need not repeat it.
        record._http_request_str = "{}"
        record._source_location_str = _source_location_json(
            record.pathname, record.lineno, record.funcName
        )
        record._time_str = self._rfc3339(record.created)
        return True

    def _rfc3339(self, created: float) -> str:
        """`created` in RFC 3339, UTC, to the microsecond; the seconds part is formatted
        once per second (lines come by the hundred per second)."""
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int((created - second) * 1_000_000):06d}Z"

    def emit_instrumentation_info(self) -> None:
        """Skipped: the library's one-off line naming its version would be written twice
        (it logs through a child of the root logger) and carry a job's labels."""


class AppendOnlyLines:
    """A text stream over a file opened with O_APPEND: each `write` is one `os.write`, so
    lines from several processes never interleave (the handler writes a line per call)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def write(self, text: str) -> int:
        data = text.encode()
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        return len(text)

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self) -> None:
        os.close(self._fd)


_configured = threading.Lock()
_handler: FanoutLogHandler | None = None


def configure_logging(*, project: str | None, log_dir: Path | None, level: int) -> None:
    """Route all logging through one `FanoutLogHandler`: stdout in the cloud, or
    `log_dir/fanout.jsonl` on the local stack. Called once per instance, at its first
    request (never at import: an import must not touch the filesystem or stdout)."""
    global _handler
    with _configured:
        root = logging.getLogger()
        if _handler is not None:
            root.removeHandler(_handler)
        stream: LineStream = AppendOnlyLines(log_dir / LOCAL_LOG_FILE) if log_dir else sys.stdout
        _handler = FanoutLogHandler(project=project or LOCAL_PROJECT, stream=stream)
        # Earlier plain-text handlers (logging.basicConfig, a test runner's) would write
        # every line a second time, unstructured.
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:
                root.removeHandler(handler)
        root.addHandler(_handler)
        root.setLevel(level)
        # No line shows the thread, process or multiprocessing names: not collecting them
        # is the logging HOWTO's own advice for speed.
        logging.logThreads = False
        logging.logProcesses = False
        logging.logMultiprocessing = False
