"""The dev console: how a line is shown, and the tailer that follows the local log file."""

from __future__ import annotations

import json
import queue
import threading
from pathlib import Path
from typing import Any

from rich.text import Text

from functions.observability.console import LogTailer, render
from functions.observability.lines import LogLine

JOB = "20261123-191349-000000-0a1b2c3d"
FAILED = {
    "time": "2026-11-23T19:13:49.457741Z",
    "event": "batch_failed",
    "failed_items": {"x.pdf": "bad", "y.docx": "not a Word file"},
    "message": "batch failed: 2 of 3",
    "severity": "ERROR",
    "logging.googleapis.com/labels": {
        "python_logger": "fanout.events",
        "function": "run_batch",
        "job_id": JOB,
        "batch_id": f"{JOB}_0001",
        "attempt": "2",
    },
    "logging.googleapis.com/trace": "projects/p1/traces/aaaa",
}


def _style_of(text: Text, part: str) -> str:
    start = text.plain.index(part)
    return " ".join(
        str(span.style) for span in text.spans if span.start <= start < span.end and span.style
    )


def test_a_failed_event_shows_its_ids_severity_and_failed_items() -> None:
    """A failed batch event is one line (time, severity, function, batch id and attempt,
    event, message) with each failed item and its error indented below; the severity and
    the event are coloured as failures."""
    text = render(LogLine.from_structured(FAILED))

    assert text.plain.splitlines() == [
        f"19:13:49.457Z ERROR   run_batch    {JOB}_0001 #2 batch_failed batch failed: 2 of 3",
        "    x.pdf: bad",
        "    y.docx: not a Word file",
    ]
    assert _style_of(text, "ERROR") == "red"
    assert "red" in _style_of(text, "batch_failed")


def test_a_job_line_shows_the_job_id_and_its_fields() -> None:
    """A line with no batch shows the job id; an event's scalar fields follow the message as
    key=value; an INFO line is not coloured as a failure."""
    line = LogLine(
        time="2026-11-23T19:14:00.5Z",
        severity="INFO",
        message="job completed",
        labels={"function": "run_batch", "job_id": JOB},
        event="job_finalized",
        fields={"status": "completed", "batches": 3, "stats": {"processed": 9}},
    )

    text = render(line)

    assert text.plain == (
        f"19:14:00.500Z INFO    run_batch    {JOB} job_finalized job completed "
        "status=completed batches=3"
    )
    assert "red" not in _style_of(text, "job_finalized")
    assert _style_of(text, "INFO") == "blue"


def _append(path: Path, data: str) -> None:
    with path.open("a") as file:
        file.write(data)


def _json_line(message: str, **labels: Any) -> str:
    return json.dumps({"message": message, "logging.googleapis.com/labels": labels}) + "\n"


def test_the_tailer_shows_only_lines_appended_after_it_was_made(tmp_path: Path) -> None:
    """What the file held when the tailer was made (earlier runs) is skipped; lines
    appended later are returned once each, oldest first."""
    path = tmp_path / "fanout.jsonl"
    _append(path, _json_line("old"))
    tailer = LogTailer(path, lambda line: None)

    _append(path, _json_line("new 1", job_id=JOB) + _json_line("new 2"))
    first = tailer.poll()
    _append(path, _json_line("new 3"))
    second = tailer.poll()

    assert [line.message for line in first] == ["new 1", "new 2"]
    assert first[0].labels == {"job_id": JOB}
    assert [line.message for line in second] == ["new 3"]
    assert tailer.poll() == []


def test_the_tailer_holds_a_partial_line_until_it_is_complete(tmp_path: Path) -> None:
    """A line whose newline is not written yet is not shown; once completed it is shown
    whole, once."""
    path = tmp_path / "fanout.jsonl"
    path.touch()
    tailer = LogTailer(path, lambda line: None)
    whole = _json_line("a long line", job_id=JOB)

    _append(path, whole[:10])
    before = tailer.poll()
    _append(path, whole[10:])
    after = tailer.poll()

    assert before == []
    assert [line.message for line in after] == ["a long line"]


def test_the_tailer_starts_on_a_file_created_after_it(tmp_path: Path) -> None:
    """Started before the stack wrote anything, the tailer waits for the file and then
    shows all of it; a line that is not JSON is shown as its text."""
    path = tmp_path / "logs" / "fanout.jsonl"
    tailer = LogTailer(path, lambda line: None)
    nothing = tailer.poll()

    path.parent.mkdir()
    _append(path, _json_line("first") + "Fatal Python error: Aborted\n")

    assert nothing == []
    assert [line.message for line in tailer.poll()] == ["first", "Fatal Python error: Aborted"]


def test_the_tailer_thread_delivers_lines_and_stops(tmp_path: Path) -> None:
    """Started, the tailer's daemon thread hands each new line to its callback; `stop()`
    ends the thread."""
    path = tmp_path / "fanout.jsonl"
    received: queue.Queue[LogLine] = queue.Queue()
    tailer = LogTailer(path, received.put, interval=0.01).start()
    try:
        _append(path, _json_line("hello", job_id=JOB))
        line = received.get(timeout=30)
    finally:
        tailer.stop()

    assert line.message == "hello" and line.labels == {"job_id": JOB}
    assert not [t for t in threading.enumerate() if t.name == "log-tailer"]
