"""What the pages under /ui accept: query strings and forms, as pydantic models. The list
queries extend the JSON API's own (functions/web/queries.py), so a page refuses exactly what
the API refuses, plus the page trail below; /openapi.json documents them all.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import ConfigDict, Field, WithJsonSchema, field_validator

from functions.ingest_request import IngestRequest, one_input_schema
from functions.ingestion.search_limits import MAX_QUERY_CHARS, MAX_RESULTS
from functions.web.queries import (
    SEARCH_BY,
    SEARCH_TEXT,
    BatchListQuery,
    JobListQuery,
    QueryModel,
    SearchUnit,
    searchable,
)

# The trail of the pages before this one (functions/web/paging.py): cursors joined by ".",
# "~" standing for the first page. At most MAX_TRAIL of them are kept.
MAX_TRAIL = 30
TRAIL_PATTERN = r"^(~|[A-Za-z0-9_-]+)(\.(~|[A-Za-z0-9_-]+))*$"
MAX_TRAIL_CHARS = 4096
MAX_TOKEN_CHARS = 128

_TRAIL = Field(
    default=None,
    max_length=MAX_TRAIL_CHARS,
    pattern=TRAIL_PATTERN,
    description='the cursors of the pages before this one, "."-joined, "~" for the first: '
    "what the prev link follows",
)


class JobPageQuery(JobListQuery):
    """/ui/jobs: the filters and page of GET /jobs, and the trail back."""

    back: str | None = _TRAIL


class BatchPageQuery(BatchListQuery):
    """/ui/jobs/{id} and its live region: the batches table's filter and page."""

    back: str | None = _TRAIL


class SearchPageQuery(QueryModel):
    """/ui/collections/{name}: with no `q`, just the search box."""

    q: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_QUERY_CHARS,
        pattern=SEARCH_TEXT,
        description="what to search for (not only spaces)",
    )
    k: int = Field(default=10, ge=1, le=MAX_RESULTS, description="how many hits at most")
    by: SearchUnit = Field(default="document", description=SEARCH_BY)

    _q = field_validator("q", mode="before")(searchable)


class NoQuery(QueryModel):
    """A page that takes no parameters, and refuses any."""


class ActionForm(QueryModel):
    """The confirmed POST of cancel or retry: only the page's token."""

    csrf_token: str = Field(
        min_length=1, max_length=MAX_TOKEN_CHARS, description="the token the page's form carries"
    )


def _lines(value: Any) -> Any:
    """A textarea, one item a line; blank lines and surrounding spaces dropped."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [line.strip() for text in value for line in str(text).splitlines() if line.strip()]
    return value


def _json_object(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except ValueError as error:
        raise ValueError(f"not valid JSON: {error}") from None
    if not isinstance(parsed, dict):
        raise ValueError('must be a JSON object, like {"delay_ms": 10}')
    return parsed


class SubmitForm(IngestRequest, QueryModel):
    """/ui/submit: an ingest request as a form, checked field by field as POST / (ingest)
    checks its body: `items` one a line, `options` a JSON object, and the page's token."""

    model_config = ConfigDict(json_schema_extra=one_input_schema("string"))

    csrf_token: str = Field(
        min_length=1, max_length=MAX_TOKEN_CHARS, description="the token the page's form carries"
    )
    # As the form sends them: text, parsed by the validators below.
    items: Annotated[list[str] | None, WithJsonSchema({"type": "string"})] = Field(
        default=None, description="one item a line"
    )
    options: Annotated[dict[str, Any], WithJsonSchema({"type": "string"})] = Field(
        default_factory=dict, description="a JSON object"
    )

    _items = field_validator("items", mode="before")(_lines)
    _options = field_validator("options", mode="before")(_json_object)

    def ingest_request(self) -> IngestRequest:
        """The request without the token (a job keeps its request)."""
        return IngestRequest.model_validate(self.model_dump(exclude={"csrf_token"}))
