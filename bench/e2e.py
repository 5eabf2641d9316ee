"""End-to-end benchmark on the real local stack; prints one JSON line.

(a) throughput: a 1,000-batch noop job through the stack (ingest -> queue -> dispatcher
    -> run_batch -> store), batches per second from submit to finalized, against the raw
    limit measured in the same run: as many POSTs, with the same concurrency and the
    dispatcher's own HTTP code, straight to a bare Functions Framework function.
(b) fan-out latency: how long the ingest request of a 10,000-batch job takes to return.
(c) hot document: the most writes the parent job record took in any one second during (a),
    counted exactly by a trigger the benchmark installs in the SQLite file.
(d) the cost of logging: the job of (a) on fresh stacks with structured logging at INFO (as
    shipped: every lifecycle event, several lines per batch) and at WARNING, alternated
    over `--log-rounds` rounds, best of each; cost = 1 - INFO / WARNING throughput (the
    target: under 10%), and the same from run_batch's CPU per batch, which is steadier.
(e) recovery from dropped tasks: a 1,000-batch noop job submitted while run_batch is down,
    so the dispatcher drops every task after its last attempt (3 quick ones here); run_batch
    comes back as soon as they are dropped, and the sweeper runs every `--sweep-interval`
    seconds (a scheduler, first tick one interval after the worker is back: the worst
    phase). The sweeper asks the queue, so it does not wait out the retry window (the
    deployed deadline's, reported for contrast). The seconds from the worker being back to
    the job completing, against the target of one sweep interval plus the plain run time of
    the same 1,000 batches on the same stack.
(f) the deployed shape (`make run CLOUD=emulated`): the job of (a) through Google's
    Firestore emulator and the Cloud Tasks emulator, from submit to finalized, as a ratio
    to (a)'s batches per second in the same run.

Usage: python -m bench.e2e [--batches 1000] [--fanout 10000] [--log-rounds 5]
                           [--sweep-interval 2] [--sections throughput,emulated,...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import cpu_seconds, group_pids
from functions.cli.client import FanoutClient
from functions.config import DispatchSettings, Settings, retry_window
from functions.local.emulators import ROOT, free_port, free_port_block
from functions.local.stack import WORKER_THREADS, LocalStack, StackConfig
from functions.queue.dispatcher import post
from functions.queue.local import LocalTaskQueue, TaskState
from functions.store.sqlite import SqliteJobStore

TERMINAL = {"completed", "failed", "cancelled"}
# The recovery stack: 3 quick attempts, so every task is dropped within a second while the
# worker is down, and 1 s of grace; the dispatch deadline stays the deployed 10 minutes, so
# the retry window (about 30 minutes) is what a sweeper that did not ask would wait.
RECOVERY_ENV = {
    "FANOUT_MAX_ATTEMPTS": "3",
    "FANOUT_MIN_BACKOFF_SECONDS": "0.05",
    "FANOUT_MAX_BACKOFF_SECONDS": "0.5",
    "FANOUT_ENQUEUE_GRACE_SECONDS": "1",
}
# Counts every write of a parent row (the trigger fires once per INSERT or UPDATE).
PARENT_WRITES_TRIGGER = """
CREATE TABLE IF NOT EXISTS bench_parent_writes (job_id TEXT, at REAL);
CREATE TRIGGER IF NOT EXISTS bench_parent_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO bench_parent_writes VALUES (new.job_id, (julianday('now') - 2440587.5) * 86400);
END;
CREATE TRIGGER IF NOT EXISTS bench_parent_update AFTER UPDATE ON jobs BEGIN
    INSERT INTO bench_parent_writes VALUES (new.job_id, (julianday('now') - 2440587.5) * 86400);
END;
"""


def count_parent_writes(stack: LocalStack) -> None:
    SqliteJobStore(stack.sqlite_path).close()  # the schema, before the trigger
    with sqlite3.connect(stack.sqlite_path) as conn:
        conn.executescript(PARENT_WRITES_TRIGGER)


def wait_terminal(client: FanoutClient, job_id: str) -> dict[str, Any]:
    """Poll rarely: the end time comes from the job's own finished_at, so polling need not
    be fast, and a fast poll would take CPU from the stack being measured."""
    while True:
        job = client.job(job_id)
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.25)


def run_noop_job(stack: LocalStack, batches: int) -> tuple[dict[str, Any], float]:
    """A job of `batches` one-item noop batches, run to completion: ingest's answer, and
    the seconds from submit to the job's own finished_at."""
    client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
    start = datetime.now(UTC)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "bench",
            "items": [f"doc-{i}" for i in range(batches)],
            "batch_size": 1,
        }
    )
    job = wait_terminal(client, accepted["job_id"])
    assert job["completed_batches"] == batches, job
    return accepted, (datetime.fromisoformat(job["finished_at"]) - start).total_seconds()


