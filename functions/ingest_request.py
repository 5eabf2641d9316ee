"""The ingest request: what a caller asks for, validated before anything is written."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_BATCH_SIZE = 1_000
MAX_BODY_BYTES = 1024 * 1024


class IngestRequest(BaseModel):
    """One ingestion. Give `items` (explicit document references) or `location` (a
    directory to list), not both. `client_id` + `request_id` make the submit idempotent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: str = Field(min_length=1, max_length=64, description="registered processor")
    collection: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    items: list[str] | None = Field(default=None, max_length=1_000_000)
    location: str | None = Field(default=None, min_length=1, max_length=1024)
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

    @model_validator(mode="after")
    def _one_input(self) -> Self:
        if (self.items is None) == (self.location is None):
            raise ValueError("give exactly one of items or location")
        if (self.client_id is None) != (self.request_id is None):
            raise ValueError("client_id and request_id go together: give both or neither")
        return self
