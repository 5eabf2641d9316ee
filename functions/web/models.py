"""Response models: what the jobs API and ingest answer, as pydantic models. Handlers build
their JSON through these, and /openapi.json is generated from them, so the document
describes exactly the answers (and a test fuzzes the live API against it).

Field names and values are those of `functions.serialize` (the callbacks' job JSON): the CLI
and scripts read both.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema

from functions.config import Settings
from functions.errors import FanoutError, InvalidField
from functions.ingestion.search_hit import SearchHit
from functions.jobs import Batch, Job, JobStatus
from functions.observability.lines import LogLine, LogPage
from functions.observability.links import logs_url
from functions.priority import Priority
from functions.web.hits import without_headings
from functions.web.queries import SearchUnit

if TYPE_CHECKING:
    from functions.service import TaskCheck

# ISO 8601 in UTC with "Z", as `functions.serialize.jsonable` writes it. pydantic's own
# serializer: a Python one here tripled the cost of a page of jobs (bench/api.py).
Timestamp = Annotated[datetime, WithJsonSchema({"type": "string", "format": "date-time"})]


class View(BaseModel):
    """An answer body: every field is always present (null when unset), and nothing else."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_serialization_defaults_required=True
    )


# -- errors ---------------------------------------------------------------------------------


class Problem(BaseModel):
    """One invalid field of a request."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    field: str = Field(description="the parameter or body field, dotted for nested ones")
    problem: str = Field(description="what is wrong with it")


class ErrorBody(BaseModel):
    """The one error answer, whatever the status: the error type, a message for people and,
    for invalid input, each field's problem."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    error: str = Field(description="the error type: InvalidArgument, JobNotFound, ...")
    message: str
    problems: list[Problem] | None = Field(
        default=None, description="with a 400 for invalid fields: each one and its problem"
    )

    @classmethod
    def from_error(cls, error: FanoutError) -> ErrorBody:
        if isinstance(error, InvalidField):  # named like pydantic's invalid fields
            problems = [Problem(field=error.field, problem=error.problem)]
            return cls(
                error="InvalidArgument",
                message=f"invalid request: {error.field}",
                problems=problems,
            )
        return cls(error=type(error).__name__, message=error.message)

    @classmethod
    def from_validation(cls, error: pydantic.ValidationError) -> ErrorBody:
        """Pydantic's errors, one problem per field; the message names the parameters or
        top-level fields."""
        errors = error.errors()
        problems = [Problem(field=_field(e["loc"]), problem=_problem(e)) for e in errors]
        named = sorted({str(e["loc"][0]) for e in errors if e["loc"]})
        message = "invalid request" + (f": {', '.join(named)}" if named else "")
        return cls(error="InvalidArgument", message=message, problems=problems)

    def to_json(self) -> str:
        return self.model_dump_json(exclude_none=True)


# The field of a problem with the request as a whole (two fields that must go together).
BODY = "(body)"


