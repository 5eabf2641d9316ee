"""Ingestion benchmark; prints one JSON line.

(a) through the stack: the sample corpus scaled to `--mb` MB, ingested by a `documents`
    job on the real local stack (ingest -> queue -> dispatcher -> run_batch -> LanceDB),
    timed from submit to finalized (compaction included), with the local embedder and
    with `none`;
(b) direct: the same files through the same loaders, chunker, embedder and sink, in this
    one plain process with no job system, in batches of the same size: the limit for
    this machine. Reported as the ratio stack / direct (target >= 0.8);
(c) memory: the peak RSS (VmHWM) of the run_batch worker processes, for the corpus at
    `--mb` and at each of `--memory-mb`, and the curve of its RSS as the job reads the
    source (the highest and the median in each tenth): it must stay bounded whatever the
    corpus size (files are streamed; LanceDB's caches are capped; the table is compacted
    in a child process; large native buffers are unmapped when freed). Each size runs with glibc's
    sliding mmap threshold and with the fixed one, alternated;
(d) concurrent writers: 8 and 32 processes upserting into one LanceDB table at once, each
    writing its own documents and then all the same ones: rows lost, duplicate ids, and
    commit attempts beyond one per write (conflicts LanceDB retried);
(e) embedding: real documentation (the reStructuredText sources of python3.11-doc, the
    first `--real-mb` MB in a fixed shuffled order) through one stack, with today's path
    (MiniLM-L6 as its package ships it, 32 tokens of overlap) and the new one (the local
    default, `NEW_OPTIONS`, or `--new-options`), alternated over `--rounds` rounds, each
    job into a collection of its own: tokens/s, chunks/s, MB/s and run_batch CPU seconds
    per MB of each, and new / today. A tiny job of each path first loads both models, so
    neither pays for it.

(f) the unchanged re-run: `--unchanged-mb` of real documents (the reStructuredText sources
    of Python's documentation, from Debian's python3.11-doc; the sample corpus scaled when
    it is not installed) ingested through the stack with the local embedder (or
    `--unchanged-embedder none`), then the same job again on the unchanged files:
    first / re-run, target >= 50 with embeddings.

`--sections` runs some of them (default: all): stack (a, b), memory (c), writers (d),
embedding (e), unchanged (f).

Usage: python -m bench.ingest [--mb 50] [--memory-mb 10,100] [--memory-variants sliding,fixed]
           [--embed-mb 5] [--writers 8,32]
           [--real-mb 1] [--rounds 2] [--unchanged-mb 10]
           [--sections stack,memory,writers,embedding,unchanged]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.procs import cpu_seconds, functions_peak_rss_mb, group_pids, rss_kib, serves_functions
from functions.cli.client import FanoutClient
from functions.config import IngestionSettings, Settings
from functions.errors import ItemFailed, ItemSkipped
from functions.ingest_request import IngestRequest
from functions.ingestion.documents import Chunk
from functions.ingestion.processor import DocumentsProcessor
from functions.ingestion.sink import Collection
from functions.ingestion.sources import open_source
from functions.jobs import Job, JobStats
from functions.local.emulators import free_port_block
from functions.local.sample_corpus import generate
from functions.local.stack import LocalStack, StackConfig
from functions.processors import BatchContext

BATCH_SIZE = 25
TERMINAL = {"completed", "failed", "cancelled"}
MB = 1_000_000
DOC_SOURCES = Path("/usr/share/doc/python3.11/html/_sources")
TODAY_OPTIONS: dict[str, Any] = {"embedder": "local/minilm-l6-shipped", "chunk_overlap": 32}
NEW_OPTIONS: dict[str, Any] = {"embedder": "local"}
# The memory section's RSS curve: the worker's highest resident set in each tenth of the
# source read.
CURVE_POINTS = 10
SECTIONS = ("stack", "memory", "writers", "embedding", "unchanged")


def _rates(stats: dict[str, int], seconds: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 2),
        "files_per_s": round(stats["files"] / seconds, 1),
        "mb_per_s": round(stats["bytes_read"] / MB / seconds, 3),
        "chunks_per_s": round(stats["chunks"] / seconds, 1),
        "chunks": stats["chunks"],
    }


def direct(corpus: Path, state: Path, embedder: str) -> dict[str, float]:
    """The same work in one process, no job system: list, then per batch of BATCH_SIZE
    files load, chunk, embed and upsert; then compact, as the finalize step does."""
    settings = Settings(
        allowed_roots=(corpus,),
        ingestion=IngestionSettings(lancedb_uri=str(state / "direct-lancedb"), embedder=embedder),  # type: ignore[arg-type]
    )
    processor = DocumentsProcessor(settings)
    start = time.perf_counter()
    request = IngestRequest(source="documents", collection="bench", location=str(corpus))
    processor.check_request(request)
    job = Job.new(source="documents", collection="bench", request=request.model_dump())
    processor.prepare(request)
    items = [item.uri for item in open_source(str(corpus), settings).list_items()]
    stats = JobStats()
    for first in range(0, len(items), BATCH_SIZE):
        work = processor.open_batch(BatchContext(job.job_id, "direct", "bench"))
        for item in items[first : first + BATCH_SIZE]:
            with contextlib.suppress(ItemFailed, ItemSkipped):
                stats += work.process(item)
        stats += work.flush()
    Collection(settings.ingestion.lancedb_uri, "bench").compact()
    return _rates(stats.to_dict(), time.perf_counter() - start)


def _rss_mb(stack: LocalStack, name: str) -> tuple[float, float]:
    """The largest resident set now (MB) of `name`'s worker, and of the children it runs
    beside it (compactions: 0 when none is running). Apart, since a compaction's child
    grows with the table and would otherwise pass for the worker."""
    worker = children = 0
    for pid in group_pids(stack.processes[name].pid):
        if serves_functions(pid):
            worker = max(worker, rss_kib(pid))
        else:
            children = max(children, rss_kib(pid))
    return worker / 1024, children / 1024


def _tenths(samples: Sequence[tuple[float, float]], total_mb: float) -> list[list[float]]:
    """The RSS samples (MB) of each tenth of the source read, from (MB read, RSS MB)."""
    tenths: list[list[float]] = [[] for _ in range(CURVE_POINTS)]
    for read, rss in samples:
        tenth = min(int(read / total_mb * CURVE_POINTS), CURVE_POINTS - 1) if total_mb else 0
        tenths[tenth].append(rss)
    return tenths


def rss_curve(samples: Sequence[tuple[float, float]], total_mb: float) -> list[float]:
    """The worker's highest resident set (MB) in each tenth of the source read: a plateau
    shows as equal tail values, a leak as a slope."""
    return [round(max(tenth, default=0.0)) for tenth in _tenths(samples, total_mb)]


def rss_level_curve(samples: Sequence[tuple[float, float]], total_mb: float) -> list[float]:
    """The worker's median resident set (MB) in each tenth of the source read: its level
    between the transient peaks of single writes, which the highest values follow."""
    return [round(float(np.median(tenth))) if tenth else 0 for tenth in _tenths(samples, total_mb)]


def through_stack(
    corpus: Path, state: Path, embedder: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    name = "-".join([f"stack-{embedder}-{corpus.name}", *(env or {}).values()])
    config = StackConfig(
        state_dir=state / name,
        port_base=free_port_block(5),
        env={"FANOUT_ALLOWED_ROOTS": str(corpus), "FANOUT_EMBEDDER": embedder} | (env or {}),
    )
    with LocalStack(config) as stack:
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        start = time.perf_counter()
        accepted = client.submit(
            {
                "source": "documents",
                "collection": "bench",
                "location": str(corpus),
                "batch_size": BATCH_SIZE,
            }
        )
        samples: list[tuple[float, float]] = []
        child_peak = 0.0
        while (job := client.job(accepted["job_id"]))["status"] not in TERMINAL:
            worker, children = _rss_mb(stack, "run_batch")
            samples.append((job["stats"]["bytes_read"] / MB, worker))
            child_peak = max(child_peak, children)
            time.sleep(0.5)  # polling rarely: the stack being measured needs the CPU
        # Finalizing (and compacting) happens before finished_at is read back.
        elapsed = time.perf_counter() - start
        figures: dict[str, Any] = _rates(job["stats"], elapsed)
        read_mb = job["stats"]["bytes_read"] / MB
        figures["peak_rss_mb"] = functions_peak_rss_mb(stack.processes["run_batch"].pid)
        figures["rss_curve_mb"] = rss_curve(samples, read_mb)
        figures["rss_level_curve_mb"] = rss_level_curve(samples, read_mb)
        figures["compaction_child_rss_mb"] = round(child_peak, 1)
        return figures


# -- embedding: today's path against the new one -------------------------------------


def real_corpus(target: Path, megabytes: float) -> Path:
    """The first `megabytes` of python3.11-doc's .rst sources in a fixed shuffled order
    (every part of the manual, not one chapter), copied flat into `target`."""
    if not DOC_SOURCES.is_dir():
        raise SystemExit(
            f"the embedding section needs {DOC_SOURCES}: apt-get install python3.11-doc"
        )
    files = sorted(DOC_SOURCES.rglob("*.txt"))
    random.Random(15).shuffle(files)
    target.mkdir(parents=True, exist_ok=True)
    total = 0
    for file in files:
        if total >= megabytes * MB:
            break
        shutil.copyfile(file, target / "__".join(file.relative_to(DOC_SOURCES).parts))
        total += file.stat().st_size
    return target


def _run_job(
    client: FanoutClient, worker: int, location: Path, collection: str, options: dict[str, Any]
) -> dict[str, Any]:
    before = sum(cpu_seconds(pid) for pid in group_pids(worker))
    start = time.perf_counter()
    accepted = client.submit(
        {
            "source": "documents",
            "collection": collection,
            "location": str(location),
            "batch_size": BATCH_SIZE,
            "options": options,
        }
    )
    while (job := client.job(accepted["job_id"]))["status"] not in TERMINAL:
        time.sleep(0.5)
    seconds = time.perf_counter() - start
    if job["status"] != "completed" or job["stats"]["failed"]:
        raise SystemExit(f"embedding bench: job {job['job_id']} ended {job['status']}: {job}")
    return {
        "seconds": seconds,
        "cpu_seconds": sum(cpu_seconds(pid) for pid in group_pids(worker)) - before,
        "bytes": job["stats"]["bytes_read"],
        "chunks": job["stats"]["chunks"],
    }


def _tokens(lancedb_uri: str, collection: str) -> int:
    table = Collection(lancedb_uri, collection).table()
    return int(sum(table.search().select(["tokens"]).limit(None).to_arrow()["tokens"].to_pylist()))


def embedding(
    corpus: Path, state: Path, rounds: int, new_options: dict[str, Any]
) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {"today": TODAY_OPTIONS, "new": new_options}
    warmup = state / "embed-warmup"
    warmup.mkdir(exist_ok=True)
    shutil.copyfile(next(iter(sorted(corpus.iterdir()))), warmup / "one.txt")
    config = StackConfig(
        state_dir=state / "stack-embedding",
        port_base=free_port_block(5),
        env={"FANOUT_ALLOWED_ROOTS": f"{corpus}:{warmup}", "FANOUT_EMBEDDER": "local"},
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    with LocalStack(config) as stack:
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        worker = stack.processes["run_batch"].pid
        for name, options in paths.items():
            _run_job(client, worker, warmup, f"warmup-{name}", options)
        for round_ in range(rounds):
            for name, options in paths.items():
                collection = f"{name}-{round_}"
                run = _run_job(client, worker, corpus, collection, options)
                run["tokens"] = _tokens(str(config.state_dir / "lancedb"), collection)
                runs[name].append(run)
    figures: dict[str, Any] = {"options": paths, "rounds": rounds}
    for name, done in runs.items():
        seconds = sum(r["seconds"] for r in done)
        megabytes = sum(r["bytes"] for r in done) / MB
        figures[name] = {
            "mb_per_s": round(megabytes / seconds, 4),
            "chunks_per_s": round(sum(r["chunks"] for r in done) / seconds, 1),
            "tokens_per_s": round(sum(r["tokens"] for r in done) / seconds),
            "cpu_s_per_mb": round(sum(r["cpu_seconds"] for r in done) / megabytes, 1),
            "chunks": done[0]["chunks"],
            "tokens": done[0]["tokens"],
            "seconds": [round(r["seconds"], 1) for r in done],
        }
    today, new = figures["today"], figures["new"]
    figures["new_vs_today_mb_per_s"] = round(new["mb_per_s"] / today["mb_per_s"], 2)
    figures["today_vs_new_cpu_per_mb"] = round(today["cpu_s_per_mb"] / new["cpu_s_per_mb"], 2)
    figures["mb"] = round(runs["new"][0]["bytes"] / MB, 3)
    return figures


# -- the unchanged re-run -------------------------------------------------------------


def debian_docs(target: Path, mb: float) -> tuple[Path, str]:
    """`mb` MB of Debian's Python documentation sources copied to `target` (whole files,
    in path order), or the sample corpus scaled to `mb` when they are not installed."""
    if not DOC_SOURCES.is_dir():
        generate(target, target_bytes=int(mb * MB), oversized_bytes=1)
        return target, "the sample corpus, scaled"
    total = 0
    for path in sorted(p for p in DOC_SOURCES.rglob("*") if p.is_file()):
        if total >= mb * MB:
            break
        copy = target / path.relative_to(DOC_SOURCES)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
        total += path.stat().st_size
    return target, f"{DOC_SOURCES} (python3.11-doc)"


def _ingested(client: FanoutClient, corpus: Path) -> tuple[dict[str, Any], float]:
    """Submit a job for `corpus` into `bench`; the finalized job and its seconds."""
    start = time.perf_counter()
    accepted = client.submit(
        {"source": "documents", "collection": "bench", "location": str(corpus)}
        | {"batch_size": BATCH_SIZE}
    )
    while (job := client.job(accepted["job_id"]))["status"] not in TERMINAL:
        time.sleep(0.2)  # polling: the re-run takes seconds, the first run minutes
    return job, time.perf_counter() - start


def unchanged_rerun(corpus: Path, origin: str, state: Path, embedder: str) -> dict[str, Any]:
    """The first ingestion of `corpus`, then the same job again."""
    config = StackConfig(
        state_dir=state / f"stack-unchanged-{embedder}",
        port_base=free_port_block(5),
        env={"FANOUT_ALLOWED_ROOTS": str(corpus), "FANOUT_EMBEDDER": embedder},
    )
    with LocalStack(config) as stack:
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        first, first_seconds = _ingested(client, corpus)
        again, again_seconds = _ingested(client, corpus)
    keys = ("files", "processed", "unchanged", "failed", "chunks", "embedded", "bytes_read")
    return {
        "corpus": origin,
        "embedder": embedder,
        "mb": round(sum(p.stat().st_size for p in corpus.rglob("*") if p.is_file()) / MB, 2),
        "first": {"seconds": round(first_seconds, 2)}
        | {k: first["stats"][k] for k in keys}
        | {"status": first["status"]},
        "rerun": {"seconds": round(again_seconds, 2)}
        | {k: again["stats"][k] for k in keys}
        | {"status": again["status"]},
        "first_vs_rerun": round(first_seconds / again_seconds, 1),
        "target": 50,
    }


# -- concurrent writers ---------------------------------------------------------------


def _write_documents(args: tuple[str, list[str], float]) -> tuple[int, int]:
    db, uris, start_at = args
    collection = Collection(db, "writers")
    while time.time() < start_at:  # all writers start together
        time.sleep(0.001)
    attempts = writes = 0
    for uri in uris:
        chunks = [Chunk(f"{uri}#{i}", uri, i, f"text {uri} {i}") for i in range(20)]
        vectors = np.random.default_rng(len(uri)).random((20, 8), dtype=np.float32)
        result = collection.replace_documents([uri], chunks, vectors, job_id="bench")
        attempts += result.attempts
        writes += 1
    return attempts, writes


def writers(count: int, state: Path) -> dict[str, int]:
    figures: dict[str, int] = {}
    for mode in ("distinct", "same"):
        db = str(state / f"writers-{count}-{mode}")
        Collection(db, "writers").ensure(embedder="bench", dimension=8)
        docs = 5
        jobs = [
            ([f"{mode}-{w if mode == 'distinct' else 0}-{d}" for d in range(docs)])
            for w in range(count)
        ]
        start_at = time.time() + 2 + count * 0.3  # spawned processes import LanceDB first
        with multiprocessing.get_context("spawn").Pool(count) as pool:
            results = pool.map(_write_documents, [(db, uris, start_at) for uris in jobs])
        ids = list(Collection(db, "writers").chunk_ids())
        expected = (count if mode == "distinct" else 1) * docs * 20
        attempts = sum(a for a, _ in results)
        writes = sum(w for _, w in results)
        figures[f"{mode}_lost_rows"] = expected - len(set(ids))
        figures[f"{mode}_duplicate_rows"] = len(ids) - len(set(ids))
        figures[f"{mode}_conflict_retries"] = attempts - writes
        figures[f"{mode}_writes"] = writes
    return figures


MEMORY_VARIANTS: dict[str, dict[str, str]] = {
    "sliding": {"FANOUT_MALLOC_MMAP_THRESHOLD": "0"},
    "fixed": {},
}


def memory(
    sizes: Sequence[float], corpus: Any, state: Path, names: Sequence[str]
) -> dict[str, Any]:
    """The run_batch worker's peak RSS and RSS curve at each corpus size, with glibc's
    sliding mmap threshold (`sliding`, as before issue 15) and with the fixed one
    (`fixed`, the default), alternated at each size, and each one's peak at the largest
    size over its peak at the smallest."""
    variants = {name: MEMORY_VARIANTS[name] for name in names}
    figures: dict[str, Any] = {name: {} for name in variants}
    for mb in sizes:
        for name, env in variants.items():
            run = through_stack(corpus(mb), state, "none", env)
            figures[name][f"at_{mb:g}mb"] = {
                "peak_rss_mb": run["peak_rss_mb"],
                "rss_curve_mb": run["rss_curve_mb"],
                "rss_level_curve_mb": run["rss_level_curve_mb"],
                "compaction_child_rss_mb": run["compaction_child_rss_mb"],
                "stack_mb_per_s": run["mb_per_s"],
            }
    for name in variants:
        peaks = [figures[name][f"at_{mb:g}mb"]["peak_rss_mb"] for mb in (sizes[0], sizes[-1])]
        figures[name]["largest_vs_smallest"] = round(peaks[1] / peaks[0], 3)
    return figures


def _sizes(args: argparse.Namespace) -> list[float]:
    return sorted({args.mb, *(float(m) for m in args.memory_mb.split(",") if m)})


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--mb", type=float, default=50)
    parser.add_argument("--memory-mb", default="10,100", help="more corpus sizes, for RSS")
    parser.add_argument(
        "--memory-variants",
        default=",".join(MEMORY_VARIANTS),
        help="memory: glibc's sliding mmap threshold (as before), the fixed one, or both",
    )
    parser.add_argument(
        "--embed-mb",
        type=float,
        default=5,
        help="corpus size with embeddings (the local model embeds ~60 chunks/s on 2 cores)",
    )
    parser.add_argument("--writers", default="8,32")
    parser.add_argument("--real-mb", type=float, default=1, help="real documents, embedding")
    parser.add_argument("--rounds", type=int, default=2, help="embedding: alternations")
    parser.add_argument(
        "--new-options", default=json.dumps(NEW_OPTIONS), help="embedding: the new path's"
    )
    parser.add_argument("--unchanged-mb", type=float, default=10)
    parser.add_argument(
        "--unchanged-embedder",
        default="local",
        choices=("local", "none"),
        help="the unchanged re-run's embedder (none: the skipping measured against the rest)",
    )
    parser.add_argument("--sections", default=",".join(SECTIONS))
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    if unknown := sections - set(SECTIONS):
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}; known: {SECTIONS}")
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        if "embedding" in sections:
            real = real_corpus(state / "python-docs", args.real_mb)
            new_options = json.loads(args.new_options)
            figures["embedding"] = embedding(real, state, args.rounds, new_options)

        def corpus(mb: float) -> Path:
            path = state / f"corpus-{mb:g}mb"
            if not path.exists():
                # Not the oversized file: it would be refused unread and skew nothing but
                # the file count.
                generate(path, target_bytes=int(mb * MB), oversized_bytes=1)
            return path

        if "stack" in sections:
            for embedder, mb in (("none", args.mb), ("local", args.embed_mb)):
                files = corpus(mb)
                stack = through_stack(files, state, embedder)
                limit = direct(files, state / embedder, embedder)
                figures[f"{embedder}_{mb:g}mb"] = {
                    "stack": stack,
                    "direct": limit,
                    "stack_vs_direct": round(stack["mb_per_s"] / limit["mb_per_s"], 3),
                }
        if "memory" in sections:
            names = [name for name in args.memory_variants.split(",") if name]
            if unknown_variants := set(names) - set(MEMORY_VARIANTS):
                parser.error(f"unknown memory variants: {', '.join(sorted(unknown_variants))}")
            figures["memory"] = memory(_sizes(args), corpus, state, names)
        if "writers" in sections:
            for count in (int(c) for c in args.writers.split(",")):
                figures[f"writers_{count}"] = writers(count, state)
        if "unchanged" in sections:
            real, origin = debian_docs(state / "real-docs", args.unchanged_mb)
            figures["unchanged_rerun"] = unchanged_rerun(
                real, origin, state, args.unchanged_embedder
            )
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
