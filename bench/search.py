"""Search-quality benchmark; prints one JSON line.

Corpus: the Python 3.11 documentation as HTML, as Debian's `python3.11-doc` package
installs it (/usr/share/doc/python3.11/html; `apt-get install python3.11-doc`). By
default a subset, so a run takes a few minutes on 2 cores: every page of tutorial/, faq/
and howto/, and every `--library-every`-th page of library/ (sorted by path).

The pages are ingested with the `documents` processor's own batch code (loaders, chunker,
embedder, sink; no job system), with `--options` as a request's options, so two embedders
or models can be compared: `--options '{"embedder": "none"}'`.

Queries, drawn with a fixed seed, each with one right answer (its page):
- heading: the title of a section, as a reader would type it (no permalink mark, no
  section number), among the titles that name a section of one page only;
- sentence: a sentence of a page's prose (8 to 30 words) that no other page holds.

Figures: recall@1 (the right page is the first hit), recall@5 (in the first 5) and MRR@5
(mean of 1/rank, 0 past 5), per kind and overall.

Usage: python -m bench.search [--queries 100] [--library-every 5] [--options JSON]
                              [--by document|chunk] [--misses FILE] [--state DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import re
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from functions.config import IngestionSettings, Settings
from functions.errors import ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion.documents import Document, SourceItem
from functions.ingestion.loaders import load_document
from functions.ingestion.processor import DocumentsProcessor
from functions.ingestion.search import search_collection
from functions.ingestion.sink import Collection
from functions.ingestion.sources import open_source
from functions.jobs import Job, JobStats
from functions.processors import BatchContext

DOC_PACKAGE = "python3.11-doc"
DOC_ROOT = Path("/usr/share/doc/python3.11/html")
WHOLE_DIRS = ("tutorial", "faq", "howto")
COLLECTION = "bench"
BATCH_SIZE = 25
K = 5
SEED = 15
MIN_WORDS, MAX_WORDS = 8, 30
# Sphinx's permalink marks, which a reader does not type.
PERMALINK_MARKS = "¶#"
_SECTION_NUMBER = re.compile(r"^\s*\d+(\.\d+)*\.?\s+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


def corpus_pages(root: Path, library_every: int) -> list[Path]:
    """The subset: whole directories, and every n-th library page."""
    pages = [p for d in WHOLE_DIRS for p in sorted((root / d).glob("*.html"))]
    library = sorted((root / "library").glob("*.html"))
    return pages + library[::library_every]


def copy_corpus(pages: Iterable[Path], root: Path, into: Path) -> None:
    for page in pages:
        target = into / page.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(page, target)


def ingest(corpus: Path, settings: Settings, options: dict[str, Any]) -> JobStats:
    """The corpus through the `documents` processor's batches, then compacted."""
    processor = DocumentsProcessor(settings)
    request = IngestRequest(
        source="documents", collection=COLLECTION, location=str(corpus), options=options
    )
    processor.check_request(request)
    job = Job.new(source="documents", collection=COLLECTION, request=request.model_dump())
    processor.prepare(request)
    items = [item.uri for item in open_source(str(corpus), settings).list_items()]
    stats = JobStats()
    for first in range(0, len(items), BATCH_SIZE):
        work = processor.open_batch(BatchContext(job.job_id, "bench", COLLECTION, options))
        for item in items[first : first + BATCH_SIZE]:
            with contextlib.suppress(ItemFailed, ItemSkipped):
                stats += work.process(item)
        stats += work.flush()
    Collection(settings.ingestion.lancedb_uri, COLLECTION).compact()
    return stats


def clean_title(title: str) -> str:
    """A section title as a reader types it: no permalink mark, no section number."""
    title = _SECTION_NUMBER.sub("", title.rstrip(PERMALINK_MARKS))
    return " ".join(title.split())


def _prose_sentences(document: Document) -> Iterable[str]:
    """Sentences of the document's paragraphs (not headings, code or tables)."""
    for block in document.text.split("\n\n"):
        if block.startswith("#") or block.startswith((" ", ">>>", "$")) or "\n" in block:
            continue
        for sentence in _SENTENCE_END.split(block):
            words = sentence.split()
            if MIN_WORDS <= len(words) <= MAX_WORDS and sentence.endswith("."):
                yield " ".join(words)


