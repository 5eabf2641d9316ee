"""Search over a collection: hybrid (vector + full text) when it has vectors."""

from __future__ import annotations

import re

from functions.config import Settings
from functions.errors import CollectionNotFound, InvalidArgument
from functions.ingestion.embedders import embedder_for_collection
from functions.ingestion.sink import Collection, SearchHit

COLLECTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_RESULTS = 50
MAX_QUERY_CHARS = 1000


def search_collection(settings: Settings, name: str, query: str, k: int = 5) -> list[SearchHit]:
    """The `k` chunks of collection `name` that best match `query`.

    Raises `CollectionNotFound` for a collection that does not exist (or a name no
    collection can have), and `InvalidArgument` for an empty query or `k` out of range.
    """
    if not COLLECTION_NAME.match(name):
        raise CollectionNotFound(name)
    query = query.strip()
    if not query:
        raise InvalidArgument("q must not be empty")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"q must be at most {MAX_QUERY_CHARS} characters")
    if not 1 <= k <= MAX_RESULTS:
        raise InvalidArgument(f"k must be between 1 and {MAX_RESULTS}, got {k}")
    collection = Collection(settings.ingestion.lancedb_uri, name)
    if not collection.exists():
        raise CollectionNotFound(name)
    identity, dimension = collection.embedder()
    vector = embedder_for_collection(identity, settings).embed_query(query) if dimension else None
    return collection.search(query, vector, k=k)
