"""One search hit: a chunk, or a document's best chunk. Plain data, apart from the
collection (LanceDB, Arrow) that finds it, so that what only shows hits imports none of that."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SearchHit:
    chunk_id: str
    uri: str
    text: str
    heading_path: str
    page: int | None
    position: int
    score: float
    job_id: str = ""  # the job that wrote the chunk (where its location is)
    # Of a document hit: how many of the document's chunks are among the best candidates.
    matched_chunks: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunk_id": self.chunk_id,
            "uri": self.uri,
            "text": self.text,
            "heading_path": self.heading_path,
            "page": self.page,
            "position": self.position,
            "score": self.score,
            "matched_chunks": self.matched_chunks,
        }
