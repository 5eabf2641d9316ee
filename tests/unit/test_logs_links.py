"""Logs Explorer links and the Cloud Logging filter behind them, pinned whole: a link that
is off by one character opens the wrong lines, or none."""

from __future__ import annotations

from datetime import UTC, datetime

from functions.config import Settings
from functions.jobs import Batch, Job, JobStatus
from functions.observability.links import LogsQuery, logs_url

SERVICES = (
    'resource.labels.service_name=("fanout-ingest" OR "fanout-ingest-pubsub" OR '
    '"fanout-run-batch" OR "fanout-jobs-api" OR "fanout-cleanup-jobs")'
)
SERVICES_ENCODED = (
    "resource.labels.service_name%3D%28%22fanout-ingest%22%20OR%20%22fanout-ingest-pubsub"
    "%22%20OR%20%22fanout-run-batch%22%20OR%20%22fanout-jobs-api%22%20OR%20%22fanout-"
    "cleanup-jobs%22%29"
)
JOB_ID = "20261123-101500-000001-abcd1234"
CREATED = datetime(2026, 11, 23, 10, 15, 0, 123456, tzinfo=UTC)
FINISHED = datetime(2026, 11, 23, 10, 20, 30, tzinfo=UTC)


def _job(*, finished: bool = True) -> Job:
    return Job(
        job_id=JOB_ID,
        source="documents",
        collection="docs",
        created_at=CREATED,
        status=JobStatus.COMPLETED if finished else JobStatus.RUNNING,
        finished_at=FINISHED if finished else None,
    )


def test_a_finished_jobs_filter_and_link() -> None:
    """All five functions' lines with the job's label, from a minute before it was created
    to ten minutes after it finished; the link encodes that filter and range exactly."""
    query = LogsQuery.for_job(_job(), project="my-proj", service_prefix="fanout-")
    assert query.filter == "\n".join(
        [
            'resource.type="cloud_run_revision"',
            SERVICES,
            f'labels.job_id="{JOB_ID}"',
            'timestamp>="2026-11-23T10:14:00Z"',
            'timestamp<="2026-11-23T10:30:30Z"',
        ]
    )
    assert query.url == (
        "https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_revision"
        f"%22%0A{SERVICES_ENCODED}%0Alabels.job_id%3D%22{JOB_ID}%22%0A"
        "timestamp%3E%3D%222026-11-23T10%3A14%3A00Z%22%0Atimestamp%3C%3D%222026-11-23T10%3A30"
        "%3A30Z%22;timeRange=2026-11-23T10:14:00Z%2F2026-11-23T10:30:30Z?project=my-proj"
    )


def test_a_running_jobs_range_is_open() -> None:
    """A running job has no end yet: the filter bounds only its start, and the link's range
    reaches back far enough to include it."""
    query = LogsQuery.for_job(_job(finished=False), project="my-proj", service_prefix="fanout-")
    assert query.filter.splitlines()[-1] == 'timestamp>="2026-11-23T10:14:00Z"'
    assert query.url.endswith("%22;timeRange=P30D?project=my-proj")


def test_a_batchs_filter_and_link() -> None:
    """A batch's link adds its label and starts from the batch's own start."""
    batch = Batch(
        batch_id=f"{JOB_ID}_0007",
        job_id=JOB_ID,
        index=7,
        items=(),
        created_at=CREATED,
        started_at=datetime(2026, 11, 23, 10, 16, tzinfo=UTC),
        finished_at=datetime(2026, 11, 23, 10, 17, 5, tzinfo=UTC),
    )
    query = LogsQuery.for_job(_job(), project="p", service_prefix="etl-", batch=batch)
    assert query.filter.splitlines()[1:] == [
        SERVICES.replace("fanout-", "etl-"),
        f'labels.job_id="{JOB_ID}"',
        f'labels.batch_id="{JOB_ID}_0007"',
        'timestamp>="2026-11-23T10:15:00Z"',
        'timestamp<="2026-11-23T10:27:05Z"',
    ]
    assert query.url.endswith(
        f"%0Alabels.batch_id%3D%22{JOB_ID}_0007%22%0Atimestamp%3E%3D%222026-11-23T10%3A15%3A00Z"
        "%22%0Atimestamp%3C%3D%222026-11-23T10%3A27%3A05Z%22"
        ";timeRange=2026-11-23T10:15:00Z%2F2026-11-23T10:27:05Z?project=p"
    )


def test_values_that_need_escaping() -> None:
    """Quotes and backslashes are escaped in the query's string literals; in the link
    nothing is left unencoded (`;` separates the link's parts, `/` the range's ends, `&`
    and `#` would end the query)."""
    query = LogsQuery(
        project="p q",
        services=("svc",),
        job_id='a"b\\c;d e/é',
        batch_id="x&y=z#1",
        severity="WARNING",
        event="batch_failed",
        start=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    assert query.filter == "\n".join(
        [
            'resource.type="cloud_run_revision"',
            'resource.labels.service_name=("svc")',
            'labels.job_id="a\\"b\\\\c;d e/é"',
            'labels.batch_id="x&y=z#1"',
            "severity>=WARNING",
            'jsonPayload.event="batch_failed"',
            'timestamp>="2026-01-02T03:04:05Z"',
        ]
    )
    assert query.url == (
        "https://console.cloud.google.com/logs/query;query=resource.type%3D%22cloud_run_revision"
        "%22%0Aresource.labels.service_name%3D%28%22svc%22%29%0Alabels.job_id%3D%22a%5C%22b%5C"
        "%5Cc%3Bd%20e%2F%C3%A9%22%0Alabels.batch_id%3D%22x%26y%3Dz%231%22%0Aseverity%3E%3D"
        "WARNING%0AjsonPayload.event%3D%22batch_failed%22%0Atimestamp%3E%3D%222026-01-02T03"
        "%3A04%3A05Z%22;timeRange=P30D?project=p%20q"
    )


def test_the_link_follows_the_deployment() -> None:
    """On the local stack a job's logs are the jobs API's; deployed, Logs Explorer's, with
    the service names derived from the configured prefix."""
    local = Settings(queue="local", api_url="http://127.0.0.1:8083")
    assert logs_url(_job(), local) == f"http://127.0.0.1:8083/jobs/{JOB_ID}/logs"
    cloud = Settings(queue="cloud_tasks", gcp_project="prod-1", service_prefix="ingest-")
    url = logs_url(_job(), cloud)
    assert url.startswith("https://console.cloud.google.com/logs/query;query=")
    assert url.endswith("?project=prod-1") and "%22ingest-run-batch%22" in url
