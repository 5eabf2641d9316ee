"""Search that ranks documents, on real parts: a small corpus read from a local folder and
from a Cloud Storage bucket (the emulator), chunked, embedded by the local model, written to
real LanceDB tables, then searched: distinct documents, quoted phrases, headings and
identifiers."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from lancedb.index import FTS

from functions.config import IngestionSettings, Settings
from functions.errors import InvalidArgument
from functions.ingest_request import IngestRequest
from functions.ingestion import sink
from functions.ingestion.documents import Chunk
from functions.ingestion.processor import DocumentsProcessor
from functions.ingestion.query_text import ParsedQuery
from functions.ingestion.search import search_collection
from functions.ingestion.sink import Collection
from functions.ingestion.sources import open_source
from functions.jobs import Job
from functions.processors import BatchContext

# Small chunks, so one section spans several.
OPTIONS = {"chunk_tokens": 24, "chunk_overlap": 0}
DELIVERY_PARAGRAPHS = [
    "Each message is delivered exactly once to the worker that leases it.",
    "Delivering exactly once needs the worker to record what it finished before it acks.",
    "A consumer that crashes mid-batch loses nothing: the lease expires and the batch is "
    "delivered again, still exactly once in effect, because finished items are skipped.",
    "The guarantee holds across restarts of every process in the pipeline.",
]
HANDBOOK_PARAGRAPHS = [
    "Wait one second after the first failed attempt, then two, then four.",
    "The wait doubles after every failed attempt until it reaches sixty seconds.",
    "After ten failed attempts the task is given up and its batch is marked failed.",
    "Random jitter of up to half the wait spreads the retries of many tasks apart.",
]
SPHINX_PAGE = """<!DOCTYPE html><html><head><title>json</title></head><body>
<div class="sphinxsidebar" role="navigation"><p>Quick search</p></div>
<div class="body" role="main">
<h1>json — JSON encoder and decoder<a class="headerlink" href="#module-json"
 title="Permalink to this heading">¶</a></h1>
<h2>Basic Usage<a class="headerlink" href="#basic-usage" title="Permalink">#</a></h2>
<dl><dt id="json.dumps">json.dumps(obj, *, indent=None, sort_keys=False)<a class="headerlink"
 href="#json.dumps">¶</a></dt>
