"""A job's logs on a real local stack: every line structured as Cloud Logging reads it,
labelled with its job, and on the job's one trace, across every function that touched it."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from functions.cli.client import call
from functions.local.stack import LocalStack
from functions.observability.trace import new_trace_id, traceparent
from tests.e2e.conftest import (
    CallbackReceiver,
    StackFactory,
    all_batches,
    client_for,
    wait_for,
    wait_terminal,
)

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"


def _log_lines(stack: LocalStack) -> list[dict[str, Any]]:
    path: Path = stack.logs / "fanout.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines()]  # every line must parse


def _events(lines: list[dict[str, Any]], job_id: str, event: str) -> list[dict[str, Any]]:
    return [
        line
        for line in lines
        if line.get("event") == event and line[LABELS].get("job_id") == job_id
    ]


def test_a_jobs_lines_are_structured_labelled_and_on_its_trace(
    make_stack: StackFactory, callbacks: CallbackReceiver
) -> None:
    """A job submitted with a `traceparent`, one failing item, every task delivered twice,
    then retried: every line of it, from ingest, run_batch and jobs_api, has the fields
    Cloud Logging reads, the job's labels and the caller's trace. The failed item is named
    in a failed-event line, the callback carries the trace, and no line has the worker
    secret or the callback URL's token."""
    stack = make_stack(process_env={"dispatcher": {"FANOUT_DUPLICATE_DELIVERY": "true"}})
    client = client_for(stack)
    fail_file = stack.state_dir / "bad-items.txt"
    fail_file.write_text("doc-3\n")
    trace = new_trace_id()
    _, accepted = call(
        "POST",
        stack.url("ingest") + "/",
        {
            "source": "noop",
            "collection": "docs",
            "items": [f"doc-{i}" for i in range(10)],
            "batch_size": 2,
            # Items slower than the stack's progress interval (0.2 s): batches announce
            # themselves while they run (batch_claimed).
            "options": {"fail_items_file": str(fail_file), "delay_ms": 250},
            "callback_url": callbacks.url + "?token=cb-s3cret",
            "priority": "low",
        },
        headers={"traceparent": traceparent(trace)},
    )
    job_id = accepted["job_id"]
    assert accepted["trace_id"] == trace
    assert accepted["logs_url"] == f"{stack.url('jobs_api')}/jobs/{job_id}/logs"
    assert wait_terminal(client, job_id)["status"] == "failed"
    fail_file.write_text("")
    client.retry(job_id)
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed" and job["trace_id"] == trace
    wait_for(
        lambda: len(_events(_log_lines(stack), job_id, "callback_sent")) == 2,
        what="both callbacks to be logged",
    )

    lines = _log_lines(stack)
    for line in lines:
        assert {"time", "severity", "message", LABELS} <= line.keys(), line
        assert line["logging.googleapis.com/sourceLocation"]["file"], line
        assert line[LABELS]["function"] in {"ingest", "run_batch", "jobs_api", "cleanup_jobs"}
    mine = [line for line in lines if line[LABELS].get("job_id") == job_id]
    assert {line[LABELS]["function"] for line in mine} == {"ingest", "run_batch", "jobs_api"}
    assert {line[TRACE] for line in mine} == {f"projects/local/traces/{trace}"}
    for line in mine:
        labels = line[LABELS]
        if line.get("event", "").startswith("batch_"):
            assert labels["batch_id"].startswith(job_id) and labels["source"] == "noop", line
            assert int(labels["attempt"]) >= 1, line
        elif line.get("event", "").startswith(("job_", "callback_")):
            assert "batch_id" not in labels and "attempt" not in labels, line
        if "event" in line:  # every event of the job names its priority class
            assert labels["priority"] == "low", line

    events = {line["event"] for line in mine if "event" in line}
    assert {
        "submitted",
        "planned",
        "enqueued",
        "batch_claimed",
        "batch_refused",  # the second delivery of each task
        "batch_completed",
        "batch_failed",
        "job_finalized",
        "job_retried",
        "callback_sent",
    } <= events
    for ended in _events(lines, job_id, "batch_completed"):
        assert re.fullmatch(r".+ pid \d+", ended["ran_on"]), ended
    (failed,) = _events(lines, job_id, "batch_failed")
    assert failed["failed_items"] == {"doc-3": f"item 'doc-3' is listed in {fail_file}"}
    assert failed["severity"] == "ERROR" and failed[LABELS]["batch_id"] == f"{job_id}_0001"

    written = (stack.logs / "fanout.jsonl").read_text()
    assert stack.secret not in written and "cb-s3cret" not in written
    (sent, _) = _events(lines, job_id, "callback_sent")
    assert sent["callback"] == callbacks.url  # where it went, without its query
    assert len(callbacks.headers) == 2
    assert all(
        re.fullmatch(f"00-{trace}-[0-9a-f]{{16}}-01", headers["traceparent"])
        for headers in callbacks.headers
    )
    batches = all_batches(client, job_id)
    assert all(re.fullmatch(r".+ pid \d+", b["ran_on"]) for b in batches)
    assert job["logs_url"] == accepted["logs_url"]
    assert [b["logs_url"] for b in batches] == [
        f"{accepted['logs_url']}?batch_id={b['batch_id']}" for b in batches
    ]


def test_a_malformed_traceparent_starts_a_new_trace(make_stack: StackFactory) -> None:
    """A bad tracing header never fails a submission: the job gets a trace of its own. (And
    a batch that ends within a progress interval logs one line: its outcome.)"""
    stack = make_stack()
    _, accepted = call(
        "POST",
        stack.url("ingest") + "/",
        {"source": "noop", "collection": "docs", "items": ["a"]},
        headers={"traceparent": "00-not-a-trace-01"},
    )
    job_id = accepted["job_id"]
    assert re.fullmatch("[0-9a-f]{32}", accepted["trace_id"])
    assert client_for(stack).job(job_id)["trace_id"] == accepted["trace_id"]
    wait_for(lambda: _events(_log_lines(stack), job_id, "job_finalized"), what="the job's end")
    batch_lines = [
        line for line in _log_lines(stack) if line[LABELS].get("batch_id") == f"{job_id}_0000"
    ]
    assert [line["event"] for line in batch_lines] == ["batch_completed"]
