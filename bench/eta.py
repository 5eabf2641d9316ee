"""How true the time left is; prints one JSON line.

Real documentation (the reStructuredText sources of Debian's python3.11-doc, the first
`--mb` MB in bench.ingest's fixed shuffled order) is ingested through one local stack with
the local embedder, and the job is polled as `fanout watch` polls it (`--interval`). At the
first poll where a tenth of the work is stored, the time left it would show is kept, and
compared with the time the job then really took to end: ratio = shown / real (target:
within 25%, 0.75..1.25). For contrast, the estimate from ended batches alone (over the
last 30 s, as the watch did before): often unknown at 10%, as batches end in waves.

Usage: python -m bench.eta [--mb 11] [--batch-size 25] [--interval 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.ingest import real_corpus
from functions.cli.client import FanoutClient
from functions.cli.watch import RATE_WINDOW, batches_done, running_progress, time_left
from functions.local.emulators import free_port_block
from functions.local.stack import LocalStack, StackConfig

TERMINAL = {"completed", "failed", "cancelled"}
AT = 0.10


def _ended_batches_estimate(samples: list[tuple[float, int]], total: int) -> float | None:
    """The time left from the batches ended in the last `RATE_WINDOW` seconds."""
    now, done = samples[-1]
    window = [(t, d) for t, d in samples if now - t <= RATE_WINDOW]
    (t0, d0) = window[0]
    if now <= t0 or done <= d0:
        return None
    return (total - done) / ((done - d0) / (now - t0))


def measure(corpus: Path, state: Path, batch_size: int, interval: float) -> dict[str, Any]:
    config = StackConfig(
        state_dir=state / "stack",
        port_base=free_port_block(5),
        env={"FANOUT_ALLOWED_ROOTS": str(corpus), "FANOUT_EMBEDDER": "local"},
    )
    with LocalStack(config) as stack:
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        accepted = client.submit(
            {
                "source": "documents",
                "collection": "eta",
                "location": str(corpus),
                "batch_size": batch_size,
            }
        )
        samples: list[tuple[float, int]] = []
        shown: dict[str, Any] | None = None
        while True:
            job = client.job(accepted["job_id"])
            now = time.monotonic()
            if job["status"] in TERMINAL:
                break
            running = running_progress(client, job)
            total = int(job["total_batches"])
            samples.append((now, batches_done(job)))
            if shown is None and total and (batches_done(job) + running) / total >= AT:
                shown = {
                    "at": now,
                    "time_left": time_left(job, running),
                    "from_ended_batches": _ended_batches_estimate(samples, total),
                    "elapsed": job["duration_seconds"],
                }
            time.sleep(interval)  # polling, as `fanout watch` does
    if shown is None or shown["time_left"] is None:
        raise SystemExit(f"bench.eta: no estimate at {AT:.0%}: {job}")
    real = now - shown["at"]
    old = shown["from_ended_batches"]
    return {
        "job": {k: job[k] for k in ("status", "total_batches", "duration_seconds")}
        | {"chunks": job["stats"]["chunks"], "files": job["stats"]["files"]},
        "at_progress": AT,
        "elapsed_at_10pct_s": round(shown["elapsed"], 1),
        "time_left_shown_s": round(shown["time_left"], 1),
        "time_left_real_s": round(real, 1),
        "shown_vs_real": round(shown["time_left"] / real, 3),
        "from_ended_batches_s": None if old is None else round(old, 1),
        "from_ended_batches_vs_real": None if old is None else round(old / real, 3),
        "target": [0.75, 1.25],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=11, help="MB of python3.11-doc sources")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--interval", type=float, default=0.5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp)
        corpus = real_corpus(state / "python-docs", args.mb)
        figures = {"mb": args.mb, **measure(corpus, state, args.batch_size, args.interval)}
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