def throughput(stack: LocalStack, batches: int) -> dict[str, Any]:
    accepted, elapsed = run_noop_job(stack, batches)
    with sqlite3.connect(stack.sqlite_path) as conn:
        per_second = conn.execute(
            "SELECT COUNT(*) FROM bench_parent_writes WHERE job_id = ? GROUP BY CAST(at AS INT)"
            " ORDER BY 1 DESC LIMIT 1",
            (accepted["job_id"],),
        ).fetchone()[0]
        total_writes = conn.execute(
            "SELECT COUNT(*) FROM bench_parent_writes WHERE job_id = ?", (accepted["job_id"],)
        ).fetchone()[0]
    return {
        "e2e_batches": batches,
        "e2e_seconds": round(elapsed, 3),
        "e2e_batches_per_s": round(batches / elapsed, 1),
        "parent_writes_max_per_s": per_second,
        "parent_writes_total": total_writes,
    }


def raw_limit(requests: int, concurrency: int, log_dir: Path) -> float:
    """POSTs per second to a function that does nothing, with the dispatcher's HTTP code."""
    port = free_port()
    with (log_dir / "bare.log").open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                "bare",
                "--source",
                str(ROOT / "bench" / "bare_function.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "THREADS": WORKER_THREADS},  # as the stack's functions
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        while post(url, b"{}", {}, 1.0).status is None:
            time.sleep(0.05)  # waiting for the server to listen
        body = json.dumps({"batch_id": "x"}).encode()
        headers = {"Content-Type": "application/json"}
        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(lambda _: post(url, body, headers, 30.0), range(requests)))
        elapsed = time.perf_counter() - start
        assert all(r.ok for r in results)
        return requests / elapsed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()


def fanout_latency(stack: LocalStack, batches: int) -> float:
    client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
    request = {
        "source": "noop",
        "collection": "bench",
        "items": [f"d{i}" for i in range(batches)],
        "batch_size": 1,
    }
    start = time.perf_counter()
    accepted = client.submit(request)
    elapsed = time.perf_counter() - start
    assert accepted["total_batches"] == batches
    client.cancel(accepted["job_id"])  # the fan-out is what is measured, not its run
    return elapsed


def group_cpu_seconds(leader: int) -> float:
    """User + system CPU of a process and its group (functions-framework's worker)."""
    return sum(cpu_seconds(pid) for pid in group_pids(leader))


def logging_cost(batches: int, rounds: int, tmp: Path) -> dict[str, Any]:
    best: dict[str, float] = {"INFO": 0.0, "WARNING": 0.0}
    # run_batch's CPU per batch: its one process (one GIL) is what limits the run.
    cpu_ms: dict[str, float] = {"INFO": float("inf"), "WARNING": float("inf")}
    lines: dict[str, int] = {}
    for round_ in range(rounds):
        for level in best:
            config = StackConfig(
                state_dir=tmp / f"logging-{level}-{round_}",
                port_base=free_port_block(5),
                env={"FANOUT_LOG_LEVEL": level},
            )
            with LocalStack(config) as stack:
                count_parent_writes(stack)
                worker = stack.processes["run_batch"].pid
                before = group_cpu_seconds(worker)
                rate = throughput(stack, batches)["e2e_batches_per_s"]
                used = (group_cpu_seconds(worker) - before) / batches * 1000
                best[level] = max(best[level], rate)
                cpu_ms[level] = min(cpu_ms[level], used)
                log = stack.logs / "fanout.jsonl"
                lines[level] = len(log.read_bytes().splitlines()) if log.exists() else 0
    return {
        "logging_info_batches_per_s": best["INFO"],
        "logging_warning_batches_per_s": best["WARNING"],
        "logging_info_lines": lines["INFO"],
        "logging_warning_lines": lines["WARNING"],
        "logging_run_batch_cpu_ms_per_batch_info": round(cpu_ms["INFO"], 3),
        "logging_run_batch_cpu_ms_per_batch_warning": round(cpu_ms["WARNING"], 3),
        "logging_cost_cpu": round(1 - cpu_ms["WARNING"] / cpu_ms["INFO"], 3),
        "logging_cost": round(1 - best["INFO"] / best["WARNING"], 3),
        "logging_cost_vs_target": round((1 - best["INFO"] / best["WARNING"]) / 0.10, 3),
    }


