"""Unchanged documents are skipped before they are read, and a changed one replaces exactly
its own chunks: on both sources, a local folder and a bucket on the Cloud Storage emulator,
through the real processor, loaders, chunker, local embedder and LanceDB. Each source
records what it opened, which is how "not read" is seen."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pytest

from functions.config import IngestionSettings, Settings
from functions.errors import ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion import processor as documents
from functions.ingestion.chunker import chunk_document
from functions.ingestion.documents import SourceItem
from functions.ingestion.loaders import load_document
from functions.ingestion.options import DocumentOptions
from functions.ingestion.processor import DocumentBatch, DocumentsProcessor
from functions.ingestion.sink import Collection
from functions.ingestion.sources import LocalSource, Source
from functions.ingestion.sources.gcs import GcsSource
from functions.jobs import Job, JobStats
from functions.processors import BatchContext
from tests.support.gcs import MakeBucket

A = (
    b"# Guide\n\n## Leases\n\nA lease keeps one worker on a batch.\n\n"
    b"## Retries\n\nA retry runs a failed batch again.\n"
)
B = b"# Other\n\nA document nobody changes, about queues and tasks.\n"
# A new section in the middle: the one after it moves one position down.
A2 = A.replace(
    b"## Retries", b"## Callbacks\n\nA callback tells the caller the job ended.\n\n## Retries"
)
HOUR_NS = 3600 * 10**9


class Place(Protocol):
    """Where the documents live: a local folder or a bucket."""

    settings: Settings

    def put(self, name: str, data: bytes) -> str: ...

    def uri(self, name: str) -> str: ...

    def delete(self, name: str) -> None: ...

    def key(self) -> str:
        """The processor's key for this place's source ("" local, the bucket for gs://)."""
        ...

    def changing(self, name: str, data: bytes) -> Source:
        """A source that opens `name` as it is, then has it rewritten to `data` while it is
        being read (between the first and the rest of its bytes)."""
        ...


@dataclass
class Folder:
    root: Path
    settings: Settings

    def put(self, name: str, data: bytes) -> str:
        path = self.root / name
        path.write_bytes(data)
        # Written an hour ago: a file modified in the very last moments is compared by
        # content, however its stamp looks (see functions/ingestion/fingerprint.py).
        stamp = time.time_ns() - HOUR_NS + len(data)
        os.utime(path, ns=(stamp, stamp))
        return str(path)

    def uri(self, name: str) -> str:
        return str(self.root / name)

    def delete(self, name: str) -> None:
        (self.root / name).unlink()

    def key(self) -> str:
        return ""

    def changing(self, name: str, data: bytes) -> Source:
        folder = self

        class Changing(LocalSource):
            def open(self, uri: str) -> BinaryIO:
                stream = super().open(uri)
                assert isinstance(stream, io.BufferedReader)
                return _HalfThenRest(stream, lambda: folder.put(name, data))

        return Changing(str(self.root), self.settings)


@dataclass
class Bucket:
    client: Any
    name: str
    settings: Settings

    def put(self, name: str, data: bytes) -> str:
        self.client.bucket(self.name).blob(name).upload_from_string(data)
        return self.uri(name)

    def uri(self, name: str) -> str:
        return f"gs://{self.name}/{name}"

    def delete(self, name: str) -> None:
        self.client.bucket(self.name).blob(name).delete()

    def key(self) -> str:
        return self.name

    def changing(self, name: str, data: bytes) -> Source:
        bucket = self

        class Changing(GcsSource):
            def open(self, uri: str) -> BinaryIO:
                stream = super().open(uri)
                assert isinstance(stream, io.BufferedReader)
                return _HalfThenRest(stream, lambda: bucket.put(name, data))

        return Changing(f"gs://{self.name}/", self.settings)


class _HalfThenRest(io.BufferedReader):
    """A stream that lets `change` run after the first half of the bytes is read."""

    def __init__(self, opened: io.BufferedReader, change: Callable[[], object]) -> None:
        super().__init__(opened.raw, buffer_size=8)
        self._opened = opened  # it owns the raw stream: kept, so it does not close it
        self._change = change

    def read(self, size: int | None = -1, /) -> bytes:
        half = super().read(max(1, (size or 2) // 2))
        self._change()
        return half + super().read(-1 if size is None or size < 0 else size - len(half))


@pytest.fixture(params=["local", "gcs"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> Place:
    lancedb = IngestionSettings(lancedb_uri=str(tmp_path / "lancedb"))
    if request.param == "local":
        root = tmp_path / "docs"
        root.mkdir()
        return Folder(root, Settings(allowed_roots=(root,), ingestion=lancedb))
    make_bucket: MakeBucket = request.getfixturevalue("make_bucket")
    name = make_bucket({})
    settings = Settings(ingestion=replace(lancedb, allowed_buckets=(name,)))
    return Bucket(request.getfixturevalue("gcs_client"), name, settings)


@dataclass
class Run:
    stats: JobStats
    work: DocumentBatch
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def opened(self) -> set[str]:
        return {uri for source in self.work.sources.values() for uri in source.opened}  # type: ignore[attr-defined]


def ingest(
    place: Place,
    names: list[str],
    *,
    job: str,
    options: Mapping[str, Any] | None = None,
    source: Source | None = None,
) -> Run:
    """One batch of `names` into collection `docs`, as job `job`."""
    items = [place.uri(name) for name in names]
    processor = DocumentsProcessor(place.settings)
    request = IngestRequest(
        source="documents", collection="docs", items=items, options=dict(options or {})
    )
    processor.check_request(request)
    processor.prepare(request)
    work = processor.open_batch(
        BatchContext(job, f"{job}_0000", "docs", dict(options or {}), items=items)
    )
    assert isinstance(work, DocumentBatch)
    if source is not None:
        work.sources[place.key()] = source
    run = Run(JobStats(), work)
    for item in items:
        try:
            run.stats += work.process(item)
        except ItemSkipped:
            run.stats += JobStats(skipped=1)
        except ItemFailed as error:
            run.stats += JobStats(failed=1)
            run.failures[item] = error.message
    run.stats += work.flush()
    return run


def rows(place: Place) -> dict[str, tuple[str, str]]:
    """Every chunk in the collection: id -> (uri, the job that wrote it)."""
    table = Collection(place.settings.ingestion.lancedb_uri, "docs").table()
    data = table.to_arrow().select(["id", "uri", "job_id"]).to_pylist()
    return {row["id"]: (row["uri"], row["job_id"]) for row in data}


def chunk_ids(uri: str, data: bytes) -> set[str]:
    """The ids of the chunks a document of these bytes is made of."""
    document = load_document(SourceItem(uri, len(data)), data, text_field="text")
    return {chunk.chunk_id for chunk in chunk_document(document, DocumentOptions().chunk_size)}


def test_an_unchanged_document_is_not_read(place: Place) -> None:
    """The second run opens nothing, counts both documents unchanged, embeds nothing and
    leaves every chunk as the first run wrote it."""
    place.put("a.md", A)
    place.put("b.md", B)
    first = ingest(place, ["a.md", "b.md"], job="first")
    assert (first.stats.processed, first.stats.unchanged, first.failures) == (2, 0, {})
    before = rows(place)

    again = ingest(place, ["a.md", "b.md"], job="again")
    assert again.opened == set()
    assert again.stats == JobStats(files=2, unchanged=2)
    assert rows(place) == before
    if isinstance(place, Bucket):  # the fingerprints came from one listing of the batch
        [source] = again.work.sources.values()
        assert isinstance(source, GcsSource) and source.pages_read == 1
        assert set(again.work.changes.listed) == {place.uri("a.md"), place.uri("b.md")}


def test_a_changed_document_replaces_exactly_its_own_chunks(place: Place) -> None:
    """Only the changed document is read. It ends up with exactly the chunks its new text
    makes, and only its new section is embedded: the sections that merely moved keep their
    vectors. The other document's chunks are untouched (still the first job's)."""
    a, b = place.put("a.md", A), place.put("b.md", B)
    ingest(place, ["a.md", "b.md"], job="first")
    b_before = {i: row for i, row in rows(place).items() if row[0] == b}
    place.put("a.md", A2)

    again = ingest(place, ["a.md", "b.md"], job="again")
    assert again.opened == {a}
    assert (again.stats.processed, again.stats.unchanged, again.stats.embedded) == (1, 1, 1)
    after = rows(place)
    assert {i for i, (uri, _) in after.items() if uri == a} == chunk_ids(a, A2)
    assert {i: row for i, row in after.items() if row[0] == b} == b_before


def test_a_file_changing_while_it_is_read_fails_by_name_and_keeps_its_chunks(
    place: Place,
) -> None:
    """Bytes rewritten between the first and the second half of a read fail the item,
    naming it, and its old chunks stay whole; the next run ingests the new text whole."""
    a = place.put("a.md", A)
    ingest(place, ["a.md"], job="first")
    before = rows(place)

    place.put("a.md", A2)  # changed, so read: and rewritten again while it is
    a3 = A2.replace(b"batch", b"job") + b"\n## Extra\n\nWritten while it was being read.\n"
    during = ingest(place, ["a.md"], job="during", source=place.changing("a.md", a3))
    assert during.stats.failed == 1
    assert "changed while it was being read" in during.failures[a]
    assert rows(place) == before

    after = ingest(place, ["a.md"], job="after")
    assert after.failures == {}
    assert set(rows(place)) == chunk_ids(a, a3)


def test_a_touched_file_with_the_same_bytes_is_read_once_but_never_chunked(
    tmp_path: Path,
) -> None:
    """A new mtime makes the file be read and hashed; the same bytes count it unchanged
    (nothing chunked or embedded), and its new stamp is kept, so the run after reads
    nothing."""
    root = tmp_path / "docs"
    root.mkdir()
    folder = Folder(
        root,
        Settings(
            allowed_roots=(root,),
            ingestion=IngestionSettings(lancedb_uri=str(tmp_path / "lancedb")),
        ),
    )
    a = folder.put("a.md", A)
    ingest(folder, ["a.md"], job="first")
    folder.put("a.md", A)  # the same bytes, another mtime

    touched = ingest(folder, ["a.md"], job="touched")
    assert touched.opened == {a}
    assert touched.stats == JobStats(files=1, unchanged=1, bytes_read=len(A))
    assert ingest(folder, ["a.md"], job="then").opened == set()


def test_other_chunking_options_read_documents_again(place: Place) -> None:
    place.put("a.md", A)
    ingest(place, ["a.md"], job="first")
    other = ingest(place, ["a.md"], job="smaller", options={"chunk_tokens": 64, "chunk_overlap": 8})
    assert (other.stats.processed, other.stats.unchanged) == (1, 0)


def test_a_collection_made_again_under_its_name_reads_every_document(place: Place) -> None:
    """Fingerprints describe a collection's chunks: when its table is gone, they go too."""
    place.put("a.md", A)
    ingest(place, ["a.md"], job="first")
    shutil.rmtree(Path(place.settings.ingestion.lancedb_uri) / "docs.lance")
    again = ingest(place, ["a.md"], job="again")
    assert (again.stats.processed, again.stats.unchanged) == (1, 0)
    assert len(rows(place)) == again.stats.chunks > 0


def test_prune_forgets_removed_documents_so_they_come_back_whole(tmp_path: Path) -> None:
    """A document pruned from the collection, put back unchanged, is ingested again."""
    root = tmp_path / "docs"
    root.mkdir()
    settings = Settings(
        allowed_roots=(root,), ingestion=IngestionSettings(lancedb_uri=str(tmp_path / "db"))
    )
    folder = Folder(root, settings)
    a = folder.put("a.md", A)
    folder.put("b.md", B)
    ingest(folder, ["a.md", "b.md"], job="first")
    folder.delete("a.md")
    request = {"location": str(root), "options": {"prune": True}}
    job = Job.new(source="documents", collection="docs", request=request)
    DocumentsProcessor(settings).job_finished(job)
    assert {uri for uri, _ in rows(folder).values()} == {str(root / "b.md")}

    folder.put("a.md", A)
    back = ingest(folder, ["a.md", "b.md"], job="back")
    assert (back.stats.processed, back.stats.unchanged) == (1, 1)
    assert {i for i, (uri, _) in rows(folder).items() if uri == a} == chunk_ids(a, A)


def test_items_count_as_processed_once_their_chunks_are_stored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After every item, what the batch has reported as processed is exactly the set of
    documents the collection holds: never ahead of the stored work."""
    monkeypatch.setattr(documents, "FLUSH_CHUNKS", 3)
    root = tmp_path / "docs"
    root.mkdir()
    folder = Folder(
        root,
        Settings(
            allowed_roots=(root,), ingestion=IngestionSettings(lancedb_uri=str(tmp_path / "db"))
        ),
    )
    names = [f"{n}.md" for n in range(5)]
    items = [folder.put(name, A if n % 2 else B) for n, name in enumerate(names)]
    processor = DocumentsProcessor(folder.settings)
    request = IngestRequest(source="documents", collection="docs", items=items)
    processor.prepare(request)
    work = processor.open_batch(BatchContext("job", "job_0000", "docs", items=items))
    reported = JobStats()
    seen: list[tuple[int, int]] = []
    for item in items:
        reported += work.process(item)
        stored = {uri for uri, _ in rows(folder).values()}
        seen.append((reported.processed, len(stored)))
        assert reported.processed == len(stored)
        assert reported.chunks == len(rows(folder))
    reported += work.flush()
    assert reported.processed == len({uri for uri, _ in rows(folder).values()}) == 5
    assert any(done < position + 1 for position, (done, _) in enumerate(seen))  # buffered


def test_a_retried_batch_counts_what_its_earlier_attempt_stored(place: Place) -> None:
    """Another attempt of the same job reads none of the documents the first one stored,
    and its stats add up as if it had done them: a retried batch counts as a whole one."""
    place.put("a.md", A)
    place.put("b.md", B)
    first = ingest(place, ["a.md", "b.md"], job="job")
    retried = ingest(place, ["a.md", "b.md"], job="job")
    assert retried.opened == set()
    assert retried.stats == replace(first.stats, embedded=0)
