"""Embedders: texts to unit-length vectors, chosen by name.

`local` runs MiniLM on the CPU (local stack only), `vertex` calls Vertex AI (the cloud),
`none` makes no vectors (full-text search only). Each is built on first request and kept
for the process; none loads a model or opens a connection before its first use.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import threading

from functions.config import Settings
from functions.errors import InvalidArgument
from functions.ingestion.embedders.base import Embedder, Vectors, l2_normalise
from functions.ingestion.embedders.local import LOCAL_PACKAGES, MISSING_PACKAGES, LocalEmbedder
from functions.ingestion.embedders.none import NoEmbedder
from functions.ingestion.embedders.vertex import VertexEmbedder

__all__ = [
    "EMBEDDER_NAMES",
    "Embedder",
    "LocalEmbedder",
    "NoEmbedder",
    "Vectors",
    "VertexEmbedder",
    "check_embedder_available",
    "embedder_for_collection",
    "embedder_id",
    "get_embedder",
    "l2_normalise",
]

EMBEDDER_NAMES = ("local", "vertex", "none")

_built: dict[tuple[str | None, ...], Embedder] = {}
_built_lock = threading.Lock()


def check_embedder_available(name: str) -> None:
    """Raise `InvalidArgument` (at submit) for an unknown embedder, or for `local` where its
    packages are not installed. Imports nothing."""
    _check_name(name)
    if name == "local" and any(importlib.util.find_spec(p) is None for p in LOCAL_PACKAGES):
        raise InvalidArgument(MISSING_PACKAGES)


def get_embedder(name: str, settings: Settings) -> Embedder:
    """The process's embedder `name`, configured from `settings`: one instance per name and
    setting values, so every batch of an instance shares one model session or HTTP
    session. `InvalidArgument` for an unknown name, `ConfigError` for unusable settings."""
    key = _key(name, settings)
    with _built_lock:
        embedder = _built.get(key)
        if embedder is None:
            embedder = _built[key] = _build(name, settings)
    return embedder


def embedder_id(embedder: Embedder) -> str:
    """What a collection records of the embedder its vectors came from: the name, and the
    model where the name alone does not fix it (Vertex AI offers several of one size)."""
    if isinstance(embedder, VertexEmbedder):
        return f"vertex/{embedder.model}"
    return embedder.name


def embedder_for_collection(identity: str, settings: Settings) -> Embedder:
    """The embedder that made a collection's vectors (from its `embedder_id`), to embed
    queries in the same space even after the deployment's default model changed."""
    name, _, model = identity.partition("/")
    if name == "vertex" and model:
        ingestion = dataclasses.replace(settings.ingestion, vertex_model=model)
        settings = dataclasses.replace(settings, ingestion=ingestion)
    return get_embedder(name, settings)


def _check_name(name: str) -> None:
    if name not in EMBEDDER_NAMES:
        known = ", ".join(EMBEDDER_NAMES)
        raise InvalidArgument(f"unknown embedder {name!r}; known: {known}")


def _key(name: str, settings: Settings) -> tuple[str | None, ...]:
    """Only the settings the embedder reads, so unrelated settings share an instance."""
    _check_name(name)
    if name == "vertex":
        ingestion = settings.ingestion
        return (name, settings.gcp_project, ingestion.vertex_location, ingestion.vertex_model)
    return (name,)


def _build(name: str, settings: Settings) -> Embedder:
    if name == "local":
        return LocalEmbedder()
    if name == "vertex":
        return VertexEmbedder(
            project=settings.gcp_project,
            location=settings.ingestion.vertex_location,
            model=settings.ingestion.vertex_model,
        )
    return NoEmbedder()
