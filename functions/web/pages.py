"""The web pages under /ui on jobs_api: jobs, one job (live while it runs), submit, search.

Server-rendered (Jinja2, everything escaped), no build step and no assets from elsewhere.
Pages read the same store and call the same service as the JSON API, and parse their query
strings with the API's models, so they refuse the same input, answering a friendly page
with the status the API would give. Every POST is checked for cross-site origin and token
(functions/web/csrf.py), and cancel and retry ask for a confirmation first: a `confirm()`
with JavaScript, else a confirmation page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import flask
from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import RequestEntityTooLarge

from functions.errors import (
    CollectionNotFound,
    InvalidTransition,
    PayloadTooLarge,
)
from functions.ingest_request import MAX_BODY_BYTES
from functions.ingestion.search_limits import COLLECTION_NAME
from functions.jobs import Job, JobStatus, check_transition
from functions.observability.links import logs_url
from functions.observability.severity import SEVERITIES
from functions.observability.trace import trace_id_from
from functions.processors import processor_names
from functions.service import FanoutService
from functions.store.protocol import JobQuery
from functions.web.csrf import FIELD, check_same_site_post
from functions.web.hits import shown_sources
from functions.web.http import ANSWERED, error_answer
from functions.web.job_logs import log_filters, read_logs
from functions.web.models import BODY, ErrorBody, Problem, SearchHitView
from functions.web.page_models import (
    ActionForm,
    BatchPageQuery,
    JobPageQuery,
    NoQuery,
    SearchPageQuery,
    SubmitForm,
)
from functions.web.page_response import page, redirect
from functions.web.page_views import (
    BATCH_STATUS_NAMES,
    STATUSES,
    BatchRow,
    PagerLinks,
    RequestFacts,
    batch_filters,
    batch_page_params,
    job_filters,
    pager_for,
    percent,
    ui_path,
    with_query,
)
from functions.web.queries import LogQuery, parse_query
from functions.web.routes import Handler, Route

log = logging.getLogger("fanout.pages")

_TAGS = ("pages",)
_ACTION_ERRORS = (403, 409)

PAGE_ROUTES: list[Route] = [
    Route(
        "GET", "/ui", "ui_home", "The pages' home: the jobs list", status=303, html=True, tags=_TAGS
    ),
    Route(
        "GET",
        "/ui/jobs",
        "jobs_page",
        "Jobs, newest first: filters, paging",
        query=JobPageQuery,
        html=True,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/jobs/<job_id>",
        "job_page",
        "One job: progress, stats, batches, logs links, actions; live while it runs",
        query=BatchPageQuery,
        html=True,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/jobs/<job_id>/live",
        "job_live",
        "The live region of a job's page (HTML fragment), polled while the job runs",
        query=BatchPageQuery,
        html=True,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/jobs/<job_id>/logs",
        "job_logs_page",
        "A job's log lines to read: filtered by batch, severity and event, page by page",
        query=LogQuery,
        html=True,
        errors=(501, 502),
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/jobs/<job_id>/cancel",
        "cancel_confirm",
        "Asks to confirm cancelling the job",
        query=NoQuery,
        html=True,
        errors=(409,),
        tags=_TAGS,
    ),
    Route(
        "POST",
        "/ui/jobs/<job_id>/cancel",
        "cancel_action",
        "Cancel the job (confirmed), then back to its page",
        form=ActionForm,
        status=303,
        html=True,
        errors=_ACTION_ERRORS,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/jobs/<job_id>/retry",
        "retry_confirm",
        "Asks to confirm retrying the job's failed batches",
        query=NoQuery,
        html=True,
        errors=(409,),
        tags=_TAGS,
    ),
    Route(
        "POST",
        "/ui/jobs/<job_id>/retry",
        "retry_action",
        "Retry the job's failed batches (confirmed), then back to its page",
        form=ActionForm,
        status=303,
        html=True,
        errors=_ACTION_ERRORS,
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/submit",
        "submit_page",
        "The form to start an ingestion",
        query=NoQuery,
        html=True,
        tags=_TAGS,
    ),
    Route(
        "POST",
        "/ui/submit",
        "submit_action",
        "Start an ingestion; on success to the job's page, else the form with its errors",
        form=SubmitForm,
        status=303,
        html=True,
        errors=(403,),
        tags=_TAGS,
    ),
    Route(
        "GET",
        "/ui/collections/<name>",
        "collection_page",
        "Search a collection: the box and its hits",
        query=SearchPageQuery,
        html=True,
        tags=_TAGS,
    ),
]

# The titles of the error page, by status.
_TITLES = {
    400: "Invalid input",
    403: "Refused",
    404: "Not found",
    409: "Not possible now",
    413: "Too large",
}


def _fields(problems: list[Problem]) -> dict[str, list[str]]:
    """Problems by top-level form field ("items.3" is a problem of "items")."""
    by_field: dict[str, list[str]] = {}
    for problem in problems:
        name, _, rest = problem.field.partition(".")
        text = f"{rest}: {problem.problem}" if rest else problem.problem
        by_field.setdefault(name, []).append(text)
    return by_field


class Pages:
    """The handlers of `PAGE_ROUTES`, bound to one service."""

    def __init__(self, service: FanoutService) -> None:
        self.service = service
        self.store = service.store

    def handlers(self) -> dict[str, Handler]:
        return {
            route.endpoint: self._friendly(getattr(self, route.endpoint)) for route in PAGE_ROUTES
        }

    # -- errors as pages ------------------------------------------------------------------

    def _friendly(self, handler: Callable[..., flask.Response]) -> Handler:
        """Typed errors and invalid input become an error page with the API's status."""

        def answer(request: flask.Request, **values: Any) -> flask.Response:
            try:
                return handler(request, **values)
            except ANSWERED as error:
                return self._error_page(request, *error_answer(request, error))

        return answer

    def _error_page(self, request: flask.Request, body: ErrorBody, status: int) -> flask.Response:
        title = _TITLES.get(status, "Something went wrong")
        return page(
            request, "error.html", self.service.clock(), status, title=title, body=body, code=status
        )

    # -- pages ----------------------------------------------------------------------------

    def ui_home(self, request: flask.Request) -> flask.Response:
        return redirect(ui_path("jobs"))

    def jobs_page(self, request: flask.Request) -> flask.Response:
        query = parse_query(JobPageQuery, request.args)
        found = self.store.list_jobs(
            JobQuery(
                statuses=frozenset(query.status),
                source=query.source,
                client_id=query.client_id,
                priority=query.priority,
                limit=query.limit,
                cursor=query.cursor,
            )
        )
        filters = job_filters(query)
        return page(
            request,
            "jobs.html",
            self.service.clock(),
            jobs=found.items,
            query=query,
            statuses=STATUSES,
            chosen={s.value for s in query.status},
            links=PagerLinks.build(pager_for(found, query), ui_path("jobs"), filters),
            filters=filters,
            filtered=bool(filters.keys() - {"limit"}),
            percent=percent,
            job_path=lambda job: ui_path("jobs", job.job_id),
        )

    def job_page(self, request: flask.Request, job_id: str) -> flask.Response:
        return self._job(request, job_id, "job.html")

    def job_live(self, request: flask.Request, job_id: str) -> flask.Response:
        return self._job(request, job_id, "job_live.html")

    def _job(self, request: flask.Request, job_id: str, template: str) -> flask.Response:
        query = parse_query(BatchPageQuery, request.args)
        job = self.store.get_job(job_id)
        summary = self.service.batch_summary(job)
        batches = self.store.list_batches(
            job.job_id, status=query.status, limit=query.limit, cursor=query.cursor
        )
        settings = self.service.settings
        path = ui_path("jobs", job.job_id)
        filters = batch_filters(query)
        return page(
            request,
            template,
            self.service.clock(),
            job=job,
            summary=summary,
            facts=RequestFacts.of(job),
            percent=percent(job),
            rows=[
                BatchRow.build(b, job, settings, self.service.check_task(job, b))
                for b in batches.items
            ],
            links=PagerLinks.build(pager_for(batches, query), path, filters),
            filters=filters,
            query=query,
            statuses=BATCH_STATUS_NAMES,
            logs_url=logs_url(job, settings),
            path=path,
            collection_path=ui_path("collections", job.collection),
            live_url=with_query(f"{path}/live", batch_page_params(query)),
            can_cancel=not job.is_terminal,
            can_retry=job.status is JobStatus.FAILED,
        )

    def job_logs_page(self, request: flask.Request, job_id: str) -> flask.Response:
        """The lines GET /jobs/{id}/logs answers, from the same reader, as a table."""
        query = parse_query(LogQuery, request.args)
        job = self.store.get_job(job_id)
        found = read_logs(self.service.settings, job, query)
        path = ui_path("jobs", job.job_id, "logs")
        filters = log_filters(query)
        return page(
            request,
            "job_logs.html",
            self.service.clock(),
            job=job,
            lines=found.lines,
            query=query,
            severities=SEVERITIES,
            job_path=ui_path("jobs", job.job_id),
            path=path,
            json_url=with_query(f"/jobs/{quote(job.job_id, safe='')}/logs", filters),
            first_url=with_query(path, filters) if query.cursor else None,
            next_url=(
                with_query(path, filters | {"cursor": found.next_cursor})
                if found.next_cursor
                else None
            ),
        )

    # -- cancel and retry -----------------------------------------------------------------

    def cancel_confirm(self, request: flask.Request, job_id: str) -> flask.Response:
        parse_query(NoQuery, request.args)
        job = self.store.get_job(job_id)
        check_transition("job", job.status, JobStatus.CANCELLED)
        return self._confirm(request, job, "cancel")

    def retry_confirm(self, request: flask.Request, job_id: str) -> flask.Response:
        parse_query(NoQuery, request.args)
        job = self.store.get_job(job_id)
        if job.status is not JobStatus.FAILED:  # as the store refuses it
            raise InvalidTransition("job", job.status.value, "running (retry)")
        return self._confirm(request, job, "retry")

    def _confirm(self, request: flask.Request, job: Job, action: str) -> flask.Response:
        return page(
            request,
            "confirm.html",
            self.service.clock(),
            job=job,
            action=action,
            path=ui_path("jobs", job.job_id),
        )

    def cancel_action(self, request: flask.Request, job_id: str) -> flask.Response:
        self._checked_form(request, ActionForm)
        job = self.service.cancel(job_id)
        return redirect(ui_path("jobs", job.job_id))

    def retry_action(self, request: flask.Request, job_id: str) -> flask.Response:
        self._checked_form(request, ActionForm)
        job = self.service.retry(job_id)
        return redirect(ui_path("jobs", job.job_id))

    def _checked_form(self, request: flask.Request, model: type[ActionForm]) -> ActionForm:
        form = _form(request)
        check_same_site_post(request, form.get(FIELD))
        return parse_query(model, form)

    # -- submit ---------------------------------------------------------------------------

    def submit_page(self, request: flask.Request) -> flask.Response:
        parse_query(NoQuery, request.args)
        return self._submit_form(request, MultiDict(), status=200)

    def submit_action(self, request: flask.Request) -> flask.Response:
        form = _form(request)
        check_same_site_post(request, form.get(FIELD))
        try:
            asked = parse_query(SubmitForm, form).ingest_request()
            job, _ = self.service.submit(asked, trace_id=trace_id_from(request.headers))
        except ANSWERED as error:
            return self._submit_form(request, form, *error_answer(request, error))
        return redirect(ui_path("jobs", job.job_id))

    def _submit_form(
        self,
        request: flask.Request,
        form: MultiDict[str, str],
        errors: ErrorBody | None = None,
        status: int = 200,
    ) -> flask.Response:
        by_field = _fields(errors.problems or []) if errors else {}
        known = set(SubmitForm.model_fields) - {FIELD}
        # Problems of the request as a whole, or of a field the form does not have.
        general = [
            text if name == BODY else f"{name}: {text}"
            for name, texts in by_field.items()
            if name not in known
            for text in texts
        ]
        return page(
            request,
            "submit.html",
            self.service.clock(),
            status,
            values=form,
            errors=errors,
            field_errors={k: v for k, v in by_field.items() if k in known},
            general=general,
            sources=processor_names(),
        )

    # -- search ---------------------------------------------------------------------------

    def collection_page(self, request: flask.Request, name: str) -> flask.Response:
        # Imported here, as in the API: only a search loads LanceDB and the model runtime.
        from functions.ingestion.search import search_collection
        from functions.ingestion.sink import Collection

        query = parse_query(SearchPageQuery, request.args)
        settings = self.service.settings
        if query.q is None:
            collection = Collection(settings.ingestion.lancedb_uri, name)
            if not COLLECTION_NAME.match(name) or not collection.exists():
                raise CollectionNotFound(name)
            hits = None
        else:
            found = search_collection(
                settings, name, query.q, query.k, by_document=query.by == "document"
            )
            sources = shown_sources(found, self.service.store, settings)
            hits = [
                SearchHitView.from_hit(hit, source)
                for hit, source in zip(found, sources, strict=True)
            ]
        return page(
            request,
            "collection.html",
            self.service.clock(),
            name=name,
            query=query,
            hits=hits,
            path=ui_path("collections", name),
        )


def _form(request: flask.Request) -> MultiDict[str, str]:
    """The posted form, refused over the size POST / (ingest) takes."""
    request.max_content_length = MAX_BODY_BYTES
    request.max_form_memory_size = MAX_BODY_BYTES
    try:
        return request.form
    except RequestEntityTooLarge:
        raise PayloadTooLarge(f"the form is over {MAX_BODY_BYTES} bytes") from None
