"""Query-string models, shared by the JSON API and the pages so both refuse the same input
with the same error. Each is a pydantic model: it validates, and it documents itself in
/openapi.json.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from werkzeug.datastructures import MultiDict

from functions.jobs import JobStatus
from functions.store.protocol import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

# Cursors are opaque tokens the stores produce; none is near this long.
MAX_CURSOR_CHARS = 2048
MAX_FILTER_CHARS = 128


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
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)

    _statuses = field_validator("status", mode="before")(_split_statuses)


class BatchListQuery(QueryModel):
    """GET /jobs/{id}/batches and the batches table of /ui/jobs/{id}."""

    status: JobStatus | None = None
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)


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
