"""`NoEmbedder`: collections searched by full text only, with no vectors at all."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from functions.ingestion.embedders.base import Vectors


class NoEmbedder:
    name = "none"
    dimension: int | None = None

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        return np.zeros((len(texts), 0), dtype=np.float32)

    def embed_query(self, text: str) -> Vectors:
        return np.zeros((0,), dtype=np.float32)
