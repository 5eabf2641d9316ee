"""Soak benchmark: the local stack under load for minutes, its worker killed every minute;
prints one JSON line.

A round is `--jobs` noop jobs of `--batches` one-item batches each, submitted at once, with
duplicate delivery on (the dispatcher POSTs every task twice) and the local scheduler
calling cleanup_jobs every `--sweep-interval` seconds. Every `--kill-every` seconds (the
first after half of that) the benchmark sends SIGKILL to run_batch's process group; the
stack's supervisor starts it again. When a round has ended and time is left, the next
round is submitted; once `--minutes` have passed, no round and no kill starts, and the
benchmark waits (at most `--drain-minutes`) for the jobs under way to end. It ends by
itself.

Reported: jobs submitted and completed; batches counted against expected, which must be
exact (each job's counter == its batch records completed == its total, every item
processed once, one job_finalized line); kills done and restarts seen; the peak resident
memory of each process of the stack (VmHWM from /proc, summed over its process group,
functions-framework's worker included; the maximum over the instances a restart made).

Usage: python -m bench.soak [--minutes 5] [--jobs 20] [--batches 500] [--kill-every 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.procs import group_pids, peak_rss_kib
from functions.cli.client import FanoutClient
from functions.local.emulators import free_port_block
from functions.local.stack import FUNCTIONS, LocalStack, StackConfig

TERMINAL = {"completed", "failed", "cancelled"}
# Leases short enough that a batch whose worker was killed is claimed again within seconds,
# and enough queue attempts to outlast such a lease (the claim is refused while it holds).
SOAK_ENV = {
    "FANOUT_LEASE_SECONDS": "10",
    "FANOUT_MAX_ATTEMPTS": "100",
    "FANOUT_MAX_BACKOFF_SECONDS": "2",
    "FANOUT_ENQUEUE_GRACE_SECONDS": "30",
}
POLL_SECONDS = 2.0  # between looks at the jobs: rarely, not to take CPU from the stack


def group_peak_kib(leader: int) -> int:
    """VmHWM of every process in `leader`'s process group, summed (KiB)."""
    return sum(peak_rss_kib(pid) for pid in group_pids(leader))


class Soak:
    def __init__(self, stack: LocalStack, jobs: int, batches: int) -> None:
        self.stack = stack
        self.client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        self.jobs, self.batches = jobs, batches
        self.rounds = 0
        self.submitted: list[str] = []
        self.final: dict[str, dict[str, Any]] = {}
        self.peak_kib: Counter[str] = Counter()
        self.kills = 0

    def submit_round(self) -> None:
        def submit(index: int) -> str:
            job_id: str = self.client.submit(
                {
                    "source": "noop",
                    "collection": "soak",
                    "items": [f"r{self.rounds}-j{index}-{i}" for i in range(self.batches)],
                    "batch_size": 1,
                }
            )["job_id"]
            return job_id

        with ThreadPoolExecutor(self.jobs) as pool:
            self.submitted.extend(pool.map(submit, range(self.jobs)))
        self.rounds += 1

    def under_way(self) -> list[str]:
        """The submitted jobs not ended yet (looks each one up; keeps the ended ones)."""
        for job_id in self.submitted:
            if job_id not in self.final:
                job = self.client.job(job_id)
                if job["status"] in TERMINAL:
                    self.final[job_id] = job
        return [j for j in self.submitted if j not in self.final]

    def sample_memory(self) -> None:
        for name, process in list(self.stack.processes.items()):
            self.peak_kib[name] = max(self.peak_kib[name], group_peak_kib(process.pid))

    def kill_worker(self) -> None:
        self.sample_memory()  # the instance's peak, before it is gone
        self.stack.kill("run_batch")
        self.kills += 1

    def run(self, seconds: float, kill_every: float, drain: float) -> float:
        start = time.monotonic()
        # A kill in the middle of each period: one in each minute of a 5-minute soak.
        ends, next_kill = start + seconds, start + kill_every / 2
        self.submit_round()
        while True:
            now = time.monotonic()
            self.sample_memory()
            if now >= next_kill and now < ends:
                self.kill_worker()
                next_kill += kill_every
            if not self.under_way():
                if now >= ends:
                    break
                self.submit_round()
            elif now >= ends + drain:
                break  # reported as not completed
            time.sleep(POLL_SECONDS)  # the soak's pace: its timers, not a synchronisation
        return time.monotonic() - start

    def finalized_lines(self) -> Counter[str]:
        """job_finalized lines per job in the stack's log file."""
        counts: Counter[str] = Counter()
        with (self.stack.logs / "fanout.jsonl").open() as lines:
            for text in lines:
                if "job_finalized" in text:
                    line = json.loads(text)
                    if line.get("event") == "job_finalized":
                        counts[line["logging.googleapis.com/labels"]["job_id"]] += 1
        return counts

    def report(self, elapsed: float) -> dict[str, Any]:
        jobs = list(self.final.values())
        finalized = self.finalized_lines()
        expected = len(self.submitted) * self.batches
        exact = [
            j["status"] == "completed"
            and j["completed_batches"] == j["batches"]["completed"] == j["total_batches"]
            and j["failed_batches"] == 0
            and j["stats"]["processed"] == j["total_batches"]
            and finalized[j["job_id"]] == 1
            for j in jobs
        ]
        supervisor = self.stack.supervisor
        return {
            "soak_seconds": round(elapsed, 1),
            "rounds": self.rounds,
            "jobs_submitted": len(self.submitted),
            "jobs_completed": sum(j["status"] == "completed" for j in jobs),
            "jobs_not_ended": len(self.submitted) - len(jobs),
            "batches_expected": expected,
            "batches_total": sum(j["total_batches"] for j in jobs),
            "batches_counted": sum(j["completed_batches"] for j in jobs),
            "batch_records_completed": sum(j["batches"]["completed"] for j in jobs),
            "batches_failed": sum(j["failed_batches"] for j in jobs),
            "items_processed": sum(j["stats"]["processed"] for j in jobs),
            "job_finalized_lines": sum(finalized[j] for j in self.submitted),
            "exact": len(exact) == len(self.submitted) and all(exact),
            "batches_per_s": round(sum(j["completed_batches"] for j in jobs) / elapsed, 1),
            "kills": self.kills,
            "restarts": dict(supervisor.restarts) if supervisor else {},
            "peak_rss_mib": {
                name: round(kib / 1024, 1) for name, kib in sorted(self.peak_kib.items())
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=20, help="jobs per round")
    parser.add_argument("--batches", type=int, default=500, help="batches per job")
    parser.add_argument("--kill-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--sweep-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("--drain-minutes", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(
            state_dir=Path(tmp) / "stack",
            port_base=free_port_block(len(FUNCTIONS)),
            env=SOAK_ENV,
            process_env={"dispatcher": {"FANOUT_DUPLICATE_DELIVERY": "true"}},
            sweep_interval=args.sweep_interval,
        )
        with LocalStack(config) as stack:
            soak = Soak(stack, args.jobs, args.batches)
            elapsed = soak.run(args.minutes * 60, args.kill_every, args.drain_minutes * 60)
            soak.sample_memory()
            figures = soak.report(elapsed)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
