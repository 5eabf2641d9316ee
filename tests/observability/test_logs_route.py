"""`GET /jobs/{id}/logs` in process: the jobs API on a real SQLite store, reading a log file
the real handler wrote. (tests/e2e/test_logs_api.py drives it over HTTP on a local stack.)"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import flask
import pytest
from google.cloud.logging_v2.services.logging_service_v2.pagers import ListLogEntriesPager
from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
from pytest_mock import MockerFixture

from functions.config import Settings
from functions.jobs import Job
from functions.observability.events import Event
from functions.observability.links import LogsQuery
from functions.service import FanoutService
from functions.web.app import web_router
from functions.web.http import handle_errors
from functions.web.job_logs import _cloud_logs
from tests.observability.conftest import LogFile
from tests.support.services import sqlite_service


@contextmanager
def running(
    tmp_path: Path, log_dir: Path | None, project: str | None = None
) -> Iterator[FanoutService]:
    settings = Settings(
        sqlite_path=tmp_path / "fanout.sqlite3", log_dir=log_dir, gcp_project=project
    )
    with sqlite_service(settings) as service:
        yield service


@pytest.fixture
def service(tmp_path: Path) -> Iterator[FanoutService]:
    with running(tmp_path, tmp_path / "logs") as service:
        yield service


def get(service: FanoutService, path: str) -> tuple[int, Any]:
    """The API's answer to GET `path`, through the same error edge as main.jobs_api."""
    with flask.Flask(__name__).test_request_context(path):
        response = handle_errors(web_router(service).dispatch)(flask.request)
    return response.status_code, json.loads(response.get_data())


def new_job(service: FanoutService) -> str:
    job, _ = service.store.create_job(Job.new(source="noop", collection="docs"))
    return job.job_id


def test_logs_route_pages_the_jobs_lines_with_filters(service: FanoutService) -> None:
    """The body is the job id and a page of its lines; filters and cursors come from the
    query string, and following next_cursor gives every line once."""
    assert service.settings.log_dir is not None
    log = LogFile(service.settings.log_dir)
    job, other = new_job(service), new_job(service)
    batch = f"{job}_0000"
    for i in range(5):
        log.line(f"claimed {i}", job=job, batch=f"{job}_{i:04d}", event=Event.BATCH_CLAIMED)
        log.line(f"their {i}", job=other, batch=f"{other}_{i:04d}", event=Event.BATCH_CLAIMED)
    log.line("slow", job=job, batch=batch, level=logging.WARNING)
    status, body = get(service, f"/jobs/{job}/logs")
    assert status == 200 and body["job_id"] == job
    assert [line["message"] for line in body["lines"]] == [f"claimed {i}" for i in range(5)] + [
        "slow"
    ]
    assert body["next_cursor"] is None and body["resume_cursor"]
    assert body["lines"][0]["event"] == "batch_claimed"
    assert body["lines"][0]["labels"]["batch_id"] == batch

    seen: list[str] = []
    cursor = ""
    while True:
        status, page = get(service, f"/jobs/{job}/logs?limit=2{cursor}")
        assert status == 200
        seen += [line["message"] for line in page["lines"]]
        if page["next_cursor"] is None:
            break
        cursor = f"&cursor={page['next_cursor']}"
    assert seen == [line["message"] for line in body["lines"]]

    def messages(query: str) -> list[str]:
        status, page = get(service, f"/jobs/{job}/logs?{query}")
        assert status == 200
        return [line["message"] for line in page["lines"]]

    assert messages(f"batch_id={batch}") == ["claimed 0", "slow"]
    assert messages("severity=warning") == ["slow"]
    assert messages(f"event=batch_claimed&batch_id={job}_0003") == ["claimed 3"]
    assert messages("batch_id=&severity=&event=") == seen  # empty parameters are no filter
    assert messages(f"cursor={body['resume_cursor']}") == []


def test_logs_route_keeps_to_a_finished_jobs_time_range(service: FanoutService) -> None:
    """A finished job's lines end 10 minutes after it did (as in its Logs Explorer link)."""
    assert service.settings.log_dir is not None
    log = LogFile(service.settings.log_dir)
    job = new_job(service)
    created = service.store.get_job(job).created_at
    service.store.cancel_job(job, now=created + timedelta(seconds=1))
    log.line("while it ran", job=job)
    log.at = created + timedelta(minutes=30)
    log.line("long after", job=job)
    status, body = get(service, f"/jobs/{job}/logs")
    assert status == 200 and [line["message"] for line in body["lines"]] == ["while it ran"]


