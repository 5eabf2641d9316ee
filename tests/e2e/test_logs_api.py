"""`GET /jobs/{id}/logs` on a real local stack: a job's lines from the one log file every
process appends to, paged and filtered, and bad queries refused as the rest of the API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from functions.cli.client import ApiError, FanoutClient, call
from functions.local.emulators import free_port_block
from functions.local.stack import LocalStack, StackConfig
from functions.observability.lines import LABELS, LOCAL_LOG_FILE, LogLine
from tests.e2e.conftest import FAST_ENV, JOB_FUNCTIONS, client_for, wait_for, wait_terminal


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("logs-api"),
        port_base=free_port_block(5),
        env=FAST_ENV,
        functions=JOB_FUNCTIONS,
    )
    with LocalStack(config) as running:
        yield running


def _file_lines(stack: LocalStack) -> list[dict[str, Any]]:
    """Every line of the stack's log file, as written (the truth the API is checked on)."""
    path = stack.logs / LOCAL_LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _all_pages(client: FanoutClient, job_id: str, **filters: Any) -> list[dict[str, Any]]:
    pages = [client.logs(job_id, **filters)]
    while pages[-1]["next_cursor"] is not None:
        assert len(pages) < 1000, "pagination does not end"
        pages.append(client.logs(job_id, cursor=pages[-1]["next_cursor"], **filters))
    return pages


def _refused(call_it: Any) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call_it()
    assert caught.value.body["error"] and caught.value.body["message"]
    return caught.value


def test_logs_of_an_unknown_job_are_404(stack: LocalStack) -> None:
    """No such job: 404 JSON, as GET /jobs/{id} answers."""
    client = client_for(stack)
    error = _refused(lambda: client.logs("20260101-000000-000000-deadbeef"))
    assert error.status == 404 and error.body["error"] == "JobNotFound"
    assert _refused(lambda: client.logs("not-a-job-id")).status == 404


def test_bad_log_queries_are_400(stack: LocalStack) -> None:
    """An unknown severity, a limit out of 1..1000 or not a number, a cursor the API did not
    make: 400 JSON naming the problem (in its message, or its `problems` for a parameter
    that fails validation: the one line the CLI prints has both)."""
    client = client_for(stack)
    job_id = client.submit({"source": "noop", "collection": "docs", "items": ["a"]})["job_id"]
    api = stack.url("jobs_api")
    cases: list[tuple[Any, str]] = [
        (lambda: client.logs(job_id, severity="LOUD"), "unknown severity 'LOUD'"),
        (lambda: client.logs(job_id, limit=0), "limit"),
        (lambda: client.logs(job_id, limit=1001), "limit"),
        (lambda: call("GET", f"{api}/jobs/{job_id}/logs?limit=many"), "limit"),
        (lambda: client.logs(job_id, cursor="garbage"), "'garbage'"),
    ]
    for call_it, says in cases:
        error = _refused(call_it)
        assert error.status == 400 and says in str(error), error.body
    assert client.logs(job_id, severity="info", limit=1000)["job_id"] == job_id


def test_two_concurrent_jobs_each_get_exactly_their_lines(stack: LocalStack) -> None:
    """Two jobs run at once, their lines interleaved in the one file: following next_cursor
    gives each job's lines exactly (each once, in file order, none of the other job's), and
    a batch filter gives exactly that batch's lines, from its claim to its completion."""
    client = client_for(stack)
    request = {
        "source": "noop",
        "collection": "docs",
        "items": [f"doc-{i}" for i in range(16)],
        "batch_size": 2,
        # Slower than the progress interval (0.2 s): each batch announces its claim.
        "options": {"delay_ms": 250},
    }
    jobs = [client.submit(request)["job_id"] for _ in range(2)]
    for job_id in jobs:
        assert wait_terminal(client, job_id)["status"] == "completed"

    def finalized(job_id: str) -> bool:
        return any(
            line.get("event") == "job_finalized" and line[LABELS].get("job_id") == job_id
            for line in _file_lines(stack)
        )

    # The end-of-job line is written just after the job turns terminal.
    wait_for(lambda: all(finalized(job_id) for job_id in jobs), what="both jobs' last lines")
    written = _file_lines(stack)
    for job_id in jobs:
        expected = [
            LogLine.from_structured(line).to_dict()
            for line in written
            if line[LABELS].get("job_id") == job_id
        ]
        pages = _all_pages(client, job_id, limit=7)
        assert [line for page in pages for line in page["lines"]] == expected
        assert len(pages) > 2 and all(page["job_id"] == job_id for page in pages)

        batch_id = f"{job_id}_0003"
        pages = _all_pages(client, job_id, batch_id=batch_id, limit=2)
        lines = [line for page in pages for line in page["lines"]]
        assert lines == [line for line in expected if line["labels"].get("batch_id") == batch_id]
        events = [line["event"] for line in lines]
        assert events.index("batch_claimed") < events.index("batch_completed")
