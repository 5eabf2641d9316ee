"""The jobs REST API (served by the `jobs_api` function), declared as `API_ROUTES`.

Each route names its query model (functions/web/queries.py) and its response model
(functions/web/models.py): the handlers parse and answer through them, and /openapi.json
is generated from the same declarations.
"""

from __future__ import annotations

import flask

from functions.ingestion.query_text import parse_search_query
from functions.service import FanoutService
from functions.store.protocol import JobQuery
from functions.web.hits import shown_sources
from functions.web.http import view_response
from functions.web.job_logs import read_logs
from functions.web.models import (
    BatchesPage,
    BatchView,
    JobDetail,
    JobsPage,
    JobView,
    LogsPage,
    SearchHitView,
    SearchResult,
)
from functions.web.queries import BatchListQuery, JobListQuery, LogQuery, SearchQuery, parse_query
from functions.web.routes import Handler, Route

JOBS = ("jobs",)
API_ROUTES: list[Route] = [
    Route(
        "GET",
        "/jobs",
        "list_jobs",
        "List jobs, newest first, filtered and paged",
        query=JobListQuery,
        response=JobsPage,
        tags=JOBS,
    ),
    Route(
        "GET",
        "/jobs/<job_id>",
        "get_job",
        "One job: its counts, progress, batches per status and logs link",
        response=JobDetail,
        tags=JOBS,
    ),
    Route(
        "DELETE",
        "/jobs/<job_id>",
        "delete_job",
        "Delete a job that has ended, with its batches",
        status=204,
        errors=(409,),
        tags=JOBS,
    ),
    Route(
        "GET",
        "/jobs/<job_id>/batches",
        "list_batches",
        "A job's batches, by index, filtered by status and paged",
        query=BatchListQuery,
        response=BatchesPage,
        tags=JOBS,
    ),
    Route(
        "GET",
        "/jobs/<job_id>/logs",
        "job_logs",
        "A job's log lines, oldest first (the local log file, or Cloud Logging)",
        query=LogQuery,
        response=LogsPage,
        errors=(501, 502),
        tags=JOBS,
    ),
    Route(
        "POST",
        "/jobs/<job_id>/cancel",
        "cancel_job",
        "Cancel a job: its pending batches never run, running ones stop",
        response=JobView,
        errors=(409,),
        tags=JOBS,
    ),
    Route(
        "POST",
        "/jobs/<job_id>/retry",
        "retry_job",
        "Run a failed job's failed batches again",
        response=JobView,
        status=202,
        errors=(409,),
        tags=JOBS,
    ),
    Route(
        "GET",
        "/collections/<name>/search",
        "search_collection",
        "The documents (or chunks) of a collection that best match a query (hybrid search)",
        query=SearchQuery,
        response=SearchResult,
        errors=(502, 503),
        tags=("search",),
    ),
]


class JobsApi:
    """The handlers of `API_ROUTES`, bound to one service."""

    def __init__(self, service: FanoutService) -> None:
        self.service = service
        self.store = service.store

    def handlers(self) -> dict[str, Handler]:
        """Endpoint name -> bound handler, for every route in `API_ROUTES`."""
        return {route.endpoint: getattr(self, route.endpoint) for route in API_ROUTES}

    def list_jobs(self, request: flask.Request) -> flask.Response:
        asked = parse_query(JobListQuery, request.args)
        query = JobQuery.build(
            statuses=asked.status,
            source=asked.source,
            client_id=asked.client_id,
            priority=asked.priority,
            limit=asked.limit,
            cursor=asked.cursor,
        )
        page = self.store.list_jobs(query)
        jobs = [JobView.from_job(job) for job in page.items]
        return view_response(JobsPage(jobs=jobs, next_cursor=page.next_cursor, total=page.total))

    def get_job(self, request: flask.Request, job_id: str) -> flask.Response:
        job = self.store.get_job(job_id)
        summary = self.service.batch_summary(job)
        return view_response(JobDetail.build(job, summary, self.service.settings))

    def list_batches(self, request: flask.Request, job_id: str) -> flask.Response:
        asked = parse_query(BatchListQuery, request.args)
        job = self.store.get_job(job_id)  # the time range of each batch's logs link
        page = self.store.list_batches(
            job_id, status=asked.status, limit=asked.limit, cursor=asked.cursor
        )
        settings = self.service.settings
        batches = [
            BatchView.build(batch, job, settings, self.service.check_task(job, batch))
            for batch in page.items
        ]
        return view_response(
            BatchesPage(batches=batches, next_cursor=page.next_cursor, total=page.total)
        )

    def job_logs(self, request: flask.Request, job_id: str) -> flask.Response:
        """The filters are checked before the backend is chosen: both answer the same 400s."""
        asked = parse_query(LogQuery, request.args)
        job = self.store.get_job(job_id)
        page = read_logs(self.service.settings, job, asked)
        return view_response(LogsPage.build(job.job_id, page))

    def cancel_job(self, request: flask.Request, job_id: str) -> flask.Response:
        return view_response(JobView.from_job(self.service.cancel(job_id)))

    def retry_job(self, request: flask.Request, job_id: str) -> flask.Response:
        return view_response(JobView.from_job(self.service.retry(job_id)), 202)

    def search_collection(self, request: flask.Request, name: str) -> flask.Response:
        # Imported here: LanceDB, Arrow and the model runtime load only where people search,
        # not in every function that imports the API's routes.
        from functions.ingestion.search import search_collection

        asked = parse_query(SearchQuery, request.args)
        settings = self.service.settings
        hits = search_collection(
            settings, name, asked.q, asked.k, by_document=asked.by == "document"
        )
        sources = shown_sources(hits, self.store, settings)
        views = [
            SearchHitView.from_hit(hit, source) for hit, source in zip(hits, sources, strict=True)
        ]
        phrases = list(parse_search_query(asked.q).phrases)
        return view_response(
            SearchResult(collection=name, query=asked.q, by=asked.by, phrases=phrases, hits=views)
        )

    def delete_job(self, request: flask.Request, job_id: str) -> flask.Response:
        self.store.delete_job(job_id)
        return flask.Response(status=204)
