"""The `documents` processor: read, load, chunk, embed and upsert each item of a batch.

One item is one file. A file that cannot be read or parsed fails alone (`ItemFailed`);
a type with no loader is skipped (`ItemSkipped`). A document whose fingerprint shows it
unchanged since it was ingested is counted `unchanged` and not read (functions/ingestion/
unchanged.py). Chunks are buffered and written in few commits (each LanceDB write is a
table version, and many small ones fragment the table): at most `FLUSH_CHUNKS` chunks wait
in memory, plus the file being chunked. Embedding happens at the flush too, so the model
sees full batches of texts. An item counts as processed once its chunks are stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from functions.config import Settings
from functions.errors import InvalidArgument, ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion import native_heap, reference_cycles
from functions.ingestion.chunker import chunk_document
from functions.ingestion.document_index import DocumentIndex, KnownDocument
from functions.ingestion.documents import Chunk, SourceItem
from functions.ingestion.embedders import (
    Embedder,
    check_embedder_available,
    embedder_id,
    get_embedder,
)
from functions.ingestion.embedders.local_models import model_for_identity
from functions.ingestion.loaders import load_document
from functions.ingestion.options import DocumentOptions
from functions.ingestion.sink import Collection
from functions.ingestion.sources import Source, open_source, source_for_item
from functions.ingestion.unchanged import ChangeCheck, read_document, recipe
from functions.jobs import Job, JobStats, JobStatus
from functions.processors import BatchContext, BatchWork, register

log = logging.getLogger("fanout.ingestion")

FLUSH_CHUNKS = 512


@register("documents")
class DocumentsProcessor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _embedder_name(self, options: DocumentOptions, collection: str) -> str:
        """The request's embedder, else the deployment's. Plain `local` is the
        deployment's local model for a new collection and the collection's own model for
        one that exists, so collections made before the default changed keep working."""
        name = options.embedder or self.settings.ingestion.embedder
        if name == "local":
            stored = self.collection(collection)
            if stored.exists():
                identity, _ = stored.embedder()
                if identity.partition("/")[0] == "local":
                    return f"local/{model_for_identity(identity).name}"
        return name

    def collection(self, name: str) -> Collection:
        return Collection(self.settings.ingestion.lancedb_uri, name)

    def index(self, name: str) -> DocumentIndex:
        return DocumentIndex(self.settings.ingestion.lancedb_uri, name)

    # -- submit ---------------------------------------------------------------------------

    def check_request(self, request: IngestRequest) -> None:
        options = DocumentOptions.parse(request.options)
        name = self._embedder_name(options, request.collection)
        check_embedder_available(name, self.settings)
        if options.prune and request.location is None:
            raise InvalidArgument("prune needs a location: it removes what is no longer there")
        if request.location is None:
            for uri in request.items or ():
                source_for_item(uri, self.settings)  # inside the allowed roots / buckets
        collection = self.collection(request.collection)
        if collection.exists():
            embedder = get_embedder(name, self.settings)
            collection.check_embedder(embedder=embedder_id(embedder), dimension=embedder.dimension)

    def prepare(self, request: IngestRequest) -> None:
        options = DocumentOptions.parse(request.options)
        embedder = get_embedder(self._embedder_name(options, request.collection), self.settings)
        collection = self.collection(request.collection)
        if not collection.exists():  # fingerprints left by a collection of the same name
            self.index(request.collection).reset()
        collection.ensure(embedder=embedder_id(embedder), dimension=embedder.dimension)
        self.index(request.collection).ensure()

    # -- one batch ------------------------------------------------------------------------

    def open_batch(self, context: BatchContext) -> BatchWork:
        native_heap.fix_mmap_threshold(self.settings.ingestion.malloc_mmap_threshold)
        options = DocumentOptions.parse(context.options)
        return DocumentBatch(
            settings=self.settings,
            options=options,
            embedder=get_embedder(self._embedder_name(options, context.collection), self.settings),
            collection=self.collection(context.collection),
            job_id=context.job_id,
            changes=ChangeCheck(self.index(context.collection), context.items, recipe(options)),
        )

    # -- once, at the end -----------------------------------------------------------------

    def job_finished(self, job: Job) -> None:
        """Compact the collection (many batch writes fragment it) and, when asked, prune
        the chunks of documents that left the location. A cancelled job changes nothing."""
        if job.status is JobStatus.CANCELLED:
            return
        collection = self.collection(job.collection)
        index = self.index(job.collection)
        options = DocumentOptions.parse(job.request.get("options") or {})
        location = job.request.get("location")
        if options.prune and isinstance(location, str):
            source = open_source(location, self.settings)
            present = {item.uri for item in source.list_items()}
            removed = collection.prune(present, under=source.root_uri)
            index.prune(present, under=source.root_uri)
            log.info("job %s: pruned %d documents from %s", job.job_id, removed, job.collection)
        report = collection.compact()
        index.compact()
        log.info("job %s: compacted %s: %s", job.job_id, job.collection, report)


@dataclass
class DocumentBatch:
    """The work of one batch attempt."""

    settings: Settings
    options: DocumentOptions
    embedder: Embedder
    collection: Collection
    job_id: str
    changes: ChangeCheck
    # The sources opened so far, by bucket ("" for local files); each records what it opened.
    sources: dict[str, Source] = field(default_factory=dict)
    _uris: list[str] = field(default_factory=list)
    _chunks: list[Chunk] = field(default_factory=list)
    # Fingerprints of the documents read, recorded once their chunks are stored.
    _fingerprints: dict[str, KnownDocument] = field(default_factory=dict)
    # Items whose chunks wait in the buffer, counted once they are stored; stored ones not
    # reported yet.
    _buffered: JobStats = field(default_factory=JobStats)
    _stored: JobStats = field(default_factory=JobStats)
    # Files and bytes of items that failed or were skipped, reported at the flush.
    _unreported: JobStats = field(default_factory=JobStats)

    def _source(self, uri: str) -> Source:
        key = uri.split("/", 3)[2] if uri.startswith("gs://") else ""
        if key not in self.sources:
            self.sources[key] = source_for_item(uri, self.settings)
        return self.sources[key]

    def process(self, item: str) -> JobStats:
        """Reports what reached the collection meanwhile: this item once it is unchanged,
        and the items of a write this item's chunks set off."""
        try:
            source = self._source(item)
            if (unchanged := self.changes.unchanged(source, item)) is not None:
                return self._unchanged(unchanged) + self._take_stored()
            data, fingerprint = read_document(
                source, item, max_bytes=self.settings.ingestion.max_file_bytes
            )
        except (ItemFailed, InvalidArgument) as error:
            self._unreported += JobStats(files=1)
            raise ItemFailed(error.message) from None
        known = self.changes.known(item)
        if known is not None and fingerprint.matches(known.fingerprint):  # touched, same bytes
            self._fingerprints[item] = replace(known, fingerprint=fingerprint)
            return replace(self._unchanged(known), bytes_read=len(data)) + self._take_stored()
        try:
            document = load_document(
                SourceItem(item, len(data)), data, text_field=self.options.text_field
            )
        except (ItemFailed, ItemSkipped):
            self._unreported += JobStats(files=1, bytes_read=len(data))
            raise
        chunks = list(chunk_document(document, self.options.chunk_size))
        self._uris.append(item)
        self._chunks.extend(chunks)
        self._fingerprints[item] = KnownDocument(
            fingerprint, self.changes.recipe, len(chunks), self.job_id
        )
        self._buffered += JobStats(processed=1, documents=1, chunks=len(chunks))
        if len(self._chunks) >= FLUSH_CHUNKS:
            self._write()
        return JobStats(files=1, bytes_read=len(data)) + self._take_stored()

    def flush(self) -> JobStats:
        self._write()
        reference_cycles.collect()  # before the trim, which returns what this frees
        native_heap.trim()
        unreported, self._unreported = self._unreported, JobStats()
        return unreported + self._take_stored()

    def _unchanged(self, known: KnownDocument) -> JobStats:
        """An unchanged document; or one an earlier attempt of this job stored, which
        counts as that attempt counted it, so a retried batch adds up as a whole one."""
        if known.job_id == self.job_id:
            size = known.fingerprint.size
            return JobStats(files=1, processed=1, documents=1, chunks=known.chunks, bytes_read=size)
        return JobStats(files=1, unchanged=1)

    def _take_stored(self) -> JobStats:
        stored, self._stored = self._stored, JobStats()
        return stored

    def _write(self) -> None:
        if self._uris:
            vectors, embedded = self._vectors() if self.embedder.dimension else (None, 0)
            self.collection.replace_documents(self._uris, self._chunks, vectors, job_id=self.job_id)
            self._stored += self._buffered + JobStats(embedded=embedded)
        # After the chunks: a crash in between leaves a document to be read again.
        self.changes.index.record(self._fingerprints)
        self._uris, self._chunks, self._fingerprints = [], [], {}
        self._buffered = JobStats()

    def _vectors(self) -> tuple[np.ndarray, int]:
        """Vectors for the buffered chunks, and how many were computed: stored ones reused
        (a chunk whose heading path and text a changed document still has), the rest
        computed in one call."""
        stored = self.collection.stored_vectors(self._uris)
        vectors = np.empty((len(self._chunks), self.embedder.dimension or 0), np.float32)
        new = []
        for row, chunk in enumerate(self._chunks):
            found = stored.get((chunk.heading_path, chunk.text))
            if found is None:
                new.append(row)
            else:
                vectors[row] = found
        if new:
            vectors[new] = self.embedder.embed_documents(
                [self._chunks[r].embedded_text for r in new]
            )
        return vectors, len(new)
