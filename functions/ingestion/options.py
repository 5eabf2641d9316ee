"""The `documents` processor's request options, validated at submit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import pydantic
from pydantic import BaseModel, ConfigDict, Field, model_validator

from functions.errors import InvalidArgument
from functions.ingestion.chunker import (
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_OVERLAP_TOKENS,
    MIN_CHUNK_TOKENS,
    ChunkSize,
)
from functions.ingestion.tokens import MAX_CHUNK_TOKENS


class DocumentOptions(BaseModel):
    """`options` of a `documents` request. Unknown keys are refused, so a typo is an error
    rather than a silent default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    chunk_tokens: int = Field(
        default=DEFAULT_CHUNK_TOKENS,
        ge=MIN_CHUNK_TOKENS,
        le=MAX_CHUNK_TOKENS,
        description="most MiniLM wordpieces in a chunk (the model reads 256, 2 are special)",
    )
    chunk_overlap: int = Field(
        default=DEFAULT_OVERLAP_TOKENS, ge=0, description="tokens shared by neighbours"
    )
    embedder: str | None = Field(
        default=None,
        max_length=64,
        description="overrides FANOUT_EMBEDDER: local, local/<model> (minilm-l6, minilm-l3, "
        "minilm-l6-shipped), vertex, or none (full-text search only)",
    )
    text_field: str = Field(
        default="text", min_length=1, max_length=128, description="JSON records' text field"
    )
    prune: bool = Field(
        default=False,
        description="at the end, remove chunks of documents no longer at the location",
    )

    @model_validator(mode="after")
    def _overlap_fits(self) -> Self:
        self.chunk_size  # noqa: B018 - validates the pair
        return self

    @property
    def chunk_size(self) -> ChunkSize:
        return ChunkSize(self.chunk_tokens, self.chunk_overlap)

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> DocumentOptions:
        """The options, or `InvalidArgument` naming every problem."""
        try:
            return cls.model_validate(dict(options))
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
                for e in error.errors()
            )
            raise InvalidArgument(f"invalid documents options: {problems}") from None
