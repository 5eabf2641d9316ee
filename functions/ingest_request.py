"""The ingest request: what a caller asks for, validated before anything is written."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.config import JsonDict

from functions.bounded_json import MAX_DEPTH, value_depth
from functions.priority import Priority
from functions.schedule import parse_rfc3339

MAX_BATCH_SIZE = 1_000
MAX_BODY_BYTES = 1024 * 1024
# `options` are kept with the job (its parent document): a few settings, never a payload.
MAX_OPTIONS_BYTES = 16 * 1024


def _given(field: str, type_: str) -> JsonDict:
    """JSON Schema: `field` is present and not null."""
    return {"required": [field], "properties": {field: {"type": type_}}}


def one_input_schema(items_type: str) -> JsonDict:
    """What `_one_input` enforces, for the document: exactly one of items (sent as
    `items_type`), location and items_from, null counting as absent; client_id with request_id."""
    return {
        "oneOf": [
            _given("items", items_type),
            _given("location", "string"),
            _given("items_from", "string"),
        ],
        "allOf": [
            {"if": _given("client_id", "string"), "then": _given("request_id", "string")},
            {"if": _given("request_id", "string"), "then": _given("client_id", "string")},
        ],
    }


class IngestRequest(BaseModel):
    """One ingestion. Give one of `items` (explicit document references), `location` (a
    directory to list) or `items_from` (a manifest of references, for more items than a
    request holds). `client_id` + `request_id` make the submit idempotent."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, json_schema_extra=one_input_schema("array")
    )

    source: str = Field(min_length=1, max_length=64, description="registered processor")
    collection: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    items: list[str] | None = Field(default=None, max_length=1_000_000)
    location: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="a folder under an allowed root, or gs://bucket/prefix; a listing of more"
        " than 1,000 items is planned page by page by the planner",
    )
    items_from: str | None = Field(
        default=None,
        min_length=1,
        max_length=1024,
        description="a manifest: a file (local or gs://) of item references, one a line,"
        " read page by page by the planner",
    )
    batch_size: int = Field(default=100, ge=1, le=MAX_BATCH_SIZE)
    max_batch_bytes: int | None = Field(
        default=None,
        ge=1024,
        le=1024**3,
        description="most source bytes in one batch; default FANOUT_MAX_BATCH_BYTES",
    )
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    request_id: str | None = Field(default=None, min_length=1, max_length=128)
    callback_url: str | None = Field(default=None, max_length=2048)
    options: dict[str, Any] = Field(default_factory=dict)
    priority: Priority = Field(
        default=Priority.NORMAL,
        description="which queue its batches wait in: high ones are dispatched ahead of a"
        " normal or low backlog",
    )
    not_before: datetime | None = Field(
        default=None,
        description="start no batch before this RFC 3339 time (with an offset), at most 30"
        " days ahead; the job is scheduled until then",
    )

    @field_validator("not_before", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> datetime | None:
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value  # already parsed (a request rebuilt from a validated one)
        return None if value is None else parse_rfc3339(value)

    @field_validator("options")
    @classmethod
    def _bounded_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        if value_depth(options) > MAX_DEPTH:
            raise ValueError(f"nested more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}")
        size = len(json.dumps(options, default=str).encode())
        if size > MAX_OPTIONS_BYTES:
            raise ValueError(f"{size} bytes as JSON; the limit is {MAX_OPTIONS_BYTES}")
        return options

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        given = [self.items, self.location, self.items_from]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of items, location or items_from")
        if (self.client_id is None) != (self.request_id is None):
            raise ValueError("client_id and request_id go together: give both or neither")
        return self