def recovery(batches: int, interval: float, tmp: Path) -> dict[str, Any]:
    settings = Settings.from_env(RECOVERY_ENV)
    wait = (retry_window(settings.dispatch) + settings.enqueue_grace).total_seconds()
    config = StackConfig(
        state_dir=tmp / "recovery",
        port_base=free_port_block(5),
        env=RECOVERY_ENV,
        supervise=False,  # the worker stays down until the bench starts it
    )
    with LocalStack(config) as stack:
        count_parent_writes(stack)
        plain = throughput(stack, batches)["e2e_seconds"]
        client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
        queue = LocalTaskQueue(stack.sqlite_path, settings.dispatch)
        stack.kill("run_batch")
        accepted = client.submit(
            {
                "source": "noop",
                "collection": "bench",
                "items": [f"doc-{i}" for i in range(batches)],
                "batch_size": 1,
            }
        )
        enqueued = time.monotonic()  # ingest marked the batches enqueued before replying
        while queue.counts()[TaskState.FAILED] < batches:
            time.sleep(0.1)  # the dispatcher drops each task after its last attempt
        dropped = time.monotonic() - enqueued
        stack.start_process("run_batch")
        stack.wait_ready("run_batch")
        back = datetime.now(UTC)
        sweeps: list[dict[str, int]] = []
        sweep_seconds = 0.0
        while sum(s["redispatched"] for s in sweeps) < batches and len(sweeps) < 30:
            time.sleep(interval)  # the scheduler's next tick
            started = time.perf_counter()
            sweeps.append(stack.sweep())
            sweep_seconds = max(sweep_seconds, time.perf_counter() - started)
        job = wait_terminal(client, accepted["job_id"])
        queue.close()
    assert job["status"] == "completed" and job["completed_batches"] == batches, job
    seconds = (datetime.fromisoformat(job["finished_at"]) - back).total_seconds()
    return {
        "recovery_batches": batches,
        "recovery_tasks_dropped_after_s": round(dropped, 3),
        "recovery_retry_window_s": round(wait, 3),
        "recovery_sweep_interval_s": interval,
        "recovery_sweeps": len(sweeps),
        "recovery_sweep_seconds": round(sweep_seconds, 3),
        "recovery_seconds": round(seconds, 3),
        "recovery_plain_run_seconds": plain,
        "recovery_vs_target": round(seconds / (interval + plain), 3),
    }


def emulated(batches: int, local_batches_per_s: float, tmp: Path) -> dict[str, Any]:
    """The job of (a) on the deployed shape; the emulator drops nothing here (run_batch
    answers every task)."""
    config = StackConfig(
        state_dir=tmp / "emulated",
        port_base=free_port_block(5),
        cloud="emulated",
        env={"FANOUT_ENABLE_NOOP": "true"},  # deployed functions refuse noop jobs
    )
    with LocalStack(config) as stack:
        _, elapsed = run_noop_job(stack, batches)
    rate = batches / elapsed
    return {
        "emulated_batches": batches,
        "emulated_seconds": round(elapsed, 3),
        "emulated_batches_per_s": round(rate, 1),
        "emulated_vs_local": round(rate / local_batches_per_s, 3),
    }


SECTIONS = ("throughput", "fanout", "logging", "recovery", "emulated")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--log-rounds", type=int, default=5)
    parser.add_argument("--sweep-interval", type=float, default=2.0)
    parser.add_argument(
        "--sections",
        type=lambda value: value.split(","),
        default=list(SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS)} (default all; emulated needs throughput)",
    )
    args = parser.parse_args()
    concurrency = DispatchSettings().max_concurrent
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(state_dir=Path(tmp) / "stack", port_base=free_port_block(5))
        with LocalStack(config) as stack:
            count_parent_writes(stack)
            figures = throughput(stack, args.batches)
            if "throughput" in args.sections:
                limit = raw_limit(args.batches, concurrency, Path(tmp))
                figures |= {
                    "raw_limit_posts_per_s": round(limit, 1),
                    "throughput_vs_raw_limit": round(figures["e2e_batches_per_s"] / limit, 3),
                    "concurrency": concurrency,
                }
            if "fanout" in args.sections:
                latency = fanout_latency(stack, args.fanout)
                figures |= {
                    "fanout_batches": args.fanout,
                    "fanout_ingest_seconds": round(latency, 3),
                }
        if "logging" in args.sections:
            figures |= logging_cost(args.batches, args.log_rounds, Path(tmp))
        if "recovery" in args.sections:
            figures |= recovery(args.batches, args.sweep_interval, Path(tmp))
        if "emulated" in args.sections:
            figures |= emulated(args.batches, figures["e2e_batches_per_s"], Path(tmp))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
