"""A batch leaves none of its loaders' reference cycles behind: pypdf's readers and
python-docx's documents (with their lxml trees, whose memory is native) are freed when
the batch ends, not at the next full collection, which a busy worker runs rarely."""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
from pathlib import Path

from functions.config import IngestionSettings, Settings
from functions.errors import ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion.processor import DocumentsProcessor
from functions.jobs import Job
from functions.local.sample_corpus import generate
from functions.processors import BatchContext

LOADER_TYPES = ("PdfReader", "Document", "_Document")  # pypdf, python-docx, lxml


def _loader_objects() -> dict[str, int]:
    counts = dict.fromkeys(LOADER_TYPES, 0)
    for tracked in gc.get_objects():
        name = type(tracked).__name__
        if name in counts:
            counts[name] += 1
    return counts


def _left_after_a_batch(root: str) -> tuple[dict[str, int], dict[str, int]]:
    """In a fresh process with automatic collection off (so only what the batch itself
    collects goes): the loader objects alive mid-batch, and those still tracked after it."""
    gc.disable()
    folder = Path(root)
    items = sorted(str(p) for p in folder.rglob("*") if p.suffix in (".pdf", ".docx"))
    settings = Settings(
        allowed_roots=(folder,),
        ingestion=IngestionSettings(lancedb_uri=str(folder / "lancedb"), embedder="none"),
    )
    processor = DocumentsProcessor(settings)
    request = IngestRequest(source="documents", collection="docs", items=items)
    job = Job.new(source="documents", collection="docs", request=request.model_dump())
    processor.prepare(request)
    work = processor.open_batch(BatchContext(job.job_id, f"{job.job_id}_0", "docs", items=items))
    for item in items:
        with contextlib.suppress(ItemFailed, ItemSkipped):
            work.process(item)
    during = _loader_objects()
    work.flush()
    return during, _loader_objects()


def test_a_batch_frees_its_pdf_and_docx_loaders_cycles(tmp_path: Path) -> None:
    """A worker's memory does not pile up with PDF and Word documents between batches."""
    generate(tmp_path / "corpus", oversized_bytes=1)
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        during, after = pool.apply(_left_after_a_batch, (str(tmp_path / "corpus"),))
    assert during["PdfReader"] > 0 and during["Document"] > 0  # the cycles were there
    assert after == dict.fromkeys(LOADER_TYPES, 0)
