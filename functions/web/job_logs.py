"""One page of a job's log lines, for the JSON API (GET /jobs/{id}/logs) and the readable
page (/ui/jobs/{id}/logs) alike: the local log file, or Cloud Logging when deployed."""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import TYPE_CHECKING

from functions.config import Settings
from functions.errors import LogsUnavailable
from functions.jobs import Job
from functions.observability.lines import DEFAULT_LOG_PAGE, LogPage
from functions.observability.links import MARGIN_AFTER, MARGIN_BEFORE, LogsQuery
from functions.observability.local_logs import read_job_logs
from functions.web.queries import LogQuery

if TYPE_CHECKING:
    from functions.observability.cloud_logs import CloudLogsReader


@functools.cache
def _cloud_logs(project: str) -> CloudLogsReader:
    """One reader per instance: its client is built at its first read, then reused."""
    # Imported here: google-cloud-logging is a fifth of every function's import time, and
    # only a deployed jobs API reads Cloud Logging.
    from functions.observability.cloud_logs import CloudLogsReader

    return CloudLogsReader(project)


def read_logs(settings: Settings, job: Job, asked: LogQuery) -> LogPage:
    """The page of `job`'s lines that `asked` selects; `LogsUnavailable` when this
    deployment has neither a log directory nor a project."""
    if settings.log_dir is not None:
        # The job's time range as the Logs Explorer link has it (LogsQuery.for_job).
        return read_job_logs(
            settings.log_dir,
            job.job_id,
            since=job.created_at - MARGIN_BEFORE,
            until=job.finished_at + MARGIN_AFTER if job.finished_at else None,
            batch_id=asked.batch_id,
            severity=asked.severity,
            event=asked.event,
            cursor=asked.cursor,
            limit=asked.limit,
        )
    if settings.gcp_project is not None:
        # Deployed: the link's own filter, read from Cloud Logging; the cursor is the API's
        # page token.
        query = LogsQuery.for_job(
            job, project=settings.gcp_project, service_prefix=settings.service_prefix
        )
        query = replace(query, batch_id=asked.batch_id, severity=asked.severity, event=asked.event)
        return _cloud_logs(settings.gcp_project).read(
            query, page_token=asked.cursor, limit=asked.limit
        )
    raise LogsUnavailable(job.job_id)


def log_filters(query: LogQuery) -> dict[str, str]:
    """The page's filters as query parameters (the cursor stays out: links set it)."""
    filters = {
        "batch_id": query.batch_id,
        "severity": query.severity,
        "event": query.event,
        "limit": str(query.limit) if query.limit != DEFAULT_LOG_PAGE else None,
    }
    return {name: value for name, value in filters.items() if value}
