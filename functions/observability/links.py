"""Where a job's logs are: a Logs Explorer link in the cloud, the jobs API locally.

The cloud link and `fanout logs` against a deployed stack use one `LogsQuery`, so the lines a
person sees in the console are the lines the CLI prints. The query is Logging query language:
one condition per line (a newline is an implicit AND), on the deployed functions' Cloud Run
services and on the `job_id` / `batch_id` labels every line carries.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from functions.config import Settings
from functions.jobs import Batch, Job
from functions.observability.trace import LOCAL_PROJECT

CONSOLE = "https://console.cloud.google.com/logs/query"
# The entry points in main.py; each is deployed as a function of the same name.
FUNCTIONS = ("ingest", "ingest_pubsub", "run_batch", "jobs_api", "cleanup_jobs")
# Lines logged just before a job's own timestamps (clock skew between instances), and after
# it ended (the end-of-job step, the callback, a late duplicate delivery).
MARGIN_BEFORE = timedelta(minutes=1)
MARGIN_AFTER = timedelta(minutes=10)
# Logs Explorer's range for a job still running: back far enough to reach its start (which
# the query bounds), open towards now. Logs are kept 30 days by default.
OPEN_RANGE = "P30D"


def service_name(prefix: str, function: str) -> str:
    """The Cloud Run service of a 2nd gen function: its name, lower case, `_` as `-`."""
    return f"{prefix}{function}".lower().replace("_", "-")


def quoted(value: str) -> str:
    """A Logging query string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class LogsQuery:
    """The lines of one job (or one of its batches) in Cloud Logging."""

    project: str
    services: Sequence[str]
    job_id: str
    start: datetime
    end: datetime | None = None
    batch_id: str | None = None
    severity: str | None = None
    event: str | None = None

    @classmethod
    def for_job(
        cls, job: Job, *, project: str, service_prefix: str, batch: Batch | None = None
    ) -> LogsQuery:
        """From the job's (or batch's) own timestamps, with a margin; open while it runs."""
        if batch is None:
            start, end = job.created_at, job.finished_at
        else:
            start, end = batch.started_at or job.created_at, batch.finished_at
        return cls(
            project=project,
            services=tuple(service_name(service_prefix, f) for f in FUNCTIONS),
            job_id=job.job_id,
            batch_id=batch.batch_id if batch else None,
            start=start - MARGIN_BEFORE,
            end=end + MARGIN_AFTER if end else None,
        )

    @property
    def filter(self) -> str:
        services = " OR ".join(quoted(s) for s in self.services)
        lines = [
            'resource.type="cloud_run_revision"',
            f"resource.labels.service_name=({services})",
            f"labels.job_id={quoted(self.job_id)}",
        ]
        if self.batch_id is not None:
            lines.append(f"labels.batch_id={quoted(self.batch_id)}")
        if self.severity is not None:
            lines.append(f"severity>={self.severity}")
        if self.event is not None:
            lines.append(f"jsonPayload.event={quoted(self.event)}")
        lines.append(f'timestamp>="{rfc3339(self.start)}"')
        if self.end is not None:
            lines.append(f'timestamp<="{rfc3339(self.end)}"')
        return "\n".join(lines)

    @property
    def time_range(self) -> str:
        if self.end is None:
            return OPEN_RANGE
        return f"{rfc3339(self.start)}/{rfc3339(self.end)}"

    @property
    def url(self) -> str:
        """The Logs Explorer link: `;`-separated parts, the query percent-encoded with
        nothing left safe, the range's `/` encoded."""
        query = urllib.parse.quote(self.filter, safe="")
        time_range = urllib.parse.quote(self.time_range, safe=":")
        project = urllib.parse.quote(self.project, safe="")
        return f"{CONSOLE};query={query};timeRange={time_range}?project={project}"


def local_logs_url(api_url: str, job_id: str, batch_id: str | None = None) -> str:
    """A job's logs on the local stack: the jobs API's `/jobs/{id}/logs`."""
    url = f"{api_url}/jobs/{urllib.parse.quote(job_id, safe='')}/logs"
    if batch_id is not None:
        url += "?" + urllib.parse.urlencode({"batch_id": batch_id})
    return url


def logs_url(job: Job, settings: Settings, batch: Batch | None = None) -> str:
    """The link to `job`'s (or `batch`'s) logs for this deployment."""
    if settings.local:
        return local_logs_url(settings.api_url, job.job_id, batch.batch_id if batch else None)
    return LogsQuery.for_job(
        job,
        project=settings.gcp_project or LOCAL_PROJECT,
        service_prefix=settings.service_prefix,
        batch=batch,
    ).url
