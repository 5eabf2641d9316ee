"""The live `cleanup_jobs` function of a local stack: a dry run (`?dry_run=true`, or in the
body) reports what the cleanup would do and changes nothing, its summary is logged as one
`swept` line, bad values are refused with the error shape, and the real run then does what
the dry run said."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from functions.local.stack import LocalStack
from tests.e2e.conftest import SWEPT, StackFactory, all_batches, client_for, wait_for, wait_terminal

LABELS = "logging.googleapis.com/labels"


def _cleanup(stack: LocalStack, query: str = "", body: bytes | None = None) -> tuple[int, Any]:
    """POST to cleanup_jobs as Cloud Scheduler does (no body) or with `body`."""
    request = urllib.request.Request(
        stack.url("cleanup_jobs") + "/" + query,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"} if body is not None else {},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _swept_lines(stack: LocalStack) -> list[dict[str, Any]]:
    text = (stack.logs / "fanout.jsonl").read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    return [line for line in lines if line.get("event") == "swept"]


def test_a_dry_run_reports_changes_nothing_and_the_real_run_does_it(
    make_stack: StackFactory,
) -> None:
    """The queue refuses 4 of a job's 6 tasks at submit. Once the enqueue grace has passed,
    the dry run (query or body) names those 4 batches, logged by cleanup_jobs, and they
    stay unenqueued; bad dry_run values get a 400 naming the problem; the real run
    enqueues exactly those 4 and the job completes."""
    stack = make_stack(process_env={"ingest": {"FANOUT_CHAOS_ENQUEUE_LIMIT": "2"}}, functions=SWEPT)
    client = client_for(stack)
    items = [f"doc-{i}" for i in range(6)]
    job_id = client.submit(
        {"source": "noop", "collection": "docs", "items": items, "batch_size": 1}
    )["job_id"]
    wait_for(lambda: client.job(job_id)["completed_batches"] == 2, what="2 enqueued batches")
    refused = [f"{job_id}_{i:04d}" for i in range(2, 6)]

    def unenqueued() -> list[str]:
        return [b["batch_id"] for b in all_batches(client, job_id) if b["enqueued_at"] is None]

    assert unenqueued() == refused
    dry = wait_for(
        lambda: (r := _cleanup(stack, "?dry_run=true")[1])["enqueued"] and r,
        what="the enqueue grace to pass",
    )
    assert dry["dry_run"] is True
    assert (dry["enqueued"], dry["ids"]["enqueued"]) == (4, refused)
    assert dry["deleted"] == dry["requeued"] == dry["redispatched"] == 0
    assert _cleanup(stack, body=b'{"dry_run": true}') == (200, dry)
    assert _cleanup(stack, "?dry_run=1", b'{"dry_run": true}') == (200, dry)
    lines = [line for line in _swept_lines(stack) if line["enqueued"]]
    assert len(lines) == 3  # the three dry runs that found them, one line each
    line = lines[0]
    assert line[LABELS]["function"] == "cleanup_jobs"
    assert line["dry_run"] is True and line["ids"] == {"enqueued": refused}
    assert line["message"].startswith("swept: dry run, would do: 4 enqueued")

    bad = {
        ("?dry_run=maybe", None): "dry_run",
        ("?dryrun=true", None): "dryrun",
        ("", b'{"dry_run": "yes"}'): "dry_run",
        ("", b'{"dry_run": true, "force": true}'): "force",
    }
    for (query, body), field in bad.items():
        status, error = _cleanup(stack, query, body)
        assert status == 400, (query, body)
        assert error["error"] == "InvalidArgument"
        assert [p["field"] for p in error["problems"]] == [field]
    for query, body, message in [
        ("?dry_run=true&dry_run=false", None, "query parameter 'dry_run' is given 2 times"),
        ("?dry_run=true", b'{"dry_run": false}', "dry_run is True in the query and False"),
        ("", b"[true]", "the body must be a JSON object"),
    ]:
        status, error = _cleanup(stack, query, body)
        assert status == 400 and error["error"] == "InvalidArgument"
        assert error["message"].startswith(message), error
    assert unenqueued() == refused
    assert client.job(job_id)["status"] == "running"

    status, done = _cleanup(stack)  # as Cloud Scheduler calls it: POST, no body
    assert status == 200
    assert done == dry | {"dry_run": False}
    assert _swept_lines(stack)[-1]["dry_run"] is False
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed" and job["completed_batches"] == 6
