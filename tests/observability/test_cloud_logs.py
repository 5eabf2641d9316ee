"""Reading a job's lines from Cloud Logging: the query sent, the entries as `LogLine`s, and
`fanout logs` against a deployed API.

Nothing real can answer a Cloud Logging call here, so the generated Logging client class is
the one thing replaced; its answers are the library's own response and pager types. The
deployed jobs API is a real HTTP server (on 127.0.0.2: an address that is not the local
stack's) serving a job as the API serializes it.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from google.api_core.exceptions import PermissionDenied
from google.cloud.logging_v2.services.logging_service_v2.pagers import ListLogEntriesPager
from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse, LogEntry
from pytest_mock import MockerFixture

from functions.cli import main as cli
from functions.errors import CloudLogsError
from functions.jobs import BATCH_STATUSES, Batch, Job, JobStatus, batch_id_for
from functions.observability.cloud_logs import LATE_ARRIVALS, CloudLogsReader, LogsFollower
from functions.observability.lines import LogLine
from functions.observability.links import LogsQuery, rfc3339
from functions.serialize import job_json

JOB_ID = "20261123-191300-000000-0a1b2c3d"
CREATED = datetime(2026, 11, 23, 19, 13, tzinfo=UTC)
FINISHED = datetime(2026, 11, 23, 19, 20, tzinfo=UTC)
LABELS = {
    "python_logger": "fanout.events",
    "function": "run_batch",
    "job_id": JOB_ID,
    "batch_id": f"{JOB_ID}_0001",
    "attempt": "2",
}


def _job(status: JobStatus = JobStatus.COMPLETED, job_id: str = JOB_ID) -> Job:
    finished = status in (JobStatus.COMPLETED, JobStatus.FAILED)
    return Job(
        job_id=job_id,
        source="noop",
        collection="docs",
        created_at=CREATED,
        started_at=CREATED,
        finished_at=FINISHED if finished else None,
        status=status,
        total_batches=2,
    )


def _entry(insert_id: str, at: datetime, message: str, **payload: Any) -> LogEntry:
    return LogEntry(
        insert_id=insert_id,
        timestamp=at,
        severity="INFO",
        labels=LABELS,
        json_payload={"message": message, **payload},
    )


def _pager(*entries: LogEntry, next_page_token: str = "") -> ListLogEntriesPager:
    """The library's pager over one answer; asking it for a further page is an error (the
    reader must ask for each page itself, with its token)."""

    def no_more_pages(*args: Any, **kwargs: Any) -> ListLogEntriesResponse:
        raise AssertionError("the pager fetched a page on its own")

    return ListLogEntriesPager(
        method=no_more_pages,
        request=ListLogEntriesRequest(),
        response=ListLogEntriesResponse(entries=list(entries), next_page_token=next_page_token),
    )


@pytest.fixture
def logging_api(mocker: MockerFixture) -> Any:
    """The Logging client class at the edge; `.return_value` is the client the code uses."""
    api_class = mocker.patch("functions.observability.cloud_logs.LoggingServiceV2Client")
    api_class.return_value.list_log_entries.return_value = _pager()
    return api_class


def _requests(logging_api: Any) -> list[ListLogEntriesRequest]:
    client = logging_api.return_value
    return [call.kwargs["request"] for call in client.list_log_entries.call_args_list]


def _query(job: Job, **changes: Any) -> LogsQuery:
    query = LogsQuery.for_job(job, project="p1", service_prefix="fanout-")
    return replace(query, **changes)


BATCH = Batch(
    batch_id=f"{JOB_ID}_0001",
    job_id=JOB_ID,
    index=1,
    items=("a",),
    created_at=CREATED,
    started_at=CREATED + timedelta(minutes=2),
    finished_at=CREATED + timedelta(minutes=3),
)
# Each query, with lines its filter must have (and must not have).
QUERIES = {
    "job": (
        _query(_job()),
        [f'labels.job_id="{JOB_ID}"', 'timestamp>="2026-11-23T19:12:00Z"'],
        ["labels.batch_id", "severity>=", "jsonPayload.event"],
    ),
    "batch": (
        LogsQuery.for_job(_job(), project="p1", service_prefix="fanout-", batch=BATCH),
        [f'labels.batch_id="{JOB_ID}_0001"', 'timestamp>="2026-11-23T19:14:00Z"'],
        [],
    ),
    "running job": (
        _query(_job(JobStatus.RUNNING)),
        ['timestamp>="2026-11-23T19:12:00Z"'],
        ["timestamp<="],
    ),
    "severity and event": (
        _query(_job(), severity="WARNING", event="batch_failed"),
        ["severity>=WARNING", 'jsonPayload.event="batch_failed"'],
        [],
    ),
    "ids to escape": (
        _query(_job(job_id='odd"job\\id'), batch_id='odd"job\\id_0001'),
        ['labels.job_id="odd\\"job\\\\id"', 'labels.batch_id="odd\\"job\\\\id_0001"'],
        [],
    ),
}


@pytest.mark.parametrize(("query", "present", "absent"), QUERIES.values(), ids=QUERIES.keys())
def test_read_sends_exactly_the_query_filter(
    logging_api: Any, query: LogsQuery, present: list[str], absent: list[str]
) -> None:
    """`read` lists the project's entries with exactly the `LogsQuery` filter (the one the
    Logs Explorer link carries), oldest first: for a job, a batch, a job still running (no
    upper time bound), with severity and event, and with ids that need escaping."""
    CloudLogsReader("p1").read(query)

    [request] = _requests(logging_api)
    assert request.filter == query.filter
    assert request.resource_names == ["projects/p1"]
    assert request.order_by == "timestamp asc"
    lines = request.filter.splitlines()
    assert all(line in lines for line in present), request.filter
    assert not any(line.startswith(prefix) for prefix in absent for line in lines)


def test_read_pages_with_the_api_token(logging_api: Any) -> None:
    """The page size is the limit; the first page sends no token, and the API's next page
    token is the page's `next_cursor`, sent back as is for the next page; the last page has
    no cursor."""
    client = logging_api.return_value
    client.list_log_entries.side_effect = [
        _pager(_entry("a", FINISHED, "one"), next_page_token="token-2"),
        _pager(_entry("b", FINISHED, "two")),
    ]
    reader, query = CloudLogsReader("p1"), _query(_job())

    first = reader.read(query, limit=1)
    second = reader.read(query, page_token=first.next_cursor, limit=1)

    assert [r.page_token for r in _requests(logging_api)] == ["", "token-2"]
    assert [r.page_size for r in _requests(logging_api)] == [1, 1]
    assert (first.next_cursor, second.next_cursor) == ("token-2", None)
    assert [line.message for line in first.lines + second.lines] == ["one", "two"]


def test_a_struct_entry_is_the_line_the_local_file_would_have(logging_api: Any) -> None:
    """A JSON-payload entry becomes the same `LogLine` as the local file's line for the same
    log call: message and event out of the payload, the other fields (counts back as whole
    numbers, not the Struct's doubles), severity name, RFC 3339 time, labels, trace and
    source location."""
    at = datetime(2026, 11, 23, 19, 13, 49, 457741, tzinfo=UTC)
    trace = "projects/p1/traces/aaaa"
    location = {"file": "/workspace/functions/service.py", "line": 42, "function": "run"}
    logging_api.return_value.list_log_entries.return_value = _pager(
        LogEntry(
            insert_id="x1",
            timestamp=at,
            severity="ERROR",
            labels=LABELS,
            trace=trace,
            source_location=location,
            json_payload={
                "message": "batch failed: 1 of 2",
                "event": "batch_failed",
                "failed_items": {"x.pdf": "bad"},
                "processed": 2,
                "ratio": 0.5,
            },
        )
    )
    local = {
        "time": "2026-11-23T19:13:49.457741Z",
        "event": "batch_failed",
        "failed_items": {"x.pdf": "bad"},
        "processed": 2,
        "ratio": 0.5,
        "message": "batch failed: 1 of 2",
        "severity": "ERROR",
        "logging.googleapis.com/labels": LABELS,
        "logging.googleapis.com/trace": trace,
        "logging.googleapis.com/sourceLocation": location,
    }

    [line] = CloudLogsReader("p1").read(_query(_job())).lines

    assert line == LogLine.from_structured(local)
    assert line.fields == {"failed_items": {"x.pdf": "bad"}, "processed": 2, "ratio": 0.5}
    assert isinstance(line.fields["processed"], int)


def test_a_text_entry_is_its_message(logging_api: Any) -> None:
    """A text-payload entry (a stray print, a crash's output) is a line whose message is the
    text, with no event or fields; no severity set reads as DEFAULT."""
    logging_api.return_value.list_log_entries.return_value = _pager(
        LogEntry(
            insert_id="t1",
            timestamp=datetime(2026, 11, 23, 19, 14, tzinfo=UTC),
            labels={"job_id": JOB_ID},
            text_payload="Traceback (most recent call last): ...",
        )
    )

    [line] = CloudLogsReader("p1").read(_query(_job())).lines

    assert line == LogLine(
        time="2026-11-23T19:14:00Z",
        severity="DEFAULT",
        message="Traceback (most recent call last): ...",
        labels={"job_id": JOB_ID},
    )


def test_the_client_is_built_at_the_first_read_only(logging_api: Any) -> None:
    """Constructing a reader builds no Logging client (that looks up credentials); the first
    read builds one, later reads reuse it."""
    reader = CloudLogsReader("p1")
    assert logging_api.call_count == 0

    reader.read(_query(_job()))
    reader.read(_query(_job()))

    assert logging_api.call_count == 1


def test_an_api_error_is_a_clear_fanout_error(logging_api: Any) -> None:
    """A refused read (no permission on the project) is a `CloudLogsError` naming the
    cause, which the CLI prints without a traceback."""
    logging_api.return_value.list_log_entries.side_effect = PermissionDenied(  # type: ignore[no-untyped-call]
        "logging.view"
    )

    with pytest.raises(CloudLogsError, match=r"cannot read Cloud Logging: .*logging\.view"):
        CloudLogsReader("p1").read(_query(_job()))


def test_a_follower_returns_each_line_once_and_rereads_a_late_window(logging_api: Any) -> None:
    """The first poll reads from the job's start; the next reads from `LATE_ARRIVALS` before
    the newest line seen (entries can become visible late) and returns only entries it has
    not returned before, by insert id."""
    t1, t2 = CREATED + timedelta(minutes=5), CREATED + timedelta(minutes=6)
    logging_api.return_value.list_log_entries.side_effect = [
        _pager(_entry("a", t1, "one"), _entry("b", t2, "two")),
        _pager(_entry("b", t2, "two"), _entry("c", t1, "late"), _entry("d", t2, "three")),
        _pager(),
    ]
    query = _query(_job(JobStatus.RUNNING))
    follower = LogsFollower(CloudLogsReader("p1"), query)

    polls = [[line.message for line in follower.poll()] for _ in range(3)]

    assert polls == [["one", "two"], ["late", "three"], []]
    filters = [request.filter for request in _requests(logging_api)]
    assert filters[0] == query.filter
    assert filters[1] == replace(query, start=t2 - LATE_ARRIVALS).filter
    assert f'timestamp>="{rfc3339(t2 - LATE_ARRIVALS)}"' in filters[1].splitlines()


def test_a_follower_reads_every_page_of_a_poll(logging_api: Any) -> None:
    """A poll pages until the API has no next token, including past an empty page (the API
    stops a search at a time limit and answers with a token to continue)."""
    logging_api.return_value.list_log_entries.side_effect = [
        _pager(_entry("a", FINISHED, "one"), next_page_token="t2"),
        _pager(next_page_token="t3"),
        _pager(_entry("b", FINISHED, "two")),
    ]

    lines = LogsFollower(CloudLogsReader("p1"), _query(_job())).poll()

    assert [line.message for line in lines] == ["one", "two"]
    assert [r.page_token for r in _requests(logging_api)] == ["", "t2", "t3"]


# -- `fanout logs` against a deployed jobs API ---------------------------------------------


class DeployedApi:
    """A real HTTP server answering `GET /jobs/{id}` with a job's JSON; each answer takes
    the next of `statuses` (the last one repeats), so a job can end while it is followed."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.statuses: list[JobStatus] = [job.status]
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, status = api.answer(self.path)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.server = ThreadingHTTPServer(("127.0.0.2", 0), Handler)
        self.url = f"http://127.0.0.2:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, path: str) -> tuple[dict[str, Any], int]:
        if path != f"/jobs/{self.job.job_id}":
            return {"error": "JobNotFound", "message": f"job {path} not found"}, 404
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        job = replace(self.job, status=status)
        return job_json(job) | {"batches": {s.value: 0 for s in BATCH_STATUSES}}, 200

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def deployed(mocker: MockerFixture) -> Iterator[DeployedApi]:
    """A deployed API is called with a Google ID token (functions/cli/auth.py); nothing here
    can mint one, so a stand-in does."""
    mocker.patch("google.oauth2.id_token.fetch_id_token", return_value="id-token")
    api = DeployedApi(_job())
    yield api
    api.close()


@pytest.fixture(autouse=True)
def _cli_signals() -> Iterator[None]:
    """`cli.main` turns SIGTERM and SIGHUP into Ctrl-C for its process: give pytest its
    own handlers back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("FANOUT_GCP_PROJECT", "FANOUT_SERVICE_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_logs_of_a_deployed_job_read_cloud_logging_with_the_links_query(
    logging_api: Any,
    deployed: DeployedApi,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`fanout logs JOB --batch 1 --severity warning --event batch_failed` against a
    deployed API reads the job from the API and sends Cloud Logging the `LogsQuery` of that
    job (its time range, the deployment's service prefix) narrowed to the batch, severity
    and event; it prints the lines and their failed items, and exits 0."""
    env.setenv("FANOUT_SERVICE_PREFIX", "acme-")
    logging_api.return_value.list_log_entries.return_value = _pager(
        _entry(
            "a",
            FINISHED,
            "batch failed: 1 of 2",
            event="batch_failed",
            failed_items={"x.pdf": "bad"},
        )
    )

    code = cli.main(
        [
            "logs",
            JOB_ID,
            "--api-url",
            deployed.url,
            "--project",
            "p1",
            "--batch",
            "1",
            "--severity",
            "warning",
            "--event",
            "batch_failed",
        ]
    )

    out = capsys.readouterr().out
    assert code == 0, out
    job = Job.from_dict(json.loads(json.dumps(job_json(deployed.job))))
    expected = replace(
        LogsQuery.for_job(job, project="p1", service_prefix="acme-"),
        batch_id=batch_id_for(JOB_ID, 1),
        severity="WARNING",
        event="batch_failed",
    )
    [request] = _requests(logging_api)
    assert request.filter == expected.filter
    assert 'resource.labels.service_name=("acme-ingest"' in request.filter
    assert request.resource_names == ["projects/p1"]
    assert f"{JOB_ID}_0001 #2 batch_failed batch failed: 1 of 2" in out
    assert "    x.pdf: bad" in out.splitlines()


def test_follow_prints_new_lines_until_the_deployed_job_ends(
    logging_api: Any,
    deployed: DeployedApi,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`--follow` polls Cloud Logging while the job runs and prints each line once; once
    the API says the job ended, it reads once more (lines logged as it ended) and exits 0.
    The project comes from FANOUT_GCP_PROJECT."""
    env.setenv("FANOUT_GCP_PROJECT", "p9")
    deployed.job = _job(JobStatus.RUNNING)
    deployed.statuses = [JobStatus.RUNNING, JobStatus.RUNNING, JobStatus.COMPLETED]
    t1, t2 = CREATED + timedelta(minutes=1), CREATED + timedelta(minutes=2)
    logging_api.return_value.list_log_entries.side_effect = [
        _pager(_entry("a", t1, "first line")),
        _pager(_entry("a", t1, "first line"), _entry("b", t2, "second line")),
        _pager(_entry("b", t2, "second line"), _entry("c", t2, "job completed")),
    ]

    code = cli.main(["logs", JOB_ID, "--api-url", deployed.url, "--follow", "--interval", "0"])

    out = capsys.readouterr().out
    assert code == 0, out
    messages = ("first line", "second line", "job completed")
    assert [out.count(message) for message in messages] == [1, 1, 1]
    assert out.index("first line") < out.index("second line") < out.index("job completed")
    first = _requests(logging_api)[0]
    assert first.resource_names == ["projects/p9"]
    assert "timestamp<=" not in first.filter  # the job was running: an open range


def test_a_deployed_job_without_a_project_is_a_clear_error(
    logging_api: Any,
    deployed: DeployedApi,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --project or FANOUT_GCP_PROJECT the command says where the project comes
    from and exits 2, without reading Cloud Logging."""
    code = cli.main(["logs", JOB_ID, "--api-url", deployed.url])

    out = capsys.readouterr().err
    assert code == 2
    assert "--project or FANOUT_GCP_PROJECT" in out and "Traceback" not in out
    assert _requests(logging_api) == []


def test_a_bad_severity_or_unknown_job_is_a_clear_error(
    deployed: DeployedApi, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown severity names the allowed ones (a usage error: exit 2), an unknown job
    says it is not found (an API error: exit 1, like the other commands'), without a
    traceback."""
    bad_severity = cli.main(["logs", JOB_ID, "--api-url", deployed.url, "--severity", "loud"])
    severity_out = capsys.readouterr().err
    unknown = cli.main(["logs", "20990101-000000-000000-ffffffff", "--api-url", deployed.url])
    unknown_out = capsys.readouterr().err

    assert bad_severity == 2 and "unknown severity 'loud'" in severity_out
    assert "WARNING" in severity_out
    assert unknown == 1 and "HTTP 404" in unknown_out and "not found" in unknown_out
    assert "Traceback" not in severity_out + unknown_out