<dd><p>Serialize obj to a JSON formatted str. If sort_keys is true, the output of
dictionaries will be sorted by key.</p></dd></dl>
</div></body></html>"""
CORPUS = {
    "delivery.md": "# Delivery\n\n## Guarantees\n\n" + "\n\n".join(DELIVERY_PARAGRAPHS) + "\n",
    "retries.md": (
        "# Retries\n\nA retry happens exactly when a lease expires. It runs once more, and "
        "the worker that held the lease is not told.\n"
    ),
    "handbook.md": "# Handbook\n\n## Backoff schedule\n\n" + "\n\n".join(HANDBOOK_PARAGRAPHS),
    "json.html": SPHINX_PAGE,
    "sorting.md": (
        "# Sorting HOW TO\n\n## Key functions\n\nSorting a list by keys: sort the keys, or "
        "pass a key function, and the sort uses the keys it returns. Sorting keys that are "
        "strings sorts them alphabetically; sorted keys keep their order when equal.\n"
    ),
    "paths.md": (
        "# File paths\n\nTo build a path from its parts, call os.path.join(directory, name); "
        "it inserts the separator the platform uses.\n"
    ),
    "cli.md": (
        "# Command line\n\n## Options\n\nThe --batch-size option sets how many files go in "
        "one task; larger values mean fewer tasks.\n"
    ),
}
PHRASE = re.compile(r"(?i)\bexactly\s+once\b")


@dataclass(frozen=True)
class Searchable:
    settings: Settings
    location: str

    def uri(self, name: str) -> str:
        return f"{self.location.rstrip('/')}/{name}"

    def search(self, query: str, k: int = 5, *, by_document: bool = True) -> list[Any]:
        return search_collection(self.settings, "docs", query, k, by_document=by_document)

    def names(self, query: str, k: int = 5, *, by_document: bool = True) -> list[str]:
        hits = self.search(query, k, by_document=by_document)
        return [hit.uri.rsplit("/", 1)[1] for hit in hits]


def _ingest(settings: Settings, location: str) -> None:
    processor = DocumentsProcessor(settings)
    request = IngestRequest(
        source="documents", collection="docs", location=location, options=OPTIONS
    )
    processor.check_request(request)
    job = Job.new(source="documents", collection="docs", request=request.model_dump())
    processor.prepare(request)
    work = processor.open_batch(BatchContext(job.job_id, f"{job.job_id}_0000", "docs", OPTIONS))
    for item in open_source(location, settings).list_items():
        work.process(item.uri)
    work.flush()
    Collection(settings.ingestion.lancedb_uri, "docs").compact()


@pytest.fixture(scope="module", params=["local", "gcs"])
def corpus(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Searchable:
    """The corpus ingested once per source: a local folder, or a bucket on the emulator."""
    tmp = tmp_path_factory.mktemp(f"search-{request.param}")
    lancedb_uri = str(tmp / "lancedb")
    if request.param == "local":
        folder = tmp / "docs"
        folder.mkdir()
        for name, text in CORPUS.items():
            (folder / name).write_text(text)
        settings = Settings(
            allowed_roots=(folder,), ingestion=IngestionSettings(lancedb_uri=lancedb_uri)
        )
        location = str(folder)
    else:
        client = request.getfixturevalue("gcs_client")
        bucket = client.create_bucket(f"fanout-search-{uuid.uuid4().hex[:12]}")
        for name, text in CORPUS.items():
            bucket.blob(f"docs/{name}").upload_from_string(text.encode())
        settings = Settings(
            ingestion=IngestionSettings(lancedb_uri=lancedb_uri, allowed_buckets=(bucket.name,))
        )
        location = f"gs://{bucket.name}/docs/"
    _ingest(settings, location)
    return Searchable(settings, location)


def test_hits_are_distinct_documents_with_how_many_of_their_chunks_matched(
    corpus: Searchable,
) -> None:
    """By chunk, the best hits are several chunks of the one page about delivery; by
    document, that page comes once, first, with the count of its chunks that hold the
    phrase, and the other hits are other pages."""
    table = Collection(corpus.settings.ingestion.lancedb_uri, "docs").table()
    rows = table.search().where(f"uri = '{corpus.uri('delivery.md')}'").limit(None).to_list()
    holding = sum(1 for row in rows if PHRASE.search(row["text"]))
    assert len(rows) >= 3 and holding >= 2  # the page is several chunks

    by_chunk = corpus.names("exactly once delivery guarantee", by_document=False)
    assert by_chunk[:2] == ["delivery.md"] * 2

    by_document = corpus.search("exactly once delivery guarantee")
    names = [hit.uri.rsplit("/", 1)[1] for hit in by_document]
    assert names[0] == "delivery.md"
    assert len(names) == len(set(names)) == 5

    quoted = corpus.search('"exactly once"')
    assert quoted[0].uri == corpus.uri("delivery.md")
    assert quoted[0].matched_chunks == holding


def test_too_few_documents_among_the_candidates_means_a_deeper_search(
    corpus: Searchable, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first candidates (here 2 chunks) hold fewer documents than asked: the search
    goes deeper rather than answer with fewer."""
    monkeypatch.setattr(sink, "MIN_CANDIDATES", 2)
    monkeypatch.setattr(sink, "CANDIDATES_PER_HIT", 0)
    names = corpus.names("exactly once delivery guarantee", k=5)
    assert names[0] == "delivery.md" and len(set(names)) == 5


def test_quoted_words_must_appear_as_a_phrase_in_every_hit(corpus: Searchable) -> None:
    """retries.md holds "exactly" and "once" apart: found without quotes, never with them.
    The phrase matches across a line break and in any case."""
    assert "retries.md" in corpus.names("exactly once", k=7)
    for query in ('"exactly once"', 'guarantee "Exactly Once"', "\u201cexactly once\u201d"):
        hits = corpus.search(query, k=7, by_document=False)
        assert hits, query
        assert all(PHRASE.search(hit.text) for hit in hits), query
    assert corpus.names('"is not told"', k=7) == ["retries.md"]
    assert corpus.search('"exactly never"') == []