def _field(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or BODY


def _problem(error: Any) -> str:
    """Our own validators' messages as written, without pydantic's "Value error, "."""
    if error["type"] == "value_error" and "error" in error.get("ctx", {}):
        return str(error["ctx"]["error"])
    return str(error["msg"])


# -- jobs and batches -----------------------------------------------------------------------


class StatsView(View):
    """What the work did, summed over items (functions/jobs.py JobStats)."""

    model_config = ConfigDict(**View.model_config, from_attributes=True)

    files: int
    processed: int = Field(description="items whose results are stored")
    failed: int = Field(description="items that failed (not batches)")
    chunks: int
    documents: int
    skipped: int = Field(description="items the processor has no use for")
    bytes_read: int
    unchanged: int = Field(
        description="items unchanged since they were ingested: not read again (or read and"
        " found identical), neither chunked nor embedded",
    )
    embedded: int = Field(description="chunks whose vectors were computed (the others kept theirs)")


class JobView(View):
    """A job, as GET /jobs lists it and cancel and retry answer it."""

    job_id: str
    source: str
    collection: str
    status: JobStatus
    created_at: Timestamp
    started_at: Timestamp | None
    finished_at: Timestamp | None
    expire_at: Timestamp | None = Field(description="when cleanup may delete it")
    duration_seconds: float | None = Field(description="start to finish, or to now")
    progress: float = Field(ge=0, le=1, description="share of batches that ended")
    total_batches: int
    completed_batches: int
    failed_batches: int
    stats: StatsView
    request: dict[str, Any] = Field(description="the ingest request it was created from")
    client_id: str | None
    request_id: str | None
    message: str | None
    error: str | None
    callback_url: str | None
    callback_status: str | None
    callback_attempts: int
    callback_error: str | None
    retries: int = Field(description="how often its failed batches were retried")
    trace_id: str | None = Field(description="the trace every line of the job is logged under")
    priority: Priority = Field(description="the queue class its batches wait in")
    not_before: Timestamp | None = Field(
        description="no batch starts before this (the request's not_before); while it is"
        " ahead the job is scheduled"
    )
    planning: bool = Field(
        description="true while its manifest (items_from) or its location's listing is still being"
        " read, page by page:"
        " batches already planned run meanwhile, and total_batches grows"
    )
    plan_pages: int = Field(description="pages of its manifest or listing planned so far")
    planned_items: int = Field(description="items in the batches planned so far")

    @classmethod
    def from_job(cls, job: Job) -> JobView:
        return cls.model_validate(_job_fields(job))


# The planner's own bookkeeping stays inside.
_JOB_FIELDS = tuple(
    f.name for f in dataclasses.fields(Job) if f.name not in ("plan_cursor", "counter_shards")
)


def _job_fields(job: Job) -> dict[str, Any]:
    """The job's fields as they are (not `Job.to_dict`, whose deep copies cost more than
    the rest of a page): pydantic reads the stats from their attributes."""
    data = {name: getattr(job, name) for name in _JOB_FIELDS}
    data["progress"] = job.progress
    duration = job.duration()
    data["duration_seconds"] = None if duration is None else round(duration.total_seconds(), 3)
    return data


class BatchCountsView(View):
    """How many of the job's batches are in each status."""

    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int


class JobDetail(JobView):
    """The job, with its batches per status and the link to its logs."""

    logs_url: str
    batches: BatchCountsView

    @classmethod
    def build(cls, job: Job, summary: dict[str, int], settings: Settings) -> JobDetail:
        return cls.model_validate(
            _job_fields(job) | {"logs_url": logs_url(job, settings), "batches": summary}
        )


class JobsPage(View):
    """One page of jobs, newest first."""

    jobs: list[JobView]
    next_cursor: str | None = Field(description="pass it back for the next page; null: last")
    total: int = Field(description="every job the filters match, across pages")


class BatchView(View):
    """One batch of a job (without its item list, which can be long)."""

    batch_id: str
    job_id: str
    index: int
    status: JobStatus
    attempts: int
    item_count: int
    progress: float = Field(ge=0, le=1)
    stats: StatsView
    error: str | None
    error_details: dict[str, Any] | None = Field(description="e.g. failed_items: item -> error")
    created_at: Timestamp
    enqueued_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    heartbeat_at: Timestamp | None
    lease_expires_at: Timestamp | None
    ran_on: str | None = Field(description="where its latest attempt ran")
    dispatch_rounds: int
    task: Literal["queued", "dropped", "unknown"] | None = Field(
        default=None,
        description="a pending batch's task, as the queue tells it: queued; dropped (its "
        "attempts used up; the sweeper re-dispatches the batch after redispatch_after); "
        "unknown (a queue that cannot tell); null for other batches",
    )
    redispatch_after: Timestamp | None = Field(
        default=None,
        description="the sweeper's first run after this re-dispatches the batch, if its "
        "task is dropped (for an unknown task: the end of the queue's retry window)",
    )
    logs_url: str

    @classmethod
    def build(
        cls, batch: Batch, job: Job, settings: Settings, check: TaskCheck | None = None
    ) -> BatchView:
        data = {name: getattr(batch, name) for name in _BATCH_FIELDS}
        data["item_count"] = len(batch.items)
        data["error_details"] = dict(batch.error_details) if batch.error_details else None
        data["logs_url"] = logs_url(job, settings, batch)
        if check is not None:
            data["task"], data["redispatch_after"] = check.task, check.redispatch_after
        return cls.model_validate(data)


_BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(Batch) if f.name != "items")


