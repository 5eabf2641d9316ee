"""Embedders: texts to unit-length vectors, chosen by name.

`local` runs a MiniLM model on the CPU (local stack only): the deployment's
(FANOUT_LOCAL_MODEL), or the one `local/<model>` names. `vertex` calls Vertex AI (the
cloud), `none` makes no vectors (full-text search only). Each is built on first request and
kept for the process; none loads a model or opens a connection before its first use.
"""

from __future__ import annotations

import dataclasses
import threading

from functions.config import Settings
from functions.errors import ConfigError, InvalidArgument
from functions.ingestion.embedders.base import Embedder, Vectors, l2_normalise
from functions.ingestion.embedders.local import LocalEmbedder
from functions.ingestion.embedders.local_models import (
    LOCAL_MODELS,
    LocalModel,
    local_model,
    model_for_identity,
)
from functions.ingestion.embedders.none import NoEmbedder
from functions.ingestion.embedders.vertex import VertexEmbedder

__all__ = [
    "EMBEDDER_CHOICES",
    "EMBEDDER_NAMES",
    "LOCAL_MODELS",
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
# `local/<model>` picks a local model by name; plain `local` is the deployment's.
EMBEDDER_CHOICES = (*EMBEDDER_NAMES, *(f"local/{name}" for name in LOCAL_MODELS))

_built: dict[tuple[str | None, ...], Embedder] = {}
_built_lock = threading.Lock()


def check_embedder_available(name: str, settings: Settings) -> None:
    """Raise `InvalidArgument` (at submit) for an unknown embedder or local model, or for a
    local model whose packages are not installed here. Imports nothing."""
    _check_name(name)
    if _is_local(name):
        problem = _local_model(name, settings).missing()
        if problem:
            raise InvalidArgument(problem)


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
    model where the name alone does not fix it (Vertex AI offers several of one size; the
    local models' vectors are comparable only within one identity)."""
    if isinstance(embedder, VertexEmbedder):
        return f"vertex/{embedder.model}"
    if isinstance(embedder, LocalEmbedder):
        return embedder.model.identity
    return embedder.name


def embedder_for_collection(identity: str, settings: Settings) -> Embedder:
    """The embedder that made a collection's vectors (from its `embedder_id`), to embed
    queries in the same space even after the deployment's default model changed."""
    name, _, model = identity.partition("/")
    if name == "vertex" and model:
        ingestion = dataclasses.replace(settings.ingestion, vertex_model=model)
        settings = dataclasses.replace(settings, ingestion=ingestion)
    if name == "local":
        return get_embedder(f"local/{model_for_identity(identity).name}", settings)
    return get_embedder(name, settings)


def _is_local(name: str) -> bool:
    return name.partition("/")[0] == "local"


def _local_model(name: str, settings: Settings) -> LocalModel:
    """`local` is the deployment's model, `local/<model>` the one named. An unknown name is
    the request's mistake in the second case and the deployment's in the first."""
    _, _, model = name.partition("/")
    if model:
        return local_model(model)
    try:
        return local_model(settings.ingestion.local_model)
    except InvalidArgument as error:
        raise ConfigError(f"FANOUT_LOCAL_MODEL: {error.message}") from None


def _check_name(name: str) -> None:
    if name not in EMBEDDER_CHOICES:
        known = ", ".join(EMBEDDER_CHOICES)
        raise InvalidArgument(f"unknown embedder {name!r}; known: {known}")


def _key(name: str, settings: Settings) -> tuple[str | None, ...]:
    """Only the settings the embedder reads, so unrelated settings share an instance."""
    _check_name(name)
    if name == "vertex":
        ingestion = settings.ingestion
        return (name, settings.gcp_project, ingestion.vertex_location, ingestion.vertex_model)
    if _is_local(name):
        return ("local", _local_model(name, settings).name, str(settings.ingestion.model_cache))
    return (name,)


def _build(name: str, settings: Settings) -> Embedder:
    if _is_local(name):
        model = _local_model(name, settings)
        return LocalEmbedder(model.name, model_cache=settings.ingestion.model_cache)
    if name == "vertex":
        return VertexEmbedder(
            project=settings.gcp_project,
            location=settings.ingestion.vertex_location,
            model=settings.ingestion.vertex_model,
        )
    return NoEmbedder()
