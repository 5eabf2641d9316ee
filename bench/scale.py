"""Scale benchmark: one big `noop` job from a manifest (or a folder) on the local stack;
one JSON line.

For each size (default 100,000 and 1,000,000 items, a fresh stack each): the submit's
latency; the seconds from submit to fully planned (the job's `planning` turns false) and
the planned batches per second; the end-to-end batches per second from submit to
finalized; and the peak resident set (VmHWM) of `ingest` and of `run_batch`, where the
planner runs. The target: neither peak grows with the job, so the report gives each
largest-to-smallest ratio measured in the same run (1.0: flat), and the submit's latency
as a ratio to the smallest job's.

`--origin location` submits a folder of that many empty files instead (1,000 a directory),
planned by pages from its listing; each run also reports how long listing the folder whole
takes here (`whole_listing_seconds`, what a submit that lists it whole pays at least) and
the submit's latency as a ratio to it. `--folder DIR` submits that folder instead (real
documents, e.g. /usr/share/doc), once, its size being its listing's.

Usage: python -m bench.scale [--sizes 100000,1000000] [--batch-size 100]
       [--origin manifest|location] [--folder DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.procs import functions_peak_rss_mb
from functions.cli.client import FanoutClient
from functions.config import Settings
from functions.ingestion.sources import LocalSource
from functions.local.emulators import free_port_block
from functions.local.stack import LocalStack, StackConfig

TERMINAL = {"completed", "failed", "cancelled"}
POLL = 0.05


def warm_up(client: FanoutClient, state: Path) -> None:
    """A one-item job first: the submit measured is a warm function's, as in the cloud."""
    manifest = state / "warm-up.txt"
    manifest.write_text("warm-up\n")
    job = client.submit({"source": "noop", "collection": "warm", "items_from": str(manifest)})
    while client.job(job["job_id"])["status"] not in TERMINAL:
        time.sleep(POLL)


FILES_PER_DIRECTORY = 1000


def folder_of(items: int, state: Path) -> Path:
    """`items` empty files, 1,000 a directory."""
    folder = state / f"folder-{items}"
    for i in range(items):
        directory = folder / f"{i // FILES_PER_DIRECTORY:04d}"
        if i % FILES_PER_DIRECTORY == 0:
            directory.mkdir(parents=True)
        (directory / f"{i:07d}.txt").touch()
    return folder


def whole_listing(folder: Path) -> tuple[int, float]:
    """How many items listing `folder` whole finds, and the seconds it takes."""
    start = time.perf_counter()
    listed = sum(
        1 for _ in LocalSource(str(folder), Settings(allowed_roots=(folder,))).list_items()
    )
    assert listed > 0
    return listed, time.perf_counter() - start


def one_job(
    items: int, batch_size: int, state: Path, origin: str, real: Path | None = None
) -> dict[str, Any]:
    given: dict[str, Any]
    whole: float | None = None
    roots = str(state)
    if origin == "location":
        folder = real or folder_of(items, state)
        items, whole = whole_listing(folder)
        given = {"location": str(folder)}
        roots += f":{folder}"
    else:
        manifest = state / f"manifest-{items}.txt"
        with manifest.open("w") as out:
            out.writelines(f"item-{i}\n" for i in range(items))
        given = {"items_from": str(manifest)}
    config = StackConfig(
        state_dir=state / f"stack-{items}",
        port_base=free_port_block(5),
        env={"FANOUT_ALLOWED_ROOTS": roots},
    )
    with LocalStack(config) as stack:
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        warm_up(client, state)
        start = time.perf_counter()
        accepted = client.submit(
            {"source": "noop", "collection": "scale", "batch_size": batch_size} | given
        )
        submitted = time.perf_counter() - start
        planned_at = None
        while True:
            job = client.job(accepted["job_id"])
            if planned_at is None and not job["planning"]:
                planned_at = time.perf_counter() - start
            if job["status"] in TERMINAL:
                ended = time.perf_counter() - start
                break
            time.sleep(POLL)  # polling another process's state
        assert planned_at is not None
        assert job["status"] == "completed" and job["stats"]["processed"] == items, job
        found = {
            "items": items,
            "batches": job["total_batches"],
            "submit_seconds": round(submitted, 3),
            "planned_seconds": round(planned_at, 2),
            "planned_batches_per_second": round(job["total_batches"] / planned_at, 1),
            "end_to_end_seconds": round(ended, 2),
            "end_to_end_batches_per_second": round(job["total_batches"] / ended, 1),
            "ingest_peak_rss_mb": functions_peak_rss_mb(stack.processes["ingest"].pid),
            "planner_peak_rss_mb": functions_peak_rss_mb(stack.processes["run_batch"].pid),
        }
        if whole is not None:
            found["whole_listing_seconds"] = round(whole, 3)
            found["submit_to_whole_listing_ratio"] = round(submitted / whole, 3)
        return found


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--origin", choices=("manifest", "location"), default="manifest")
    parser.add_argument("--folder", type=Path, help="an existing folder, for --origin location")
    args = parser.parse_args(argv)
    sizes = sorted(int(size) for size in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="fanout-bench-scale-") as tmp:
        if args.folder is not None:
            runs = [one_job(0, args.batch_size, Path(tmp), "location", args.folder.resolve())]
        else:
            runs = [one_job(size, args.batch_size, Path(tmp), args.origin) for size in sizes]
    small, large = runs[0], runs[-1]
    figures = {
        "bench": "scale",
        "origin": "folder" if args.folder else args.origin,
        "batch_size": args.batch_size,
        "runs": runs,
        "ingest_rss_ratio": round(large["ingest_peak_rss_mb"] / small["ingest_peak_rss_mb"], 2),
        "planner_rss_ratio": round(large["planner_peak_rss_mb"] / small["planner_peak_rss_mb"], 2),
        "submit_latency_ratio": round(large["submit_seconds"] / small["submit_seconds"], 2),
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