def test_a_query_that_names_a_section_finds_all_of_its_chunks(corpus: Searchable) -> None:
    """The words "backoff schedule" are only in a heading: every chunk of that section
    comes before any other, those whose own text never says them too."""
    table = Collection(corpus.settings.ingestion.lancedb_uri, "docs").table()
    section = table.count_rows("heading_path = 'Handbook > Backoff schedule'")
    assert section >= 4
    hits = corpus.search("backoff schedule", k=section, by_document=False)
    assert {hit.heading_path for hit in hits} == {"Handbook > Backoff schedule"}
    assert sum("backoff" not in hit.text.lower() for hit in hits) >= 3
    assert corpus.names("backoff schedule")[0] == "handbook.md"


def test_headings_are_stored_without_permalink_marks(corpus: Searchable) -> None:
    hit = corpus.search("Serialize obj to a JSON formatted str")[0]
    assert hit.uri == corpus.uri("json.html")
    assert hit.heading_path == "json — JSON encoder and decoder > Basic Usage"
    assert "¶" not in hit.text and "Quick search" not in hit.text


@pytest.mark.parametrize(
    ("query", "page"),
    [
        ("sort_keys", "json.html"),
        ("os.path.join", "paths.md"),
        ("--batch-size", "cli.md"),
        ("join", "paths.md"),
        ("batch size", "cli.md"),
        ("batch-size", "cli.md"),
    ],
)
def test_identifiers_are_found_as_written_and_by_their_parts(
    corpus: Searchable, query: str, page: str
) -> None:
    """`sort_keys` finds the page that defines it, not the prose about sorting keys."""
    assert corpus.names(query)[0] == page


@pytest.mark.parametrize("query", ['"', '""', '" "', '"""', "\u201c\u201d"])
def test_a_query_of_only_quotes_is_refused(corpus: Searchable, query: str) -> None:
    with pytest.raises(InvalidArgument, match="nothing to search for"):
        corpus.search(query)


def test_an_unpaired_quote_is_ignored(corpus: Searchable) -> None:
    """The defined fallback: the words after an unpaired quote are plain words."""
    assert corpus.names('guarantee "exactly once', k=7) == corpus.names(
        "guarantee exactly once", k=7
    )
    assert corpus.names('"exactly once" "guarantee', k=7)[0] == "delivery.md"


def test_a_query_over_the_limit_is_refused(corpus: Searchable) -> None:
    with pytest.raises(InvalidArgument, match="at most 1000 characters"):
        corpus.search("exactly once " * 800)


def test_a_collection_from_before_the_terms_column_is_upgraded(tmp_path: Path) -> None:
    """A table with the old columns and its full-text index on `text` is still searched
    by that index; the next submit adds the terms column and its index, and writes go on."""
    schema = sink.chunk_schema(None, "none")
    old = pa.schema(
        [field for field in schema if field.name != sink.TERMS_COLUMN], metadata=schema.metadata
    )
    db = str(tmp_path / "lancedb")
    table = sink._connect(db).create_table("old", schema=old)
    chunk = Chunk("a1", "/a.md", 0, "# Leases\n\nA lease expires.", "Leases", tokens=6)
    table.add(Collection._arrow([chunk], None, old, "job"))
    table.create_index("text", config=FTS(with_position=True))
    collection = Collection(db, "old")
    assert [hit.chunk_id for hit in collection.search(ParsedQuery("lease"), None, k=3)] == ["a1"]

    collection.ensure(embedder="none", dimension=None)
    assert sink.TERMS_COLUMN in collection.table().schema.names
    assert [hit.chunk_id for hit in collection.search(ParsedQuery("leases"), None, k=3)] == ["a1"]
    newer = Chunk("b1", "/b.md", 0, "# Queues\n\nA queue_name.", "Queues", tokens=6)
    collection.replace_documents(["/b.md"], [newer], job_id="job2")
    collection.compact()
    assert [hit.chunk_id for hit in collection.search(ParsedQuery("queue_name"), None, k=3)] == [
        "b1"
    ]
