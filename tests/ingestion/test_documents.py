"""The `documents` processor on real parts: the seed corpus read from disk, chunked,
embedded by the local model, written to a LanceDB table, then searched."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from functions.config import IngestionSettings, Settings
from functions.errors import CollectionNotFound, InvalidArgument, ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion.embedders import LocalEmbedder, VertexEmbedder, embedder_for_collection
from functions.ingestion.processor import DocumentBatch, DocumentsProcessor
from functions.ingestion.search import search_collection
from functions.ingestion.sink import Collection
from functions.jobs import Job, JobStats
from functions.local.emulators import ROOT
from functions.processors import BatchContext

SEEDS = ROOT / "samples" / "corpus"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        allowed_roots=(SEEDS, tmp_path),
        ingestion=IngestionSettings(lancedb_uri=str(tmp_path / "lancedb")),
    )


def _ingest(settings: Settings, items: list[str], collection: str = "docs") -> JobStats:
    processor = DocumentsProcessor(settings)
    request = IngestRequest(source="documents", collection=collection, items=items)
    processor.check_request(request)
    job = Job.new(source="documents", collection=collection, request=request.model_dump())
    processor.prepare(request)
    work = processor.open_batch(
        BatchContext(job.job_id, f"{job.job_id}_0000", collection, items=items)
    )
    stats = JobStats()
    for item in items:
        try:
            stats += work.process(item)
        except ItemSkipped:
            stats += JobStats(skipped=1)
        except ItemFailed:
            stats += JobStats(failed=1)
    return stats + work.flush()


def test_the_seed_corpus_is_searchable_by_meaning(settings: Settings) -> None:
    """Every chunk the stats count is in the table, and a question in other words than the
    text ("terminate a job") finds the chunk about cancelling in the top 3: the vectors
    are real embeddings, not a stand-in."""
    items = sorted(str(p) for p in SEEDS.glob("*.md"))
    stats = _ingest(settings, items)
    assert (stats.files, stats.documents, stats.failed) == (len(items), len(items), 0)
    assert Collection(settings.ingestion.lancedb_uri, "docs").count() == stats.chunks > 0
    hits = search_collection(settings, "docs", "how do I terminate a job that is running", k=3)
    assert any(Path(hit.uri).name == "cancellation.md" for hit in hits)
    assert all(hit.heading_path for hit in hits)


def test_reingesting_unchanged_files_keeps_the_chunk_count(settings: Settings) -> None:
    """The second run counts every file unchanged, and reads, chunks and embeds none."""
    items = sorted(str(p) for p in SEEDS.glob("*.md"))[:5]
    first = _ingest(settings, items)
    again = _ingest(settings, items)
    assert again == JobStats(files=5, unchanged=5)
    assert Collection(settings.ingestion.lancedb_uri, "docs").count() == first.chunks


def test_broken_and_unknown_files_fail_or_skip_alone(settings: Settings, tmp_path: Path) -> None:
    """A broken PDF fails only itself; an unknown type is skipped; the good file lands.
    Files, bytes read and chunks add up."""
    good = tmp_path / "good.md"
    good.write_text("# Title\n\nSome useful text about leases.\n")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    unknown = tmp_path / "picture.xyz"
    unknown.write_bytes(b"\x00\x01")
    stats = _ingest(settings, [str(good), str(broken), str(unknown)])
    assert (stats.files, stats.processed, stats.failed, stats.skipped) == (3, 1, 1, 1)
    assert stats.bytes_read == sum(p.stat().st_size for p in (good, broken, unknown))
    assert Collection(settings.ingestion.lancedb_uri, "docs").count() == stats.chunks == 1


def test_a_collection_keeps_the_embedder_it_was_made_with(settings: Settings) -> None:
    item = str(SEEDS / "leases.md")
    _ingest(settings, [item])
    processor = DocumentsProcessor(settings)
    with pytest.raises(InvalidArgument, match="holds local/minilm-l3 embeddings"):
        processor.check_request(
            IngestRequest(
                source="documents", collection="docs", items=[item], options={"embedder": "none"}
            )
        )


def test_a_collection_never_mixes_local_models(settings: Settings) -> None:
    """The local models all make 384 numbers, but not comparable ones: a collection made
    with MiniLM-L6 (int8 or as shipped, the same network) refuses MiniLM-L3 and the other
    way round. Plain `local` ingests into a collection with the model it was made with
    (made before the default changed), and queries use the collection's model too."""
    item = str(SEEDS / "leases.md")
    processor = DocumentsProcessor(settings)

    def request(embedder: str | None, collection: str) -> IngestRequest:
        options = {"embedder": embedder} if embedder else {}
        return IngestRequest(
            source="documents", collection=collection, items=[item], options=options
        )

    processor.prepare(request("local/minilm-l6-shipped", "older"))
    processor.check_request(request("local/minilm-l6", "older"))
    with pytest.raises(InvalidArgument, match="local embeddings"):
        processor.check_request(request("local/minilm-l3", "older"))
    for plain in ("local", None):
        processor.check_request(request(plain, "older"))
        work = processor.open_batch(BatchContext("j", "j_0000", "older", {"embedder": plain}))
        assert isinstance(work, DocumentBatch) and isinstance(work.embedder, LocalEmbedder)
        assert work.embedder.model.name == "minilm-l6"

    processor.prepare(request(None, "newer"))  # the default model: MiniLM-L3
    assert Collection(settings.ingestion.lancedb_uri, "newer").embedder()[0] == "local/minilm-l3"
    with pytest.raises(InvalidArgument, match="local/minilm-l3"):
        processor.check_request(request("local/minilm-l6", "newer"))
    query_embedder = embedder_for_collection("local/minilm-l3", settings)
    assert isinstance(query_embedder, LocalEmbedder)
    assert query_embedder.model.name == "minilm-l3"


