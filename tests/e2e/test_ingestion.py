"""Real ingestion through the real local stack: the sample corpus (every format, one broken
and one oversized file) from a folder and from a Cloud Storage bucket, into LanceDB, then
searched over HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from functions.cli.client import FanoutClient
from functions.ingestion.sink import Collection
from functions.local.sample_corpus import CorpusFile, generate
from functions.local.stack import LocalStack
from functions.observability.lines import LOCAL_LOG_FILE
from tests.e2e.conftest import RAW_REPR, StackFactory, client_for, wait_for, wait_terminal
from tests.support.gcs import MakeBucket

MiB = 1024 * 1024
LIMITS = {"FANOUT_MAX_FILE_BYTES": str(MiB)}
# The folder test is about what lands, is skipped and is replaced, which full text alone
# shows; the model runs through the stack in the bucket test and in `make run`'s
# (tests/e2e/test_cli.py). Embedding the whole corpus cost this test 10 s of CPU.
FULL_TEXT_ONLY = {"FANOUT_EMBEDDER": "none"}


def _ingest(client: FanoutClient, location: str, **options: Any) -> dict[str, Any]:
    accepted = client.submit(
        {
            "source": "documents",
            "collection": "docs",
            "location": location,
            "batch_size": 25,
            "options": options,
        }
    )
    return wait_terminal(client, accepted["job_id"], timeout=300)


def _messages(stack: LocalStack) -> list[str]:
    lines = (stack.logs / LOCAL_LOG_FILE).read_text().splitlines()
    return [json.loads(line)["message"] for line in lines]


def _collection(stack: LocalStack) -> Collection:
    return Collection(str(stack.state_dir / "lancedb"), "docs")


def _failed_items(client: FanoutClient, job_id: str) -> dict[str, str]:
    failed: dict[str, str] = {}
    for batch in client.batches(job_id, status="failed")["batches"]:
        failed |= batch["error_details"]["failed_items"]
    return failed


def _chunk_ids_of(collection: Collection, uri: str) -> set[str]:
    rows = collection.table().search().where(f"uri = '{uri}'").select(["id"]).to_arrow()
    return set(rows.column("id").to_pylist())


def _findable(client: FanoutClient, files: list[CorpusFile], uri_of: dict[str, str]) -> None:
    for corpus_file in files:
        assert corpus_file.phrase is not None
        hits = client.search("docs", f'"{corpus_file.phrase}"', k=3)["hits"]
        assert uri_of[corpus_file.path] in [hit["uri"] for hit in hits], corpus_file


def test_sample_corpus_from_a_folder(make_stack: StackFactory) -> None:
    """The corpus lands whole: the table holds exactly the chunks the job counted, every
    document is found by its own phrase, the broken and oversized files fail alone (named,
    with their errors) and the unknown type is skipped. Re-running changes nothing and
    chunks nothing (every document unchanged); a changed file's chunks are replaced, and
    `prune` removes a deleted file's chunks."""
    stack = make_stack(env=LIMITS | FULL_TEXT_ONLY)
    corpus = stack.state_dir / "corpus"
    files = generate(corpus, oversized_bytes=2 * MiB)
    client = client_for(stack)

    job = _ingest(client, str(corpus))
    stats = job["stats"]
    documents = [f for f in files if f.phrase is not None]
    assert job["status"] == "failed"  # two files fail on purpose
    assert stats["files"] == len(files)
    assert (stats["documents"], stats["failed"], stats["skipped"]) == (len(documents), 2, 1)
    assert stats["bytes_read"] > 0
    collection = _collection(stack)
    assert collection.count() == stats["chunks"] > len(documents)
    failed = _failed_items(client, job["job_id"])
    assert sorted(Path(item).name for item in failed) == [
        "oversized-export.txt",
        "scanned-invoice.pdf",
    ]
    assert any("over the" in error for error in failed.values())
    uri_of = {f.path: str((corpus / f.path).resolve()) for f in files}
    _findable(client, documents, uri_of)

    again = _ingest(client, str(corpus))
    assert (again["stats"]["unchanged"], again["stats"]["chunks"]) == (len(documents), 0)
    assert collection.count() == stats["chunks"]

    changed, deleted = [f for f in documents if f.format == "md"][:2]
    old_ids = _chunk_ids_of(collection, uri_of[changed.path])
    deleted_ids = _chunk_ids_of(collection, uri_of[deleted.path])
    Path(uri_of[changed.path]).write_text("# Rewritten\n\nThe quokka ledger replaced it all.\n")
    Path(uri_of[deleted.path]).unlink()
    pruned = _ingest(client, str(corpus), prune=True)
    unchanged = len(documents) - 2
    assert (pruned["stats"]["documents"], pruned["stats"]["unchanged"]) == (1, unchanged)
    new_ids = _chunk_ids_of(collection, uri_of[changed.path])
    assert new_ids and not new_ids & old_ids
    # The job turns terminal first; its end-of-job step (prune, compaction) runs right
    # after, in the same request of the worker that finalized it.
    wait_for(
        lambda: not _chunk_ids_of(collection, uri_of[deleted.path]),
        timeout=60,
        what="the end-of-job prune",
    )
    # ... and its compaction is logged in words, not as a raw dict.
    compacted = wait_for(
        lambda: [m for m in _messages(stack) if f"job {pruned['job_id']}: compacted " in m],
        timeout=60,
        what="the end-of-job compaction line",
    )
    assert not RAW_REPR.search(compacted[0]), compacted
    hits = client.search("docs", "quokka ledger", k=1)["hits"]
    assert hits[0]["uri"] == uri_of[changed.path]
    assert collection.count() == (stats["chunks"] - len(old_ids) + len(new_ids) - len(deleted_ids))
    assert pruned["stats"]["chunks"] == len(new_ids)


def test_sample_corpus_from_a_bucket(
    make_stack: StackFactory, make_bucket: MakeBucket, fake_gcs: str, tmp_path: Path
) -> None:
    """The same flow from gs://bucket/prefix in the Cloud Storage emulator: every object
    listed (across pages) is read, chunked and findable; a re-run finds every document
    unchanged from the listing and chunks none."""
    files = generate(tmp_path / "corpus", oversized_bytes=2 * MiB)
    sample = [f for f in files if f.phrase is not None][::6] + [
        f for f in files if f.phrase is None
    ]
    bucket = make_bucket(
        {f"corpus/{f.path}": (tmp_path / "corpus" / f.path).read_bytes() for f in sample}
    )
    stack = make_stack(
        env={
            **LIMITS,
            "STORAGE_EMULATOR_HOST": fake_gcs,
            "FANOUT_ALLOWED_BUCKETS": bucket,
        }
    )
    client = client_for(stack)
    job = _ingest(client, f"gs://{bucket}/corpus/")
    documents = [f for f in sample if f.phrase is not None]
    assert job["stats"]["files"] == len(sample)
    assert (job["stats"]["documents"], job["stats"]["failed"]) == (len(documents), 2)
    assert _collection(stack).count() == job["stats"]["chunks"]
    _findable(client, documents, {f.path: f"gs://{bucket}/corpus/{f.path}" for f in sample})
    again = _ingest(client, f"gs://{bucket}/corpus/")
    assert (again["stats"]["unchanged"], again["stats"]["chunks"]) == (len(documents), 0)
    assert _collection(stack).count() == job["stats"]["chunks"]
