"""Priority benchmark on the real local stack; prints one JSON line.

A 10-batch `high` job's time (submit to its own finished_at) on the idle stack, and while a
`--bulk`-batch `low` job keeps every worker thread busy; the ratio of the two against the
target (at most 3), over `--rounds` rounds, medians. Items are noop ones that each sleep
`--item-ms`, so that batches are work the worker is busy with.

Two stacks, both measured: one whose dispatcher sends at most as many tasks at once as the
worker runs (the cloud's rule: infra/queue.tf's precondition), which is what the test
proves, and the stack as `make dev` starts it, whose dispatcher keeps 16 in flight against
the worker's 4 threads (the rest wait in the worker's backlog, where priority cannot reach
them). For contrast, the same 10 batches submitted `low` behind the bulk job (no priority):
they wait for the whole backlog.

Usage: python -m bench.priority [--bulk 2000] [--rounds 3] [--item-ms 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from functions.cli.client import FanoutClient
from functions.config import DispatchSettings
from functions.local.emulators import free_port_block
from functions.local.stack import FUNCTIONS, WORKER_THREADS, LocalStack, StackConfig

TERMINAL = {"completed", "failed", "cancelled"}
TARGET_RATIO = 3.0
URGENT_BATCHES = 10


class Bench:
    def __init__(self, client: FanoutClient, item_ms: int) -> None:
        self.client = client
        self.item_ms = item_ms

    def submit(self, batches: int, priority: str, tag: str) -> str:
        request = {
            "source": "noop",
            "collection": "bench",
            "items": [f"{tag}-{n:05d}" for n in range(batches)],
            "batch_size": 1,
            "options": {"delay_ms": self.item_ms},
            "priority": priority,
        }
        return str(self.client.submit(request)["job_id"])

    def wait(self, job_id: str) -> dict[str, Any]:
        """Polled gently: the time comes from the job's own timestamps."""
        while (job := self.client.job(job_id))["status"] not in TERMINAL:
            time.sleep(0.05)
        return job

    def urgent(self, tag: str, priority: str = "high") -> float:
        job = self.wait(self.submit(URGENT_BATCHES, priority, tag))
        assert job["status"] == "completed", job
        created = datetime.fromisoformat(job["created_at"])
        return (datetime.fromisoformat(job["finished_at"]) - created).total_seconds()

    def busy(self, bulk: int, tag: str, priority: str = "high") -> tuple[float, bool]:
        """The urgent job's time while a bulk low job fills the worker, and whether the bulk
        job was still running when it ended; the bulk job is cancelled after."""
        bulk_id = self.submit(bulk, "low", f"{tag}-bulk")
        while self.client.job(bulk_id)["batches"]["running"] < int(WORKER_THREADS):
            time.sleep(0.02)
        seconds = self.urgent(tag, priority)
        overtook = self.client.job(bulk_id)["status"] == "running"
        if overtook:  # else it has ended (behind it, the urgent job waited for all of it)
            self.client.cancel(bulk_id)
        self.wait(bulk_id)
        return seconds, overtook


def measure(tmp: Path, name: str, env: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    config = StackConfig(state_dir=tmp / name, port_base=free_port_block(len(FUNCTIONS)), env=env)
    with LocalStack(config) as stack:
        bench = Bench(FanoutClient(stack.url("ingest"), stack.url("jobs_api")), args.item_ms)
        bench.urgent("warm-up")
        idle, busy, overtook = [], [], []
        for n in range(args.rounds):
            idle.append(bench.urgent(f"idle{n}"))
            seconds, ahead = bench.busy(args.bulk, f"r{n}")
            busy.append(seconds)
            overtook.append(ahead)
        figures = {
            "idle_s": round(statistics.median(idle), 3),
            "busy_s": round(statistics.median(busy), 3),
            "ratio": round(statistics.median(b / i for b, i in zip(busy, idle, strict=True)), 2),
            "worst_ratio": round(max(b / i for b, i in zip(busy, idle, strict=True)), 2),
            "overtook_bulk": all(overtook),
        }
        if args.fifo:
            seconds, _ = bench.busy(args.bulk, "fifo", priority="low")
            figures["without_priority_s"] = round(seconds, 3)
            figures["without_priority_ratio"] = round(seconds / figures["idle_s"], 1)
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--bulk", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--item-ms", type=int, default=100)
    parser.add_argument(
        "--no-fifo", dest="fifo", action="store_false", help="skip the no-priority contrast"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        matched = measure(
            Path(tmp), "matched", {"FANOUT_MAX_CONCURRENT_DISPATCHES": WORKER_THREADS}, args
        )
        default = measure(
            Path(tmp), "default", {}, argparse.Namespace(**{**vars(args), "fifo": False})
        )
    figures = {
        "bench": "priority",
        "bulk_batches": args.bulk,
        "urgent_batches": URGENT_BATCHES,
        "item_ms": args.item_ms,
        "worker_threads": int(WORKER_THREADS),
        "target_ratio": TARGET_RATIO,
        "dispatches_as_worker_threads": matched,
        "default_stack": {
            "max_concurrent_dispatches": DispatchSettings().max_concurrent,
            **default,
        },
        "ratio_vs_target": round(matched["ratio"] / TARGET_RATIO, 2),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
