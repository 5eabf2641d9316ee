"""The LanceDB sink on real tables: upserts by chunk id, replacement of a document's
chunks, concurrent writers in separate processes, and compaction under a live write."""

from __future__ import annotations

import functools
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from functions.errors import CollectionNotFound, InvalidArgument
from functions.ingestion import document_index, sink
from functions.ingestion.document_index import DocumentIndex, KnownDocument
from functions.ingestion.documents import Chunk
from functions.ingestion.fingerprint import Fingerprint
from functions.ingestion.query_text import ParsedQuery
from functions.ingestion.sink import Collection

DIMENSION = 8


def _chunks(uri: str, n: int, version: str = "v1") -> list[Chunk]:
    return [
        Chunk(chunk_id=f"{uri}#{version}#{i}", uri=uri, position=i, text=f"{version} text {i}")
        for i in range(n)
    ]


def _vectors(n: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).random((n, DIMENSION), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def _known(uris: list[str], *, chunks: int) -> dict[str, KnownDocument]:
    fingerprint = Fingerprint(size=1, stamp="2024-01-01T00:00:00", md5="0" * 32)
    return {uri: KnownDocument(fingerprint, "recipe", chunks, "job") for uri in uris}


def _write(collection: Collection, uri: str, n: int, version: str = "v1") -> None:
    collection.replace_documents([uri], _chunks(uri, n, version), _vectors(n), job_id="job")


@pytest.fixture
def collection(tmp_path: Path) -> Collection:
    made = Collection(str(tmp_path / "lancedb"), "docs")
    made.ensure(embedder="local", dimension=DIMENSION)
    return made


def test_rewriting_the_same_chunks_changes_nothing(collection: Collection) -> None:
    """A retried batch upserts the same ids: no duplicates, nothing inserted."""
    _write(collection, "a.md", 5)
    again = collection.replace_documents(["a.md"], _chunks("a.md", 5), _vectors(5), job_id="j")
    assert (again.inserted, again.deleted) == (0, 0)
    assert sorted(collection.chunk_ids()) == sorted(c.chunk_id for c in _chunks("a.md", 5))


def test_a_changed_document_leaves_none_of_its_stale_chunks(collection: Collection) -> None:
    """Re-ingesting a document replaces its chunks; other documents are untouched."""
    _write(collection, "a.md", 5)
    _write(collection, "b.md", 3)
    _write(collection, "a.md", 2, version="v2")
    ids = set(collection.chunk_ids())
    assert ids == {c.chunk_id for c in _chunks("a.md", 2, "v2") + _chunks("b.md", 3)}


def test_an_emptied_document_loses_its_chunks(collection: Collection) -> None:
    _write(collection, "a.md", 4)
    collection.replace_documents(["a.md"], [], _vectors(0), job_id="j")
    assert collection.count() == 0


def test_an_embedder_other_than_the_collections_is_refused(collection: Collection) -> None:
    with pytest.raises(InvalidArgument, match="local embeddings"):
        collection.ensure(embedder="none", dimension=None)
    assert collection.embedder() == ("local", DIMENSION)


def _at_once(calls: list[Callable[[], object]]) -> None:
    """Run the calls on threads released together by a barrier; re-raise any error."""
    start = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> None:
        start.wait()
        call()

    with ThreadPoolExecutor(len(calls)) as pool:
        for future in [pool.submit(run, call) for call in calls]:
            future.result()


@pytest.mark.parametrize("column", [sink.TERMS_COLUMN, sink.ID_COLUMN])
def test_two_submits_racing_to_index_a_new_collection_both_go_on(
    tmp_path: Path, column: str
) -> None:
    """Two submits to a new collection at once (two deliveries of one Pub/Sub message)
    both create its full-text index and its id index; Lance refuses one commit as a
    conflict, and that submit goes on all the same, since the index exists: neither
    raises."""
    db = str(tmp_path / "lancedb")
    for round_ in range(3):
        name = f"new{round_}"
        sink._connect(db).create_table(name, schema=sink.chunk_schema(DIMENSION, "local"))
        collection = Collection(db, name)
        handles = [collection.table(), collection.table()]  # each submit opened it
        _at_once([functools.partial(collection.ensure_index, t, column) for t in handles])
        assert [index.columns for index in collection.table().list_indices()] == [[column]]


def test_a_collection_from_before_the_id_index_gets_it_at_its_next_submit(
    tmp_path: Path,
) -> None:
    """A write of new documents looks their ids up in the id's BTREE (bounded memory,
    whatever the collection's size): a collection made without one gets it from `ensure`,
    and its rows stay exact through later writes and a compaction."""
    db = str(tmp_path / "lancedb")
    sink._connect(db).create_table("old", schema=sink.chunk_schema(DIMENSION, "local"))
    collection = Collection(db, "old")
    _write(collection, "/old.md", 3)
    assert not sink._has_index(collection.table(), sink.ID_COLUMN)
    collection.ensure(embedder="local", dimension=DIMENSION)
    assert sink._has_index(collection.table(), sink.ID_COLUMN)
    _write(collection, "/new.md", 2)
    _write(collection, "/old.md", 2, version="v2")
    collection.compact()
    _write(collection, "/newer.md", 1)
    assert sorted(collection.chunk_ids()) == [
        "/new.md#v1#0",
        "/new.md#v1#1",
        "/newer.md#v1#0",
        "/old.md#v2#0",
        "/old.md#v2#1",
    ]


def test_a_fingerprint_table_from_before_its_uri_index_gets_it_at_the_next_submit(
    tmp_path: Path,
) -> None:
    """The fingerprint table's upserts look documents up in a BTREE on the URI (bounded
    memory, whatever the number of documents): a table made without one gets it from
    `ensure`, which two submits may run at once, and upserts stay exact after it."""
    db = str(tmp_path / "lancedb")
    index = DocumentIndex(db, "docs")
    sink._connect(db).create_table(index.name, schema=document_index.SCHEMA)
    index.record(_known(["/a.md", "/b.md"], chunks=1))
    assert not sink._has_index(sink._connect(db).open_table(index.name), "uri")
    _at_once([index.ensure, index.ensure])
    assert sink._has_index(sink._connect(db).open_table(index.name), "uri")
    index.record(_known(["/b.md", "/c.md"], chunks=2))
    assert {
        uri: known.chunks for uri, known in index.known(["/a.md", "/b.md", "/c.md"]).items()
    } == {
        "/a.md": 1,
        "/b.md": 2,
        "/c.md": 2,
    }


def test_the_fingerprint_table_is_compacted_at_the_jobs_end_and_keeps_every_document(
    tmp_path: Path,
) -> None:
    """The job's end folds the fingerprint table and every document keeps its fingerprint."""
    index = DocumentIndex(str(tmp_path / "lancedb"), "docs")
    index.ensure()
    uris = [f"doc-{i}.md" for i in range(12)]
    for chunks, uri in enumerate(uris):
        index.record(_known([uri], chunks=chunks))
    index.compact()
    table = index._table()
    assert table is not None and Collection._fragments(table) == 1
    assert {uri: known.chunks for uri, known in index.known(uris).items()} == {
        uri: chunks for chunks, uri in enumerate(uris)
    }


def test_a_missing_collection_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(CollectionNotFound):
        Collection(str(tmp_path / "lancedb"), "nope").table()


def test_prune_removes_documents_gone_from_the_location(collection: Collection) -> None:
    """Only documents under the location and absent from the new listing go."""
    for uri in ("/data/keep.md", "/data/gone.md", "/other/gone.md"):
        _write(collection, uri, 2)
    removed = collection.prune(["/data/keep.md"], under="/data/")
    assert removed == 1
    assert {c.split("#")[0] for c in collection.chunk_ids()} == {"/data/keep.md", "/other/gone.md"}


def _in_processes(target: Callable[..., None], *args: tuple[Any, ...]) -> None:
    """Run `target(*arg, barrier)` in one spawned process per `arg`, all released at once
    by the barrier, and check that each ended cleanly."""
    spawn = multiprocessing.get_context("spawn")  # LanceDB deadlocks under fork
    start = spawn.Barrier(len(args))
    processes = [spawn.Process(target=target, args=(*arg, start)) for arg in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=180)
    assert [p.exitcode for p in processes] == [0] * len(args)


def _deliver(db: str, uris: list[str], start: Barrier) -> None:
    collection = Collection(db, "docs")
    start.wait()
    for uri in uris:
        _write(collection, uri, 20)


def test_a_batch_delivered_twice_at_once_leaves_each_chunk_once(collection: Collection) -> None:
    """Two processes write the same new chunk ids at the same moment, document by document
    (a duplicate delivery). Each id ends up exactly once: the id column is declared the
    table's primary key; without that declaration LanceDB inserts such rows twice."""
    uris = [f"doc-{i}.md" for i in range(60)]
    _in_processes(_deliver, (collection.db_uri, uris), (collection.db_uri, uris))
    ids = list(collection.chunk_ids())
    assert len(ids) == len(set(ids)) == 60 * 20


def test_concurrent_batches_of_one_job_lose_nothing(collection: Collection) -> None:
    """Two processes writing different documents into one table both land in full."""
    halves = [[f"a-{i}.md" for i in range(10)], [f"b-{i}.md" for i in range(10)]]
    _in_processes(_deliver, *((collection.db_uri, half) for half in halves))
    assert collection.count() == 20 * 20


def test_compaction_survives_a_concurrent_write_from_another_job(
    collection: Collection,
) -> None:
    """Finalizing one job compacts the table while another job's batch is writing to it:
    the compaction completes, and neither side loses a row."""
    for i in range(30):  # many small writes: many fragments to compact
        _write(collection, f"old-{i}.md", 3)
    writing = threading.Event()
    done = threading.Event()

    def other_job() -> None:
        i = 0
        while not done.is_set() or i < 10:
            _write(collection, f"new-{i}.md", 3)
            writing.set()
            i += 1

    writer = threading.Thread(target=other_job)
    writer.start()
    writing.wait(timeout=60)
    collection.compact()
    done.set()
    writer.join(timeout=120)
    written_new = {c.split("#")[0] for c in collection.chunk_ids() if c.startswith("new-")}
    assert collection.count() == 30 * 3 + len(written_new) * 3
    assert len(written_new) >= 10
    # Each write added one fragment. The compaction folded the 30 old ones and the first
    # new one (at least) into one; the writes that committed while it ran (as many as a
    # loaded machine allows) stay as they came.
    writes = 30 + len(written_new)
    assert Collection._fragments(collection.table()) <= writes - 30


def _rewrite_often(db: str, prefix: str, start: Barrier) -> None:
    sink.COMPACT_EVERY_VERSIONS = 8  # compact several times during this short run
    collection = Collection(db, "docs")
    start.wait()
    for round_ in range(6):
        for doc in range(2):  # replaced every round: deletes rows
            _write(collection, f"{prefix}-{doc}.md", 3 + round_ % 2, version=f"r{round_}")
        for doc in range(2):  # new every round: fragments pile up unless compacted
            _write(collection, f"{prefix}-new-{round_}-{doc}.md", 2)


def test_compaction_during_a_job_loses_and_duplicates_nothing(collection: Collection) -> None:
    """Writers compact the table every few versions while others add and replace
    documents (which deletes rows): every document ends with exactly the chunks of its
    last write, and the fragments did not pile up."""
    _in_processes(_rewrite_often, (collection.db_uri, "a"), (collection.db_uri, "b"))
    ids = list(collection.chunk_ids())
    replaced = {
        c.chunk_id for p in ("a", "b") for d in range(2) for c in _chunks(f"{p}-{d}.md", 4, "r5")
    }
    added = {
        c.chunk_id
        for p in ("a", "b")
        for r in range(6)
        for d in range(2)
        for c in _chunks(f"{p}-new-{r}-{d}.md", 2)
    }
    assert len(ids) == len(set(ids)) and set(ids) == replaced | added
    assert Collection._fragments(collection.table()) < 12  # 24 writes added fragments


def test_the_rows_the_id_index_misses_stay_below_the_mark_whatever_the_batch_size(
    collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker's writes stay small however big its batches: the rows the id index misses
    never reach the compaction mark."""
    monkeypatch.setattr(sink, "COMPACT_EVERY_VERSIONS", 10**9)
    monkeypatch.setattr(sink, "COMPACT_EVERY_UNINDEXED_ROWS", 100)
    unindexed = []
    for i in range(12):
        _write(collection, f"big-{i}.md", 40)
        stats = collection.table().index_stats(sink.ID_INDEX)
        assert stats is not None
        unindexed.append(stats.num_unindexed_rows)
    assert max(unindexed) < 100, unindexed  # 480 rows written, 40 to a write
    ids = list(collection.chunk_ids())
    assert len(ids) == len(set(ids)) == 480


def test_compaction_builds_a_vector_index_once_the_table_is_large_enough(
    collection: Collection, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Below the threshold a search scans the vectors; at it, the end-of-job compaction
    builds the vector index (and keeps the full-text and id ones), and search still
    answers."""
    monkeypatch.setattr(sink, "VECTOR_INDEX_MIN_ROWS", 600)
    for i in range(10):
        _write(collection, f"small-{i}.md", 20)
    collection.compact()
    assert {index.columns[0] for index in collection.table().list_indices()} == {
        "search_text",
        "id",
    }
    for i in range(20):
        _write(collection, f"more-{i}.md", 20)
    collection.compact()
    assert {index.columns[0] for index in collection.table().list_indices()} == {
        "search_text",
        "id",
        "vector",
    }
    hits = collection.search(ParsedQuery("v1 text 3"), _vectors(1)[0], k=3, by_document=False)
    assert len(hits) == 3
