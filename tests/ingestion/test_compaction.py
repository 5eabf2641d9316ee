"""Compaction in a child process: the worker that asks for it keeps none of its memory, and
a failure names the table."""

from __future__ import annotations

import ctypes
import multiprocessing
from pathlib import Path

import pytest

from functions.ingestion import sink
from functions.ingestion.compaction import CompactionFailed, optimize_apart
from functions.ingestion.documents import Chunk
from functions.ingestion.sink import Collection

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
]


def _resident_mib() -> float:
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # what the worker does after each batch
    status = Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _write_documents(collection: Collection, first: int, count: int) -> None:
    """`count` documents of 100 chunks, ten to a write (as a batch writes its documents)."""
    for start in range(first, first + count, 10):
        uris = [f"doc-{doc}.md" for doc in range(start, start + 10)]
        chunks = [
            Chunk(
                f"{uri}#{k}",
                uri,
                k,
                " ".join(f"{WORDS[(doc + k + j) % 12]}{doc * 7 + j}" for j in range(150)),
            )
            for doc, uri in enumerate(uris, start)
            for k in range(100)
        ]
        collection.replace_documents(uris, chunks, None, job_id="job")


def _growth_over_compactions(db: str) -> float:
    """In a fresh process, as a worker: the resident memory that three compactions of a
    growing table (with its full-text index) left behind, in MiB."""
    sink.COMPACT_EVERY_UNINDEXED_ROWS = 10**9  # only the three measured compactions
    collection = Collection(db, "docs")
    collection.ensure(embedder="none", dimension=None)
    _write_documents(collection, 0, 50)
    collection.compact()  # the first pays for loading what every later one shares
    before = _resident_mib()
    for round_ in range(1, 4):
        _write_documents(collection, round_ * 50, 50)
        collection.compact()
    return _resident_mib() - before


def test_compactions_leave_no_memory_in_the_worker(tmp_path: Path) -> None:
    """Compacted in the worker itself, these three compactions (of 10,000 to 20,000 rows)
    left it 39 MiB bigger; apart, 3 to 13 MiB in three runs: its writes' own, the metadata
    and the index caches filling (8 MB each at most; the writes read the id's BTREE)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        growth = pool.apply(_growth_over_compactions, (str(tmp_path / "lancedb"),))
    assert growth < 25


def test_a_failed_compaction_names_the_table(tmp_path: Path) -> None:
    """A compaction child that fails raises a typed error naming the table."""
    with pytest.raises(CompactionFailed, match="'missing'"):
        optimize_apart(str(tmp_path / "lancedb"), "missing", cleanup_older_than=None)
