"""The `Embedder` protocol: texts in, unit-length float32 vectors out, in input order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

Vectors = npt.NDArray[np.float32]


class Embedder(Protocol):
    @property
    def name(self) -> str:
        """The embedder's name, as requests and collections give it: "local", "vertex", "none"."""
        ...

    @property
    def dimension(self) -> int | None:
        """Length of every vector; None when the embedder makes none (full-text only)."""
        ...

    def embed_documents(self, texts: Sequence[str]) -> Vectors:
        """Shape (len(texts), dimension), rows L2-normalised, in the order of `texts`."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """Shape (dimension,): the vector to search documents' vectors with."""
        ...


def l2_normalise(vectors: npt.NDArray[np.floating]) -> Vectors:
    """Rows scaled to unit length, as float32. An all-zero row stays zero."""
    rows: Vectors = np.array(vectors, dtype=np.float32)  # a copy: the caller's is kept
    rows /= np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), np.float32(1e-12))
    return rows
