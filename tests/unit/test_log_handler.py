"""The structured lines Fanout writes: what Cloud Logging reads from each, and the local
file several processes append to at once."""

from __future__ import annotations

import json
import logging
import multiprocessing
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import flask
import pytest

from functions.observability.context import bound
from functions.observability.entry import logged_as
from functions.observability.events import Event, emit
from functions.observability.handler import AppendOnlyLines, FanoutLogHandler

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fanout.jsonl"
    handler = FanoutLogHandler(project="proj-1", stream=AppendOnlyLines(path))
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield path
    root.removeHandler(handler)
    root.setLevel(level)


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_event_line_has_what_cloud_logging_reads(log_file: Path) -> None:
    """Severity, message, source location, the job's labels (strings) and trace, a time,
    and the event with its fields in the JSON payload."""
    context = {"function": "run_batch", "job_id": "J", "batch_id": "J_0001", "source": "noop"}
    with bound(**context, attempt=2), bound(trace_id=TRACE):
        emit(Event.BATCH_FAILED, "batch failed", level=logging.ERROR, failed_items={"a": "x"})
    (line,) = _lines(log_file)
    assert line["severity"] == "ERROR" and line["message"] == "batch failed"
    assert line["event"] == "batch_failed" and line["failed_items"] == {"a": "x"}
    assert line["logging.googleapis.com/labels"] == {
        "python_logger": "fanout.events",
        "function": "run_batch",
        "job_id": "J",
        "batch_id": "J_0001",
        "source": "noop",
        "attempt": "2",
    }
    assert line["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{TRACE}"
    location = line["logging.googleapis.com/sourceLocation"]
    assert location["file"] == __file__ and location["function"].startswith("test_an_event")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None


def test_an_error_line_keeps_its_traceback(log_file: Path) -> None:
    try:
        raise ValueError("the cause")
    except ValueError:
        logging.getLogger("fanout.test").exception("it failed")
    (line,) = _lines(log_file)
    assert line["message"].startswith("it failed\nTraceback")
    assert "ValueError: the cause" in line["message"]


def test_outside_a_job_no_job_labels_or_trace(log_file: Path) -> None:
    """A line logged outside any job carries no job labels, so no job's logs show it."""
    logging.getLogger("fanout.test").warning("plain")
    (line,) = _lines(log_file)
    assert line["logging.googleapis.com/labels"] == {"python_logger": "fanout.test"}
    assert line["logging.googleapis.com/trace"] == ""


def _write_lines(path: Path, tag: str, count: int) -> None:
    handler = FanoutLogHandler(project="p", stream=AppendOnlyLines(path))
    logger = logging.getLogger(f"fanout.writer.{tag}")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for n in range(count):
        logger.info("%s %d %s", tag, n, tag * 3000)  # lines far longer than a pipe buffer


def test_processes_appending_at_once_never_interleave_lines(tmp_path: Path) -> None:
    """The local stack's functions all append to one file: every line stays whole."""
    path = tmp_path / "fanout.jsonl"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_write_lines, args=(path, t, 300)) for t in "abc"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    lines = _lines(path)
    assert len(lines) == 900
    assert all(line["message"].split()[2] == line["message"][0] * 3000 for line in lines)


def test_a_requests_lines_carry_its_trace_until_a_jobs_trace_replaces_it(log_file: Path) -> None:
    """Lines outside any job carry the incoming request's trace and span; lines about a job
    carry the job's trace, and no span of another trace (the sweeper's case)."""
    job_trace = "0af7651916cd43dd8448eb211c80319c"

    @logged_as("cleanup_jobs")
    def entry_point() -> None:
        logging.getLogger("fanout.test").info("sweeping")
        with bound(job_id="J", trace_id=job_trace):
            logging.getLogger("fanout.test").info("about job J")

    headers = {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"}
    with flask.Flask(__name__).test_request_context("/", headers=headers):
        entry_point()
    sweeping, about_job = _lines(log_file)
    assert sweeping["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{TRACE}"
    assert sweeping["logging.googleapis.com/spanId"] == "00f067aa0ba902b7"
    assert sweeping["logging.googleapis.com/labels"]["function"] == "cleanup_jobs"
    assert about_job["logging.googleapis.com/trace"] == f"projects/proj-1/traces/{job_trace}"
    assert about_job["logging.googleapis.com/spanId"] == ""