def make_queries(documents: Sequence[Document], per_kind: int) -> list[tuple[str, str, str]]:
    """(kind, query, uri of the one right page), `per_kind` of each kind."""
    by_kind: dict[str, dict[str, set[str]]] = {"heading": defaultdict(set), "sentence": {}}
    sentences: dict[str, set[str]] = defaultdict(set)
    for document in documents:
        for heading in document.headings:
            title = clean_title(heading.title)
            if len(title) >= 3:
                by_kind["heading"][title].add(document.uri)
        for sentence in _prose_sentences(document):
            sentences[sentence].add(document.uri)
    by_kind["sentence"] = sentences
    rng = random.Random(SEED)
    queries: list[tuple[str, str, str]] = []
    for kind, candidates in by_kind.items():
        folded = Counter(query.casefold() for query in candidates)
        unique = sorted(
            (query, next(iter(uris)))
            for query, uris in candidates.items()
            # A title or sentence on two pages has two right answers: left out, also when
            # only the case differs ("Examples", "examples").
            if len(uris) == 1 and folded[query.casefold()] == 1
        )
        picked = rng.sample(unique, min(per_kind, len(unique)))
        queries.extend((kind, query, uri) for query, uri in picked)
    return queries


def _figures(ranks: Sequence[int | None]) -> dict[str, float]:
    count = len(ranks) or 1
    return {
        "queries": len(ranks),
        "recall@1": round(sum(r == 1 for r in ranks) / count, 3),
        f"recall@{K}": round(sum(r is not None for r in ranks) / count, 3),
        f"mrr@{K}": round(sum(1 / r for r in ranks if r is not None) / count, 3),
    }


def evaluate(
    settings: Settings, queries: Sequence[tuple[str, str, str]], *, by_document: bool
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    ranks: dict[str, list[int | None]] = defaultdict(list)
    misses: list[dict[str, Any]] = []
    for kind, query, uri in queries:
        hits = search_collection(settings, COLLECTION, query, k=K, by_document=by_document)
        uris = [hit.uri for hit in hits]
        rank = uris.index(uri) + 1 if uri in uris else None
        ranks[kind].append(rank)
        ranks["all"].append(rank)
        if rank != 1:
            misses.append({"kind": kind, "query": query, "want": uri, "rank": rank, "got": uris})
    return {kind: _figures(r) for kind, r in ranks.items()}, misses


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind")
    parser.add_argument("--library-every", type=int, default=5, help="1: every library page")
    parser.add_argument("--options", default="{}", help="the request's options, as JSON")
    parser.add_argument(
        "--by", choices=("document", "chunk"), default="document", help="the hits' unit"
    )
    parser.add_argument("--misses", type=Path, help="write the queries not ranked first here")
    parser.add_argument(
        "--state",
        type=Path,
        help="keep the corpus and collection here; a later run with the same --state only "
        "searches (to compare query-time ranking without embedding again)",
    )
    args = parser.parse_args(argv)
    if not DOC_ROOT.is_dir():
        sys.exit(
            f"bench.search needs the Python documentation at {DOC_ROOT}: "
            f"apt-get install {DOC_PACKAGE} (or make bench-search, which installs it)"
        )
    options = json.loads(args.options)
    pages = corpus_pages(DOC_ROOT, args.library_every)
    with contextlib.ExitStack() as cleanup:
        state = args.state or Path(cleanup.enter_context(tempfile.TemporaryDirectory()))
        corpus = state / "python3.11-html"
        settings = Settings(
            allowed_roots=(corpus,),
            ingestion=IngestionSettings(lancedb_uri=str(state / "lancedb")),
        )
        start = time.perf_counter()
        if Collection(settings.ingestion.lancedb_uri, COLLECTION).exists():
            stats = JobStats(chunks=Collection(settings.ingestion.lancedb_uri, COLLECTION).count())
        else:
            copy_corpus(pages, DOC_ROOT, corpus)
            stats = ingest(corpus, settings, options)
        ingest_seconds = time.perf_counter() - start
        documents = [
            load_document(SourceItem(item.uri, item.size), Path(item.uri).read_bytes())
            for item in open_source(str(corpus), settings).list_items()
        ]
        queries = make_queries(documents, args.queries)
        start = time.perf_counter()
        figures, misses = evaluate(settings, queries, by_document=args.by == "document")
        search_seconds = time.perf_counter() - start
        embedder = Collection(settings.ingestion.lancedb_uri, COLLECTION).embedder()
    if args.misses:
        args.misses.write_text("".join(json.dumps(miss) + "\n" for miss in misses))
    result = {
        "corpus": f"{DOC_PACKAGE} HTML, {len(pages)} pages",
        "options": options,
        "by": args.by,
        "embedder": f"{embedder[0]}:{embedder[1]}",
        "chunks": stats.chunks,
        "mb": round(stats.bytes_read / 1_000_000, 2),
        "ingest_s": round(ingest_seconds, 1),
        "search_ms_per_query": round(1000 * search_seconds / max(len(queries), 1), 1),
        **figures,
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