def test_full_text_only_collections_search_without_vectors(settings: Settings) -> None:
    none = dataclasses.replace(
        settings, ingestion=dataclasses.replace(settings.ingestion, embedder="none")
    )
    _ingest(none, [str(SEEDS / "leases.md"), str(SEEDS / "pubsub.md")], collection="text")
    hits = search_collection(none, "text", "lease", k=2)
    assert hits and Path(hits[0].uri).name == "leases.md"


def test_searching_a_missing_collection_is_not_found(settings: Settings) -> None:
    with pytest.raises(CollectionNotFound):
        search_collection(settings, "nothing-here", "query")
    with pytest.raises(CollectionNotFound):
        search_collection(settings, "../etc", "query")


def test_a_vertex_collection_keeps_its_model(settings: Settings) -> None:
    """Vertex AI models of the same size make incomparable vectors: a collection made
    with one refuses another, and its queries are embedded with its own model."""
    vertex = dataclasses.replace(
        settings,
        gcp_project="fanout-test",
        ingestion=dataclasses.replace(settings.ingestion, vertex_model="text-embedding-005"),
    )
    Collection(settings.ingestion.lancedb_uri, "cloud").ensure(
        embedder="vertex/text-embedding-004", dimension=768
    )
    request = IngestRequest(
        source="documents",
        collection="cloud",
        items=[str(SEEDS / "leases.md")],
        options={"embedder": "vertex"},
    )
    with pytest.raises(InvalidArgument, match="vertex/text-embedding-004"):
        DocumentsProcessor(vertex).check_request(request)
    query_embedder = embedder_for_collection("vertex/text-embedding-004", vertex)
    assert isinstance(query_embedder, VertexEmbedder)
    assert query_embedder.model == "text-embedding-004"


def test_a_file_gone_between_planning_and_running_fails_alone(
    settings: Settings, tmp_path: Path
) -> None:
    """A listed file deleted before its batch runs fails that item ("no longer exists");
    the batch's other files still land."""
    kept, gone = tmp_path / "kept.md", tmp_path / "gone.md"
    kept.write_text("# Kept\n\nStill here.\n")
    gone.write_text("# Gone\n\nDeleted after planning.\n")
    items = [str(gone), str(kept)]
    processor = DocumentsProcessor(settings)
    request = IngestRequest(source="documents", collection="docs", items=items)
    processor.check_request(request)
    processor.prepare(request)
    gone.unlink()
    work = processor.open_batch(BatchContext("job", "job_0000", "docs"))
    with pytest.raises(ItemFailed, match="no longer exists"):
        work.process(str(gone))
    size = kept.stat().st_size
    assert work.process(str(kept)) == JobStats(files=1, bytes_read=size)  # not stored yet
    assert work.flush() == JobStats(files=1, processed=1, documents=1, chunks=1, embedded=1)
    assert Collection(settings.ingestion.lancedb_uri, "docs").count() == 1