def test_logs_route_refuses_bad_queries(service: FanoutService) -> None:
    """Unknown job 404; unknown severity, bad limit, bad cursor 400; each a JSON error. An
    invalid parameter is named in the message, and its problem in `problems`."""
    job = new_job(service)
    refused = {
        "/jobs/20260101-000000-000000-deadbeef/logs": (404, "JobNotFound", "not found"),
        f"/jobs/{job}/logs?severity=loud": (400, "InvalidArgument", "unknown severity 'loud'"),
        f"/jobs/{job}/logs?limit=0": (400, "InvalidArgument", "limit"),
        f"/jobs/{job}/logs?limit=1001": (400, "InvalidArgument", "limit"),
        f"/jobs/{job}/logs?limit=ten": (400, "InvalidArgument", "limit"),
        f"/jobs/{job}/logs?cursor=garbage": (400, "InvalidCursor", "'garbage'"),
    }
    for path, (status, error, says) in refused.items():
        answer = get(service, path)
        assert answer[0] == status, path
        problems = " ".join(p["problem"] for p in answer[1].get("problems", []))
        assert answer[1]["error"] == error, answer
        assert says in f"{answer[1]['message']} {problems}", answer


def test_logs_route_with_nowhere_to_read_says_where_the_logs_are(tmp_path: Path) -> None:
    """With no local log directory and no Cloud Logging project the lines cannot be read:
    501 pointing at the job's logs_url. Unknown jobs and bad filters are refused first."""
    with running(tmp_path, None) as service:
        job = new_job(service)
        status, body = get(service, f"/jobs/{job}/logs")
        assert status == 501 and body["error"] == "LogsUnavailable"
        assert "Cloud Logging" in body["message"] and "logs_url" in body["message"]
        assert get(service, "/jobs/20260101-000000-000000-deadbeef/logs")[0] == 404
        assert get(service, f"/jobs/{job}/logs?severity=loud")[0] == 400
        assert get(service, f"/jobs/{job}/logs?limit=0")[0] == 400


def test_deployed_the_logs_route_reads_cloud_logging_with_the_links_filter(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    """Without a log file but with a project, the route asks Cloud Logging for exactly the
    filter of the job's Logs Explorer link (plus the request's filters), with the cursor as
    the page token, and answers its entries as lines and its next token as next_cursor."""
    api_class = mocker.patch("functions.observability.cloud_logs.LoggingServiceV2Client")
    _cloud_logs.cache_clear()  # a reader of an earlier test holds an earlier client
    entry = LogEntry(
        insert_id="i1",
        timestamp=datetime(2026, 11, 23, 19, 14, tzinfo=UTC),
        severity="ERROR",
        labels={"job_id": "J", "function": "run_batch"},
        json_payload={"message": "batch failed", "event": "batch_failed", "error": "x"},
    )
    api_class.return_value.list_log_entries.return_value = ListLogEntriesPager(
        method=lambda *a, **k: ListLogEntriesResponse(),
        request=ListLogEntriesRequest(),
        response=ListLogEntriesResponse(entries=[entry], next_page_token="token-2"),
    )
    with running(tmp_path, None, project="prod-1") as service:
        job = service.store.get_job(new_job(service))
        status, body = get(
            service, f"/jobs/{job.job_id}/logs?batch_id=B&severity=error&cursor=token-1&limit=7"
        )
    assert status == 200
    (request,) = [c.kwargs["request"] for c in api_class.return_value.list_log_entries.mock_calls]
    expected = LogsQuery.for_job(job, project="prod-1", service_prefix="fanout-")
    expected = replace(expected, batch_id="B", severity="ERROR")
    assert request.filter == expected.filter and 'labels.batch_id="B"' in request.filter
    assert (request.page_token, request.page_size) == ("token-1", 7)
    assert list(request.resource_names) == ["projects/prod-1"]
    assert body["next_cursor"] == "token-2"
    (line,) = body["lines"]
    assert (line["event"], line["severity"], line["message"]) == (
        "batch_failed",
        "ERROR",
        "batch failed",
    )
    assert line["fields"] == {"error": "x"}
