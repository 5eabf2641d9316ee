"""What one batch's write costs in memory as the collection grows; prints one JSON line.

A table is filled to each of `--rows` (documents of 20 chunks, written 500 documents at a
time, then compacted), and then `--writes` writes of a batch's size (25 documents of 4
chunks) are made on it through the sink (`Collection.replace_documents`), two kinds
alternated:
- `new`: documents with no chunks stored, as in every write of a first ingestion: a
  `merge_insert` on the chunk id, which the id's BTREE index answers;
- `changed`: documents already stored, with new text: the same `merge_insert` also
  deletes their other chunks in the same commit, which joins against the whole table.
For each: the median of the peak resident set over the resident set before the write
(VmHWM reset before each, the heap trimmed as the worker does after a batch), in MB, and
the median seconds per write. One process, one thread.

Then, on a compacted table of 25,000 rows with compaction during the job switched off,
what a `new` write costs as the rows written since the last compaction (which the id
index misses) pile up: `unindexed_rows`, the median of 5 writes at each count. The
sink compacts every `COMPACT_EVERY_UNINDEXED_ROWS` of them.

Usage: python -m bench.write_memory [--rows 25000,100000,300000] [--writes 5]
       [--unindexed 0,2000,5000,10000]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.procs import peak_rss_kib, rss_kib
from functions.ingestion import native_heap, sink
from functions.ingestion.documents import Chunk
from functions.ingestion.sink import Collection

CHUNKS_PER_DOCUMENT = 20
FILL_DOCUMENTS = 500
# A batch's write: 25 documents of 4 chunks.
BATCH_DOCUMENTS = 25
BATCH_CHUNKS_PER_DOCUMENT = 4
BATCH_ROWS = BATCH_DOCUMENTS * BATCH_CHUNKS_PER_DOCUMENT


def _chunks(uris: Sequence[str], per: int, version: str = "") -> list[Chunk]:
    return [
        Chunk(f"{u}#{version}{k}", u, k, f"text {version}of {u}, part {k}. " * 40)
        for u in uris
        for k in range(per)
    ]


def _peak_over_rss(write: Callable[[], object]) -> tuple[float, float]:
    native_heap.trim()
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    before = rss_kib(os.getpid())
    start = time.perf_counter()
    write()
    return (peak_rss_kib(os.getpid()) - before) / 1024, time.perf_counter() - start


def _write(collection: Collection, uris: list[str], version: str) -> None:
    chunks = _chunks(uris, BATCH_CHUNKS_PER_DOCUMENT, version)
    collection.replace_documents(uris, chunks, None, job_id="b")


def _collection(db: Path) -> Collection:
    collection = Collection(str(db), "bench")
    collection.ensure(embedder="none", dimension=None)
    return collection


def _fill(collection: Collection, documents: int, rows: int) -> int:
    """Add documents numbered from `documents` on until the table holds `rows` rows, and
    compact it; how many documents it holds."""
    while documents * CHUNKS_PER_DOCUMENT < rows:
        uris = [f"fill-{documents + i}.md" for i in range(FILL_DOCUMENTS)]
        collection.replace_documents(uris, _chunks(uris, CHUNKS_PER_DOCUMENT), None, job_id="b")
        documents += FILL_DOCUMENTS
    collection.compact()
    return documents


def measure(db: Path, sizes: Sequence[int], writes: int) -> dict[str, dict[str, float]]:
    collection = _collection(db)
    figures: dict[str, dict[str, float]] = {}
    documents = 0
    for rows in sizes:
        documents = _fill(collection, documents, rows)
        runs: dict[str, list[tuple[float, float]]] = {"new": [], "changed": []}
        for write in range(writes):
            new = [f"new-{rows}-{write}-{i}.md" for i in range(BATCH_DOCUMENTS)]
            changed = [
                f"fill-{(write * BATCH_DOCUMENTS + i) * 7 % documents}.md"
                for i in range(BATCH_DOCUMENTS)
            ]
            for way, uris in (("new", new), ("changed", changed)):
                version = f"{way}-{rows}-{write}-"
                runs[way].append(
                    _peak_over_rss(functools.partial(_write, collection, uris, version))
                )
        figures[f"at_{rows}_rows"] = {
            f"{way}_{name}": round(statistics.median(r[i] for r in done), 2 if i else 1)
            for way, done in runs.items()
            for i, name in enumerate(("peak_mb", "seconds"))
        }
    return figures


def unindexed_cost(db: Path, marks: Sequence[int], writes: int = 5) -> dict[str, float]:
    """A `new` write's peak over the resident set, in MB, with `marks` rows unindexed."""
    collection = _collection(db)
    _fill(collection, 0, 25_000)
    saved = sink.COMPACT_EVERY_VERSIONS, sink.COMPACT_EVERY_UNINDEXED_ROWS
    sink.COMPACT_EVERY_VERSIONS = sink.COMPACT_EVERY_UNINDEXED_ROWS = 10**12
    figures: dict[str, float] = {}
    unindexed = written = 0
    try:
        for mark in sorted(marks):
            peaks = []
            while unindexed < mark + writes * BATCH_ROWS:
                uris = [f"new-{written}-{i}.md" for i in range(BATCH_DOCUMENTS)]
                write = functools.partial(_write, collection, uris, f"u{written}-")
                if unindexed >= mark:
                    peaks.append(_peak_over_rss(write)[0])
                else:
                    write()
                written += 1
                unindexed += BATCH_ROWS
            figures[str(mark)] = round(statistics.median(peaks), 1)
    finally:
        sink.COMPACT_EVERY_VERSIONS, sink.COMPACT_EVERY_UNINDEXED_ROWS = saved
    return figures


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", default="25000,100000,300000")
    parser.add_argument("--writes", type=int, default=5)
    parser.add_argument("--unindexed", default="0,2000,5000,10000")
    args = parser.parse_args(argv)
    sizes = sorted(int(r) for r in args.rows.split(",") if r)
    marks = [int(m) for m in args.unindexed.split(",") if m]
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if sizes:
            figures.update(measure(Path(tmp) / "lancedb", sizes, args.writes))
        if marks:
            figures["new_write_peak_mb_by_unindexed_rows"] = unindexed_cost(
                Path(tmp) / "unindexed", marks
            )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