class BatchesPage(View):
    """One page of a job's batches, by index."""

    batches: list[BatchView]
    next_cursor: str | None
    total: int


# -- logs and search ------------------------------------------------------------------------


class LogLineView(View):
    """One log line of the job (functions/observability/lines.py)."""

    time: str
    severity: str
    message: str
    event: str | None
    labels: dict[str, str] = Field(description="job_id, batch_id, function, ...")
    trace: str | None
    fields: dict[str, Any] = Field(description="the rest of the line's JSON payload")
    source_location: dict[str, Any] | None

    @classmethod
    def from_line(cls, line: LogLine) -> LogLineView:
        return cls.model_validate(line.to_dict())


class LogsPage(View):
    """One page of a job's log lines, oldest first."""

    job_id: str
    lines: list[LogLineView]
    next_cursor: str | None = Field(description="the next page; null when read to the end")
    resume_cursor: str | None = Field(description="where to continue once more lines exist")

    @classmethod
    def build(cls, job_id: str, page: LogPage) -> LogsPage:
        return cls(
            job_id=job_id,
            lines=[LogLineView.from_line(line) for line in page.lines],
            next_cursor=page.next_cursor,
            resume_cursor=page.resume_cursor,
        )


class SearchHitView(View):
    """One hit: a document as its best chunk (`by=document`), or one chunk."""

    chunk_id: str
    uri: str = Field(description="the document it came from")
    text: str
    heading_path: str
    page: int | None
    position: int
    score: float
    matched_chunks: int = Field(
        description=(
            "by=document: how many of the document's chunks are among the best-ranked "
            "candidates (at least 20); by=chunk: 1"
        )
    )
    source: str = Field(
        description="the document for people: its gs:// URI, or its path under its location"
    )
    body: str = Field(description="the text without the headings heading_path shows")

    @classmethod
    def from_hit(cls, hit: SearchHit, source: str) -> SearchHitView:
        body = without_headings(hit.text, hit.heading_path)
        return cls.model_validate(hit.to_dict() | {"source": source, "body": body})


class SearchResult(View):
    """The documents (or chunks) of the collection that best match the query, best first."""

    collection: str
    query: str
    by: SearchUnit
    phrases: list[str] = Field(description="the quoted phrases every hit holds, as read")
    hits: list[SearchHitView]


# -- ingest and the document ----------------------------------------------------------------


class IngestAccepted(View):
    """The ingestion was accepted: its job, and where to watch it."""

    job_id: str
    status: JobStatus
    total_batches: int
    planning: bool = Field(
        description="true: its manifest or listing is planned page by page from now on"
    )
    status_url: str = Field(description="GET it for the job's progress")
    logs_url: str
    trace_id: str | None
    created: bool = Field(description="false: the same client_id and request_id came before")
    not_before: Timestamp | None = Field(
        description="when a scheduled job starts (status scheduled until then)"
    )

    @classmethod
    def build(cls, job: Job, created: bool, settings: Settings) -> IngestAccepted:
        return cls(
            job_id=job.job_id,
            status=job.status,
            total_batches=job.total_batches,
            planning=job.planning,
            status_url=f"{settings.api_url}/jobs/{job.job_id}",
            logs_url=logs_url(job, settings),
            trace_id=job.trace_id,
            created=created,
            not_before=job.not_before,
        )


class OpenApiDocument(BaseModel):
    """An OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow", frozen=True)

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]
