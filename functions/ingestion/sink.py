"""The sink: a LanceDB table per collection, upserted by chunk id.

Writes are one `merge_insert` per flush, keyed on the chunk id, which LanceDB's schema
declares an (unenforced) primary key: without that declaration, two writers inserting the
same new ids at the same moment both succeed and every such row ends up twice. When any of
the written documents already has chunks stored, the same commit deletes those of its
chunks that are no longer produced (`when_not_matched_by_source_delete`), so re-ingesting a
changed document leaves none of its stale chunks, atomically. That delete joins the write
against the whole table, so its memory grows with the collection; a write of documents
with nothing stored (every write of a first ingestion) only inserts, which the id's BTREE
index answers in bounded memory. LanceDB retries commit conflicts itself; a write that
still conflicts is retried here on a fresh view of the table, then reported as transient
so the queue retries the batch.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pyarrow as pa
import stamina

if TYPE_CHECKING:
    import lancedb
    from lancedb.table import Table

from functions.errors import CollectionNotFound, InvalidArgument, TransientError
from functions.humanize import plural
from functions.ingestion.compaction import optimize_apart
from functions.ingestion.documents import Chunk
from functions.ingestion.query_text import (
    ParsedQuery,
    identifiers,
    phrase_pattern,
    search_terms,
)
from functions.ingestion.search_hit import SearchHit

log = logging.getLogger("fanout.ingestion.sink")

PRIMARY_KEY = {"lance-schema:unenforced-primary-key": "true"}
ID_COLUMN = "id"
ID_INDEX = f"{ID_COLUMN}_idx"  # LanceDB's name for it: the column's, then "_idx"
EMBEDDER_KEY = b"fanout.embedder"
# Below this many rows a brute-force vector scan is fast (milliseconds); past it an IVF
# index pays for its build time.
VECTOR_INDEX_MIN_ROWS = 100_000
# Our own retries of a write after LanceDB's internal ones gave up on a conflict.
WRITE_ATTEMPTS = 6
# Every this many table versions, the writer that made the version compacts the table. A
# write costs time in proportion to the fragments it must consider, so a big job left
# uncompacted until its end slows down as it goes (measured: 800 writes took 57 s
# uncompacted, 20 s compacted every 100).
COMPACT_EVERY_VERSIONS = 100
# A write looks its ids up in the id index, and among the rows written since the index was
# last brought up to date (by compaction) by reading those rows: one write's memory grows
# with them, whatever the table's size (bench/write_memory.py: 9 to 23 MB at 2,000, 63 to
# 78 MB at 10,000, which 100 versions of 100 chunks leave), and a worker writes 4 batches
# at once. So a write that takes them past a multiple of this compacts the table as well,
# whatever the batch size (docs/ingestion.md, Worker memory).
COMPACT_EVERY_UNINDEXED_ROWS = 2_000
# LanceDB's caches default to gigabytes, which a worker would fill as a collection grows:
# capped, a worker's memory stays bounded whatever the corpus size. The metadata cache
# fills with every table version a job writes (manifests, fragment metadata), of which
# searches need only the latest: at 64 MB it held a worker about 70 MB higher by 40 MB of
# source than at 8 MB (docs/ingestion.md, Worker memory).
METADATA_CACHE_BYTES = 8 * 1024 * 1024
# Searches read the full-text and vector indexes through the index cache. Writes read only
# the id's BTREE, where a batch's 100 new ids fall all over the tree: caching every page
# they touch grew a worker with its collection (about 35 MB over 100 MB of source), so the
# connection that writes keeps 8 MB of index pages and searches use one of their own.
SEARCH_INDEX_CACHE_BYTES = 128 * 1024 * 1024
WRITE_INDEX_CACHE_BYTES = 8 * 1024 * 1024
# The column full-text search reads: a chunk's heading path and text as terms (see
# query_text.search_terms). Collections from before it are given it at their next submit.
TERMS_COLUMN = "search_text"
# Document hits are grouped from this many of the best chunks of each search (4 per hit
# asked, at least 20), deeper when those hold fewer documents than asked. Deeper lists fuse
# worse: a chunk fair in both searches outranks one first in either (bench/search.py, all
# queries, recall@1 / @5: 0.885 / 0.99 at 20, 0.885 / 0.985 at 50, 0.89 / 0.96 at 100).
MIN_CANDIDATES = 20
CANDIDATES_PER_HIT = 4
MAX_CANDIDATES = 1280


# The (database, table) pairs this process is compacting during a job.
_COMPACTING: set[tuple[str, str]] = set()
_COMPACTING_LOCK = threading.Lock()


class CommitConflict(Exception):
    """Raised (internally) when a LanceDB commit lost to a concurrent one and should be
    retried on the latest version of the table."""


def chunk_schema(dimension: int | None, embedder: str) -> pa.Schema:
    """The table's columns; `vector` only for collections with an embedder, whose id
    (`local`, `vertex/text-embedding-005`, `none`) the schema's metadata records."""
    fields = [
        pa.field(ID_COLUMN, pa.string(), nullable=False, metadata=PRIMARY_KEY),
        pa.field("uri", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
        pa.field("text", pa.string(), nullable=False),
        pa.field("heading_path", pa.string(), nullable=False),
        pa.field("page", pa.int32(), nullable=True),
        pa.field("tokens", pa.int32(), nullable=False),
        pa.field("job_id", pa.string(), nullable=False),
        pa.field(TERMS_COLUMN, pa.string(), nullable=True),
    ]
    if dimension:
        fields.append(pa.field("vector", pa.list_(pa.float32(), dimension), nullable=False))
    return pa.schema(fields, metadata={EMBEDDER_KEY: f"{embedder}:{dimension or 0}".encode()})


@functools.cache
def _connect(uri: str, index_cache_bytes: int = WRITE_INDEX_CACHE_BYTES) -> lancedb.DBConnection:
    # Imported here, not at module import: the Functions Framework's server forks its
    # workers after importing main.py, and LanceDB's runtime is not safe across a fork.
    import lancedb

    # Interval 0: every read sees the latest commit of other writers (the default, None,
    # pins a handle to the version it opened).
    return lancedb.connect(
        uri,
        read_consistency_interval=timedelta(0),
        session=lancedb.Session(
            index_cache_size_bytes=index_cache_bytes,
            metadata_cache_size_bytes=METADATA_CACHE_BYTES,
        ),
    )


def _fts() -> Any:
    from lancedb.index import FTS

    # Split at whitespace only: the terms column already holds each identifier whole and
    # in parts. Phrases are checked on the text itself, so no positions are needed.
    return FTS(base_tokenizer="whitespace", with_position=False)


def chunk_terms(chunk: Chunk) -> str:
    """What full-text search matches of a chunk: its heading path's terms and its text's."""
    return search_terms(f"{chunk.heading_path}\n{chunk.text}")


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _any_uri(uris: Iterable[str]) -> str:
    """A filter matching the rows of these documents."""
    return " OR ".join(f"uri = {_sql_string(uri)}" for uri in sorted(set(uris)))


def _is_conflict(error: BaseException) -> bool:
    text = str(error).lower()
    return "conflict" in text or "retryable" in text


@dataclass(frozen=True, slots=True)
class WriteResult:
    inserted: int
    deleted: int
    attempts: int
    version: int = 0


@dataclass(frozen=True, slots=True)
class Compaction:
    """What one `compact()` did to a collection's table."""

    fragments_before: int
    fragments_after: int
    rows: int

    def __str__(self) -> str:
        return (
            f"{plural(self.fragments_before, 'fragment')} into {self.fragments_after}, "
            f"{plural(self.rows, 'row')}"
        )


def _btree() -> Any:
    from lancedb.index import BTree

    return BTree()


def _has_index(table: Table, column: str) -> bool:
    return any(index.columns == [column] for index in table.list_indices())


def ensure_index(
    table: Table, column: str, config: Any, *, latest: Callable[[], Table], name: str
) -> None:
    """Index `column` of `table` with `config` unless it is indexed. Two submits to a new
    table race here (two deliveries of one Pub/Sub message do): Lance refuses the second
    commit as a conflict, which is fine once the index exists (on the `latest` version,
    not `table`'s), and is a `TransientError` (retry the submit) otherwise."""
    if _has_index(table, column):
        return
    try:
        table.create_index(column, config=config)
    except RuntimeError as error:
        if not _has_index(latest(), column):
            raise TransientError(f"cannot index {name}: {error}") from error


def _phrase_filter(phrases: Sequence[str]) -> str | None:
    """A filter keeping the chunks whose text holds every phrase."""
    return (
        " AND ".join(f"regexp_like(text, {_sql_string(phrase_pattern(p))})" for p in phrases)
        or None
    )


def _match(terms: str, column: str, *, every: bool = False) -> Any:
    """Any of `terms` (all of them when `every`), in `column`'s full-text index."""
    from lancedb.query import FullTextOperator, MatchQuery

    operator = FullTextOperator.AND if every else FullTextOperator.OR
    # Its other fields have defaults, which mypy's pydantic view does not see.
    return MatchQuery(terms, column, operator=operator)  # type: ignore[call-arg]


def _terms_query(text: str) -> Any:
    """The query's terms, ranked by BM25, in chunks holding every identifier it names."""
    from lancedb.query import BooleanQuery, Occur

    words = _match(search_terms(text), TERMS_COLUMN)
    required = identifiers(text)
    if not required:
        return words
    return BooleanQuery(
        [(Occur.MUST, _match(" ".join(required), TERMS_COLUMN, every=True)), (Occur.SHOULD, words)]
    )


def _hit(row: dict[str, Any], score: str) -> SearchHit:
    return SearchHit(
        chunk_id=row["id"],
        uri=row["uri"],
        text=row["text"],
        heading_path=row["heading_path"],
        page=row["page"],
        position=row["position"],
        score=round(float(row[score]), 6),
        job_id=row.get("job_id") or "",
    )


def _distinct_documents(hits: Iterable[SearchHit], k: int) -> list[SearchHit]:
    """The best hit of each document, best first, with how many of its chunks are among
    `hits`; at most `k` documents."""
    best: dict[str, SearchHit] = {}
    counts: dict[str, int] = {}
    for hit in hits:
        best.setdefault(hit.uri, hit)
        counts[hit.uri] = counts.get(hit.uri, 0) + 1
    return [dataclasses.replace(hit, matched_chunks=counts[uri]) for uri, hit in best.items()][:k]


class Collection:
    """One collection: a LanceDB table under the database at `db_uri`."""

    def __init__(self, db_uri: str, name: str) -> None:
        self.db_uri = db_uri
        self.name = name

    # -- lifecycle ------------------------------------------------------------------------

    def exists(self) -> bool:
        if "://" not in self.db_uri and not os.path.isdir(self.db_uri):
            return False  # connecting would create the directory: a check writes nothing
        return self.name in _connect(self.db_uri).list_tables().tables

    def ensure(self, *, embedder: str, dimension: int | None) -> None:
        """Create the table and its full-text index if either is missing; refuse an
        embedder other than the one its vectors came from. Called at submit, once per job,
        so batches never race to create them."""
        db = _connect(self.db_uri)
        if not self.exists():
            try:
                db.create_table(self.name, schema=chunk_schema(dimension, embedder))
            except (OSError, ValueError, RuntimeError) as error:
                if not self.exists():  # not a concurrent create of the same table
                    raise TransientError(
                        f"cannot create collection {self.name!r}: {error}"
                    ) from error
        self.check_embedder(embedder=embedder, dimension=dimension)
        table = self.table()
        self.ensure_terms_column(table)
        self.ensure_index(table, TERMS_COLUMN)
        self.ensure_index(table, ID_COLUMN)

    def ensure_terms_column(self, table: Table) -> None:
        """Give a collection from before the terms column one, filled with its rows' heading
        paths and texts as they are (their next ingestion writes their terms proper)."""
        if TERMS_COLUMN in table.schema.names:
            return
        try:
            table.add_columns({TERMS_COLUMN: "concat(heading_path, ' ', text)"})
        except (OSError, RuntimeError, ValueError) as error:
            if TERMS_COLUMN not in self.table().schema.names:  # not a concurrent submit's
                raise TransientError(f"cannot upgrade collection {self.name!r}: {error}") from error

    def check_embedder(self, *, embedder: str, dimension: int | None) -> None:
        """`InvalidArgument` unless the collection's vectors came from `embedder`: vectors
        of two embedders (or two models) are not comparable."""
        stored = self.embedder()
        if stored != (embedder, dimension or 0):
            raise InvalidArgument(
                f"collection {self.name!r} holds {stored[0]} embeddings "
                f"({stored[1]} dimensions); ingest with embedder {stored[0]!r} "
                "or choose another collection"
            )

    def ensure_index(self, table: Table, column: str) -> None:
        """Create the full-text index (`TERMS_COLUMN`) or the id's BTREE (`ID_COLUMN`)
        unless `table` has it; collections from before either get it at their next
        submit."""
        config = _fts() if column == TERMS_COLUMN else _btree()
        ensure_index(table, column, config, latest=self.table, name=f"collection {self.name!r}")

    def table(self, *, for_search: bool = False) -> Table:
        cache = SEARCH_INDEX_CACHE_BYTES if for_search else WRITE_INDEX_CACHE_BYTES
        try:
            return _connect(self.db_uri, cache).open_table(self.name)
        except (FileNotFoundError, ValueError) as error:
            raise CollectionNotFound(self.name) from error

    def embedder(self) -> tuple[str, int]:
        """(embedder id, dimension) the collection was created for."""
        metadata = self.table().schema.metadata or {}
        name, _, dimension = metadata.get(EMBEDDER_KEY, b"none:0").decode().partition(":")
        return name, int(dimension or 0)

    def count(self, where: str | None = None) -> int:
        return self.table().count_rows(where)

    # -- writes ---------------------------------------------------------------------------

    def replace_documents(
        self,
        uris: Sequence[str],
        chunks: Sequence[Chunk],
        vectors: np.ndarray | None = None,
        *,
        job_id: str,
    ) -> WriteResult:
        """Make the collection hold exactly `chunks` for the documents `uris`: new chunk
        ids are inserted, ids already there are left as they are (an id fixes the text,
        so its row is identical), and those documents' other chunks are deleted. One
        commit, so readers never see a document half-replaced. Whether any of them has
        chunks stored is read on the version written to, again on every retry."""
        if not uris:
            return WriteResult(0, 0, 0)
        # One write may not repeat an id (LanceDB refuses an ambiguous merge).
        unique = {chunk.chunk_id: row for row, chunk in enumerate(chunks)}
        rows = list(unique.values())
        table = self.table()
        data = self._arrow(
            [chunks[r] for r in rows],
            None if vectors is None else vectors[rows],
            table.schema,
            job_id,
        )
        documents = _any_uri(uris)
        attempts = 0

        @stamina.retry(on=CommitConflict, attempts=WRITE_ATTEMPTS, wait_initial=0.05)
        def write() -> WriteResult:
            nonlocal attempts
            try:
                table.checkout_latest()  # type: ignore[no-untyped-call]  # untyped in lancedb
                merge = table.merge_insert(ID_COLUMN).when_not_matched_insert_all()
                if table.count_rows(documents):
                    merge = merge.when_not_matched_by_source_delete(documents)
                result = merge.execute(data)
            except (OSError, RuntimeError, ValueError) as error:
                if _is_conflict(error):
                    attempts += WRITE_ATTEMPTS  # LanceDB already retried internally
                    raise CommitConflict(str(error)) from error
                raise
            attempts += result.num_attempts
            return WriteResult(
                result.num_inserted_rows, result.num_deleted_rows, attempts, result.version
            )

        try:
            written = write()
        except CommitConflict as error:
            raise TransientError(
                f"collection {self.name!r}: write kept conflicting: {error}"
            ) from error
        if written.version % COMPACT_EVERY_VERSIONS == 0 or self._crossed_unindexed_mark(
            table, written
        ):
            self._compact_while_writing(table)
        return written

    @staticmethod
    def _crossed_unindexed_mark(table: Table, written: WriteResult) -> bool:
        """Whether `written` took the rows the id index misses past a multiple of
        `COMPACT_EVERY_UNINDEXED_ROWS`. Read at the version it made, so of concurrent
        writers exactly one crosses each mark."""
        if not written.inserted:
            return False
        table.checkout(written.version)
        try:
            stats = table.index_stats(ID_INDEX)
        finally:
            table.checkout_latest()  # type: ignore[no-untyped-call]  # untyped in lancedb
        if stats is None:  # a collection from before the id index, until its next submit
            return False
        after = stats.num_unindexed_rows
        before = after - written.inserted
        return before // COMPACT_EVERY_UNINDEXED_ROWS < after // COMPACT_EVERY_UNINDEXED_ROWS

    def _compact_while_writing(self, table: Table) -> None:
        """Compaction in the middle of a job: an optimisation, so a failure is logged and
        the batch, whose write already committed, goes on. Skipped while another thread of
        this process compacts the same table: two would only conflict."""
        key = (self.db_uri, self.name)
        with _COMPACTING_LOCK:
            if key in _COMPACTING:
                return
            _COMPACTING.add(key)
        try:
            self._optimize(cleanup_older_than=None)
        except Exception:
            log.warning("collection %s: compaction during the job failed", self.name, exc_info=True)
        finally:
            with _COMPACTING_LOCK:
                _COMPACTING.discard(key)

    def stored_vectors(self, uris: Sequence[str]) -> dict[tuple[str, str], np.ndarray]:
        """The vectors already stored for these documents' chunks, by (heading path, text):
        a chunk with the same ones, wherever it moved in its document, has the same
        vector, which need not be computed again."""
        table = self.table()
        if not uris or "vector" not in table.schema.names:
            return {}
        dimension = table.schema.field("vector").type.list_size
        rows = (
            table.search()
            .where(_any_uri(uris))
            .select(["heading_path", "text", "vector"])
            .limit(None)
            .to_arrow()
        )
        flat = rows.column("vector").combine_chunks().flatten().to_numpy()
        vectors = flat.reshape(-1, dimension).astype(np.float32, copy=False)
        keys = zip(
            rows.column("heading_path").to_pylist(), rows.column("text").to_pylist(), strict=True
        )
        return dict(zip(keys, vectors, strict=True))

    @staticmethod
    def _arrow(
        chunks: Sequence[Chunk], vectors: np.ndarray | None, schema: pa.Schema, job_id: str
    ) -> pa.Table:
        columns: dict[str, Any] = {
            "id": [c.chunk_id for c in chunks],
            "uri": [c.uri for c in chunks],
            "position": [c.position for c in chunks],
            "text": [c.text for c in chunks],
            "heading_path": [c.heading_path for c in chunks],
            "page": [c.page for c in chunks],
            "tokens": [c.tokens for c in chunks],
            "job_id": [job_id] * len(chunks),
        }
        if TERMS_COLUMN in schema.names:
            columns[TERMS_COLUMN] = [chunk_terms(c) for c in chunks]
        if "vector" in schema.names:
            dimension = schema.field("vector").type.list_size
            if vectors is None or vectors.shape != (len(chunks), dimension):
                raise InvalidArgument(
                    f"collection needs {dimension}-dimension vectors for {len(chunks)} chunks"
                )
            flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1))
            columns["vector"] = pa.FixedSizeListArray.from_arrays(flat, dimension)
        return pa.table(columns, schema=schema)

    def prune(self, keep: Iterable[str], *, under: str) -> int:
        """Delete the chunks of documents whose URI starts with `under` but is not in
        `keep` (they were deleted at the source). Returns how many documents went."""
        table = self.table()
        stored = self._uris(table, under)
        gone = sorted(stored - set(keep))
        for start in range(0, len(gone), 200):
            part = gone[start : start + 200]
            table.delete(_any_uri(part))
        return len(gone)

    @staticmethod
    def _uris(table: Table, prefix: str) -> set[str]:
        # LIKE would need the prefix's % and _ escaped; starts_with is exact.
        rows = (
            table.search()
            .where(f"starts_with(uri, {_sql_string(prefix)})")
            .select(["uri"])
            .limit(None)
            .to_arrow()
        )
        return set(rows.column("uri").to_pylist())

    # -- the once-per-job step ------------------------------------------------------------

    def compact(self) -> Compaction:
        """Fold the small fragments many batch writes left into few, merge new rows into
        the indexes, prune old versions, and build the vector index once the table is
        large enough. Retried on a conflict with a concurrent writer (LanceDB does not
        retry `optimize` itself)."""
        table = self.table()
        before = self._fragments(table)
        self._optimize(cleanup_older_than=timedelta(minutes=10))
        table.checkout_latest()  # type: ignore[no-untyped-call]  # untyped in lancedb
        self.ensure_index(table, TERMS_COLUMN)
        indexes = {index.columns[0] for index in table.list_indices()}
        rows = table.count_rows()
        if (
            "vector" in table.schema.names
            and "vector" not in indexes
            and rows >= VECTOR_INDEX_MIN_ROWS
        ):
            from lancedb.index import IvfPq

            table.create_index("vector", config=IvfPq(distance_type="cosine"))
        return Compaction(before, self._fragments(table), rows)

    @stamina.retry(on=CommitConflict, attempts=WRITE_ATTEMPTS, wait_initial=0.1)
    def _optimize(self, *, cleanup_older_than: timedelta | None) -> None:
        """`optimize` on the latest version, in a child process (it keeps memory in
        proportion to the table: functions/ingestion/compaction.py), retried after a
        conflict with a concurrent writer (LanceDB does not retry it itself). Without
        `cleanup_older_than`, old versions are kept (LanceDB's own default age applies)."""
        optimize_apart(self.db_uri, self.name, cleanup_older_than=cleanup_older_than)

    @staticmethod
    def _fragments(table: Table) -> int:
        # Annotated as a dataclass, returned as a dict by lancedb 0.40.
        stats = cast(dict[str, Any], table.stats())
        return int(stats["fragment_stats"]["num_fragments"])

    # -- reads ----------------------------------------------------------------------------

    def search(
        self, query: ParsedQuery, vector: np.ndarray | None, *, k: int, by_document: bool = True
    ) -> list[SearchHit]:
        """Hybrid search (vector + full text, fused by reciprocal rank) when the collection
        has vectors, full text alone otherwise; only chunks holding every phrase of `query`.
        By document: the best chunk of each of the `k` best documents."""
        from lancedb.rerankers import RRFReranker

        table = self.table(for_search=True)
        if TERMS_COLUMN in table.schema.names:
            terms = _terms_query(query.text)
        else:  # a collection not upgraded yet: its old index on the text
            terms = _match(query.text, "text")
        hybrid = vector is not None and "vector" in table.schema.names
        score = "_relevance_score" if hybrid else "_score"
        phrases = _phrase_filter(query.phrases)

        def best(limit: int) -> tuple[list[SearchHit], int]:
            """The best `limit` chunks, and how many rows the search gave."""
            if vector is not None and hybrid:
                builder: Any = (
                    table.search(query_type="hybrid")
                    .vector(vector.tolist())
                    .text(terms)
                    .rerank(RRFReranker(K=60))
                )
            else:
                builder = table.search(terms, query_type="fts")
            if phrases is not None:
                builder = builder.where(phrases, prefilter=True)
            rows = builder.limit(limit).to_list()
            return [_hit(row, score) for row in rows], len(rows)

        if not by_document:
            return best(k)[0]
        limit = max(MIN_CANDIDATES, k * CANDIDATES_PER_HIT)
        while True:
            hits, found = best(limit)
            documents = _distinct_documents(hits, k)
            if len(documents) == k or found < limit or limit >= MAX_CANDIDATES:
                return documents
            limit *= 4

    def chunk_ids(self) -> Iterator[str]:
        """Every chunk id, once per row (duplicates would show twice)."""
        rows = self.table().search().select(["id"]).limit(None).to_arrow()
        yield from rows.column("id").to_pylist()
