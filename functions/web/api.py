"""The jobs REST API (served by the `jobs_api` function).

GET    /jobs                    list: ?status=a,b &source= &client_id= &limit= &cursor=
GET    /jobs/{id}               one job, with counts, progress and a batch summary
GET    /jobs/{id}/batches       its batches: ?status= &limit= &cursor=
GET    /jobs/{id}/logs          its log lines, oldest first: ?batch_id= &severity= &event=
                                &limit= &cursor= (the local file; deployed: Cloud Logging)
POST   /jobs/{id}/cancel        cancel it
POST   /jobs/{id}/retry         re-run its failed batches
DELETE /jobs/{id}               delete it (once terminal)
GET    /collections/{name}/search  ?q= &k=  the chunks that best match q (hybrid search)
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

import flask
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from functions.errors import InvalidArgument, LogsUnavailable, MethodNotAllowedError, RouteNotFound
from functions.ingestion.search import search_collection
from functions.jobs import parse_status
from functions.observability.cloud_logs import CloudLogsReader
from functions.observability.lines import DEFAULT_LOG_PAGE, LogPage, check_log_limit
from functions.observability.links import MARGIN_AFTER, MARGIN_BEFORE, LogsQuery, logs_url
from functions.observability.local_logs import read_job_logs
from functions.observability.severity import parse_severity
from functions.serialize import batch_json, job_json
from functions.service import FanoutService
from functions.store.protocol import DEFAULT_PAGE_SIZE, JobQuery
from functions.web.http import json_response

_ROUTES = Map(
    [
        Rule("/jobs", methods=["GET"], endpoint="list_jobs"),
        Rule("/jobs/<job_id>", methods=["GET"], endpoint="get_job"),
        Rule("/jobs/<job_id>", methods=["DELETE"], endpoint="delete_job"),
        Rule("/jobs/<job_id>/batches", methods=["GET"], endpoint="list_batches"),
        Rule("/jobs/<job_id>/logs", methods=["GET"], endpoint="job_logs"),
        Rule("/jobs/<job_id>/cancel", methods=["POST"], endpoint="cancel_job"),
        Rule("/jobs/<job_id>/retry", methods=["POST"], endpoint="retry_job"),
        Rule("/collections/<name>/search", methods=["GET"], endpoint="search_collection"),
    ],
    strict_slashes=False,
)


def _limit(args: Any) -> int:
    return _int(args, "limit", DEFAULT_PAGE_SIZE)


def _int(args: Any, name: str, default: int) -> int:
    raw = args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be a whole number, got {raw!r}") from None


@functools.cache
def _cloud_logs(project: str) -> CloudLogsReader:
    """One reader per instance: its client is built at its first read, then reused."""
    return CloudLogsReader(project)


def _statuses(args: Any) -> list[str]:
    return [s for value in args.getlist("status") for s in value.split(",") if s]


class JobsApi:
    def __init__(self, service: FanoutService) -> None:
        self.service = service
        self.store = service.store

    def dispatch(self, request: flask.Request) -> flask.Response:
        adapter = _ROUTES.bind("api", path_info=request.path)
        try:
            endpoint, values = adapter.match(method=request.method)
        except NotFound:
            raise RouteNotFound(f"no route {request.method} {request.path}") from None
        except MethodNotAllowed as error:
            allowed = ", ".join(error.valid_methods or [])
            raise MethodNotAllowedError(
                f"{request.method} not allowed on {request.path}; use {allowed}"
            ) from None
        handler = getattr(self, endpoint)
        response: flask.Response = handler(request, **values)
        return response

    def list_jobs(self, request: flask.Request) -> flask.Response:
        query = JobQuery.build(
            statuses=_statuses(request.args),
            source=request.args.get("source"),
            client_id=request.args.get("client_id"),
            limit=_limit(request.args),
            cursor=request.args.get("cursor"),
        )
        page = self.store.list_jobs(query)
        return json_response(
            {
                "jobs": [job_json(j) for j in page.items],
                "next_cursor": page.next_cursor,
                "total": page.total,
            }
        )

    def get_job(self, request: flask.Request, job_id: str) -> flask.Response:
        job = self.store.get_job(job_id)
        summary = self.service.batch_summary(job)
        logs = {"logs_url": logs_url(job, self.service.settings)}
        return json_response(job_json(job) | logs | {"batches": summary})

    def list_batches(self, request: flask.Request, job_id: str) -> flask.Response:
        raw_status = request.args.get("status")
        job = self.store.get_job(job_id)  # the time range of each batch's logs link
        page = self.store.list_batches(
            job_id,
            status=parse_status(raw_status) if raw_status else None,
            limit=_limit(request.args),
            cursor=request.args.get("cursor"),
        )
        return json_response(
            {
                "batches": [
                    batch_json(b) | {"logs_url": logs_url(job, self.service.settings, b)}
                    for b in page.items
                ],
                "next_cursor": page.next_cursor,
                "total": page.total,
            }
        )

    def job_logs(self, request: flask.Request, job_id: str) -> flask.Response:
        """The filters are checked before the backend is chosen: both answer the same 400s."""
        job = self.store.get_job(job_id)
        args = request.args
        severity = parse_severity(raw) if (raw := args.get("severity")) else None
        limit = check_log_limit(_int(args, "limit", DEFAULT_LOG_PAGE))
        batch_id = args.get("batch_id") or None
        event = args.get("event") or None
        cursor = args.get("cursor") or None
        settings = self.service.settings
        page: LogPage
        if settings.log_dir is not None:
            # The job's time range as the Logs Explorer link has it (LogsQuery.for_job).
            page = read_job_logs(
                settings.log_dir,
                job.job_id,
                since=job.created_at - MARGIN_BEFORE,
                until=job.finished_at + MARGIN_AFTER if job.finished_at else None,
                batch_id=batch_id,
                severity=severity,
                event=event,
                cursor=cursor,
                limit=limit,
            )
        elif settings.gcp_project is not None:
            # Deployed: the link's own filter, read from Cloud Logging; the cursor is the
            # API's page token.
            query = LogsQuery.for_job(
                job, project=settings.gcp_project, service_prefix=settings.service_prefix
            )
            query = replace(query, batch_id=batch_id, severity=severity, event=event)
            page = _cloud_logs(settings.gcp_project).read(query, page_token=cursor, limit=limit)
        else:
            raise LogsUnavailable(job.job_id)
        return json_response({"job_id": job.job_id, **page.to_dict()})

    def cancel_job(self, request: flask.Request, job_id: str) -> flask.Response:
        return json_response(job_json(self.service.cancel(job_id)))

    def retry_job(self, request: flask.Request, job_id: str) -> flask.Response:
        return json_response(job_json(self.service.retry(job_id)), 202)

    def search_collection(self, request: flask.Request, name: str) -> flask.Response:
        query = request.args.get("q", "")
        hits = search_collection(self.service.settings, name, query, _int(request.args, "k", 5))
        return json_response(
            {"collection": name, "query": query, "hits": [hit.to_dict() for hit in hits]}
        )

    def delete_job(self, request: flask.Request, job_id: str) -> flask.Response:
        self.store.delete_job(job_id)
        return flask.Response(status=204)
