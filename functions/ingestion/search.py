"""Search over a collection: hybrid (vector + full text) when it has vectors; distinct
documents by default, chunks when asked."""

from __future__ import annotations

from functions.config import Settings
from functions.errors import CollectionNotFound, InvalidArgument
from functions.ingestion.embedders import embedder_for_collection
from functions.ingestion.query_text import parse_search_query
from functions.ingestion.search_hit import SearchHit
from functions.ingestion.search_limits import COLLECTION_NAME, MAX_QUERY_CHARS, MAX_RESULTS
from functions.ingestion.sink import Collection


def search_collection(
    settings: Settings, name: str, query: str, k: int = 5, *, by_document: bool = True
) -> list[SearchHit]:
    """The `k` documents of collection `name` that best match `query`, each as its best
    chunk (`by_document=False`: the `k` best chunks). "Quoted words" must appear as a
    phrase in every hit.

    Raises `CollectionNotFound` for a collection that does not exist (or a name no
    collection can have), and `InvalidArgument` for an empty query, a query with no words
    (only quotes), one over `MAX_QUERY_CHARS`, or `k` out of range.
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
    parsed = parse_search_query(query)
    collection = Collection(settings.ingestion.lancedb_uri, name)
    if not collection.exists():
        raise CollectionNotFound(name)
    identity, dimension = collection.embedder()
    vector = (
        embedder_for_collection(identity, settings).embed_query(parsed.text) if dimension else None
    )
    return collection.search(parsed, vector, k=k, by_document=by_document)
