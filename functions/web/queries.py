"""Query-string models, shared by the JSON API and the pages so both refuse the same input
with the same error. Each is a pydantic model: it validates, and it documents itself in
/openapi.json.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from werkzeug.datastructures import MultiDict

from functions.errors import InvalidArgument
from functions.ingestion.query_text import TYPOGRAPHIC_QUOTES, parse_search_query
from functions.ingestion.search_limits import MAX_QUERY_CHARS, MAX_RESULTS
from functions.jobs import JobStatus
from functions.observability.lines import DEFAULT_LOG_PAGE, MAX_LOG_PAGE
from functions.observability.severity import SEVERITIES, parse_severity
from functions.priority import Priority
from functions.store.protocol import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# Cursors are opaque tokens the stores produce; none is near this long.
MAX_CURSOR_CHARS = 2048
# The stores' cursors are unpadded base64url (functions/paging.py).
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
CURSOR_ABOUT = "the next_cursor of the page before; any other is refused with 400 (InvalidCursor)"
MAX_FILTER_CHARS = 128
# A search must have something str.strip() leaves that is not a quote mark: only quotes has
# nothing to search for (query_text.parse_search_query). str.strip() also strips \x1c-\x1f
# and \x85, which the document's readers take as text: OpenAPI patterns are ECMA-262, whose
# \s leaves them out.
SEARCH_TEXT = f'[^\\s\\x1c-\\x1f\\x85"{TYPOGRAPHIC_QUOTES}]'
SearchUnit = Literal["document", "chunk"]
SEARCH_BY = (
    "document: each hit is a document, as its best chunk with how many of its chunks "
    "matched; chunk: the best chunks, several of one document possible"
)


class QueryModel(BaseModel):
    """Unknown parameters are refused: a typo (`?stauts=`) must not silently list everything."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _split_statuses(value: Any) -> Any:
    """`?status=a,b` and `?status=a&status=b` both mean "any of a, b"."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [s for v in value for s in str(v).split(",") if s]
    return value


class JobListQuery(QueryModel):
    """GET /jobs and /ui/jobs: newest first, filtered, one page."""

    status: list[JobStatus] = Field(
        default_factory=list, description="any of these statuses; repeat or comma-separate"
    )
    source: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_CHARS)
    client_id: str | None = Field(default=None, min_length=1, max_length=MAX_FILTER_CHARS)
    priority: Priority | None = Field(default=None, description="only jobs of this priority")
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description=CURSOR_ABOUT,
    )

    _statuses = field_validator("status", mode="before")(_split_statuses)


class BatchListQuery(QueryModel):
    """GET /jobs/{id}/batches and the batches table of /ui/jobs/{id}."""

    status: JobStatus | None = Field(default=None, description="only batches in this status")
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        pattern=CURSOR_PATTERN,
        description=CURSOR_ABOUT,
    )


Severity = Literal[SEVERITIES]  # type: ignore[valid-type]


def _severity_name(value: Any) -> Any:
    """Any case (`?severity=warning`), as Cloud Logging's filters take it."""
    if not isinstance(value, str):
        return value
    try:
        return parse_severity(value)
    except InvalidArgument as error:
        raise ValueError(error.message) from None


class LogQuery(QueryModel):
    """GET /jobs/{id}/logs: one page of the job's lines, oldest first."""

    batch_id: str | None = Field(
        default=None, min_length=1, max_length=MAX_FILTER_CHARS, description="only this batch"
    )
    severity: Severity | None = Field(
        default=None, description="only lines at this severity or above (any case)"
    )
    event: str | None = Field(
        default=None, min_length=1, max_length=MAX_FILTER_CHARS, description="only this event"
    )
    limit: int = Field(default=DEFAULT_LOG_PAGE, ge=1, le=MAX_LOG_PAGE)
    cursor: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_CURSOR_CHARS,
        description=(
            "a next_cursor or resume_cursor from an earlier page (Cloud Logging's page "
            "token when deployed); any other is refused with 400 (InvalidCursor)"
        ),
    )

    _severity = field_validator("severity", mode="before")(_severity_name)


def searchable(value: str | None) -> str | None:
    """A query with words outside its quote marks (only quotes has nothing to search)."""
    if value is not None:
        try:
            parse_search_query(value)
        except InvalidArgument as error:
            raise ValueError(error.message) from None
    return value


class SearchQuery(QueryModel):
    """GET /collections/{name}/search."""

    q: str = Field(
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=SEARCH_TEXT,
        description=(
            'what to search for; "words in double quotes" must appear as a phrase in every '
            "hit (an unpaired quote is ignored; only quotes is a 400)"
        ),
    )
    k: int = Field(default=5, ge=1, le=MAX_RESULTS, description="how many hits at most")
    by: SearchUnit = Field(default="document", description=SEARCH_BY)

    _q = field_validator("q", mode="before")(searchable)


Query = TypeVar("Query", bound=QueryModel)

# Parameters a model takes as a list; every other one must appear at most once.
_LIST_FIELDS = {"status"}


def parse_query(model: type[Query], args: MultiDict[str, str]) -> Query:
    """`args` validated as `model`. Empty values count as absent (an HTML form sends
    `source=` for an empty box). Raises pydantic's `ValidationError`, which the edge turns
    into a 400 naming each bad parameter."""
    values: dict[str, Any] = {}
    for name in args:
        given = [v for v in args.getlist(name) if v != ""]
        if not given:
            continue
        list_field = name in _LIST_FIELDS and _is_list(model, name)
        values[name] = given if list_field or len(given) > 1 else given[0]
    return model.model_validate(values)


def _is_list(model: type[BaseModel], name: str) -> bool:
    field = model.model_fields.get(name)
    return field is not None and getattr(field.annotation, "__origin__", None) is list
