"""Jobs API benchmark on the real local stack (SQLite store); prints one JSON line.

(a) `GET /jobs`: a 50-job page with 10,000 jobs stored (completed, failed, running and
    cancelled, written into the stack's SQLite file through the store before it starts),
    timed over HTTP through the stack's `jobs_api` process (functions-framework, as the
    CLI calls it), against the same page read straight from the store in this process,
    the limit. The two are sampled alternately, after a warm-up. Target: the API's p95
    under 2x the store's (`api_vs_store_p95`).
(b) `GET /jobs/{id}`: the store reads of its handler's path (`get_job`, then the batch
    summary) for a 5,000-batch job and a 50-batch job in the same state (2 completed,
    1 failed, 3 running), counted as SQL statements (sqlite3's trace callback); they must
    be equal. The summary's SQLite virtual-machine steps, which grow with every row or
    index entry it reads, are reported too, next to those of the old per-status counts.
    And the endpoint's p50/p95 over HTTP for the 5,000-batch job.
(c) `/ui/jobs`: the p95 render time of the same 50-job page, against the JSON endpoint's
    (`ui_vs_json_p95`, target under 2). Skipped, and said so, while the page is missing.

Usage: python -m bench.api [--jobs 10000] [--requests 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.logs import percentile
from functions.config import Settings
from functions.jobs import BatchOutcome, Job, JobStats, JobStatus, plan_batches
from functions.local.emulators import free_port_block
from functions.local.stack import FUNCTIONS, LocalStack, StackConfig
from functions.queue.local import LocalTaskQueue
from functions.service import FanoutService
from functions.sqlite_db import SqlWork, counting_work
from functions.store.protocol import JobQuery
from functions.store.sqlite import SqliteJobStore

TARGET_RATIO = 2.0
PAGE = 50
WARM_UP = 20
LEASE = timedelta(hours=1)
SOURCES = ("documents", "noop")


def _finish(store: SqliteJobStore, job: Job, index: int, status: JobStatus, at: datetime) -> None:
    claim = store.claim_batch(f"{job.job_id}_{index:04d}", lease=LEASE, now=at)
    assert claim.granted, claim.reason
    error = "2 of 2 items failed" if status is JobStatus.FAILED else None
    outcome = BatchOutcome(status, JobStats(files=2, processed=2, chunks=9), error)
    store.finish_batch(claim.job, claim.batch, outcome, now=at)


def _job(store: SqliteJobStore, created: datetime, n: int) -> Job:
    job, _ = store.create_job(
        Job.new(
            source=SOURCES[n % 2],
            collection=f"bench-{n % 7}",
            request={"batch_size": 2},
            client_id=f"client-{n % 5}" if n % 3 else None,
            request_id=f"request-{n}" if n % 3 else None,
            now=created,
        )
    )
    return job


def seed_jobs(store: SqliteJobStore, count: int, now: datetime) -> dict[str, int]:
    """`count` jobs, one a minute up to `now`, each of 1 to 3 two-item batches: 17 in 20
    completed, then one each failed, running (one batch done, one running) and cancelled.
    Returns how many of each."""
    made: dict[str, int] = {}
    for n in range(count):
        created = now - timedelta(minutes=count - n)
        job = _job(store, created, n)
        kind = {0: "failed", 1: "running", 2: "cancelled"}.get(n % 20, "completed")
        items = [f"doc-{i}" for i in range(6 if kind == "running" else 2)]
        job = store.add_batches(job.job_id, plan_batches(job.job_id, items, 2), now=created)
        at = created + timedelta(seconds=20)
        if kind in ("completed", "failed"):
            _finish(store, job, 0, JobStatus(kind), at)
        elif kind == "running":
            _finish(store, job, 0, JobStatus.COMPLETED, at)
            assert store.claim_batch(f"{job.job_id}_0001", lease=LEASE, now=at).granted
        else:
            store.cancel_job(job.job_id, now=at)
        made[kind] = made.get(kind, 0) + 1
    return made


def seed_batch_job(store: SqliteJobStore, batches: int, created: datetime) -> Job:
    """A running job of `batches` batches: 2 completed, 1 failed, 3 running, the rest
    pending (so its summary reads the same whatever its size)."""
    job = _job(store, created, 0)
    items = [f"doc-{i}" for i in range(batches)]
    store.add_batches(job.job_id, plan_batches(job.job_id, items, 1), now=created)
    for index, status in (
        (0, JobStatus.COMPLETED),
        (1, JobStatus.COMPLETED),
        (2, JobStatus.FAILED),
    ):
        _finish(store, job, index, status, created)
    for index in (3, 4, 5):
        assert store.claim_batch(f"{job.job_id}_{index:04d}", lease=LEASE, now=created).granted
    return job


def counted(store: SqliteJobStore) -> AbstractContextManager[SqlWork]:
    """The SQL statements and VM steps the store runs in this thread meanwhile."""
    return counting_work(store.db.conn())  # this thread's connection: the one the store uses


def job_reads(store: SqliteJobStore, service: FanoutService, job: Job) -> dict[str, Any]:
    """What `GET /jobs/{id}` reads from the store for `job`, and its summary's cost now and
    the old way (one listing count per status)."""
    with counted(store) as handler:
        summary = service.batch_summary(store.get_job(job.job_id))
    read = store.get_job(job.job_id)
    with counted(store) as alone:
        service.batch_summary(read)
    with counted(store) as old:
        before = {
            s.value: store.list_batches(job.job_id, status=s, limit=1).total for s in JobStatus
        }
    assert before == summary, (before, summary)
    return {
        "statements": handler.statements,
        "summary_vm_steps": alone.vm_steps,
        "per_status_counts_vm_steps": old.vm_steps,
        "summary": summary,
        "total_batches": read.total_batches,
    }


def get(url: str) -> tuple[int, float]:
    """One GET as the CLI makes it (a new connection); its status and wall time in ms."""
    start = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        error.read()
        status = error.code
    return status, (time.perf_counter() - start) * 1000


def figures(name: str, values: list[float]) -> dict[str, float]:
    return {
        f"{name}_p50_ms": round(statistics.median(values), 2),
        f"{name}_p95_ms": round(percentile(values, 95), 2),
    }


def sample(
    url: str, n: int, alongside: Callable[[], object] | None = None
) -> tuple[list[float], list[float]]:
    """`n` timed GETs of `url` after a warm-up, each after one timed call of `alongside`
    (so that both see the same load on the machine)."""
    for _ in range(WARM_UP):
        status, _ = get(url)
        assert status == 200, (url, status)
        if alongside is not None:
            alongside()
    http: list[float] = []
    local: list[float] = []
    for _ in range(n):
        if alongside is not None:
            start = time.perf_counter()
            alongside()
            local.append((time.perf_counter() - start) * 1000)
        status, ms = get(url)
        assert status == 200, (url, status)
        http.append(ms)
    return http, local


def ui_page(api: str) -> str | None:
    """The URL of `/ui/jobs` showing a 50-job page, or None while the page is missing."""
    for url in (f"{api}/ui/jobs?limit={PAGE}", f"{api}/ui/jobs"):
        if get(url)[0] == 200:
            return url
    return None


def measure(
    stack: LocalStack, store: SqliteJobStore, jobs: dict[int, Job], n: int
) -> dict[str, Any]:
    api = stack.url("jobs_api")
    out: dict[str, Any] = {}
    query = JobQuery.build(limit=PAGE)
    page = store.list_jobs(query)
    assert len(page.items) == PAGE, len(page.items)
    json_http, direct = sample(f"{api}/jobs?limit={PAGE}", n, lambda: store.list_jobs(query))
    out |= figures("list_jobs_api", json_http) | figures("list_jobs_store", direct)
    ratio = percentile(json_http, 95) / percentile(direct, 95)
    out |= {"jobs_stored": page.total, "api_vs_store_p95": round(ratio, 2)}
    out["api_vs_store_target"] = TARGET_RATIO

    queue = LocalTaskQueue(stack.sqlite_path, Settings().dispatch)
    service = FanoutService(store, queue, Settings())
    reads = {size: job_reads(store, service, job) for size, job in jobs.items()}
    queue.close()
    for size, cost in reads.items():
        assert cost["total_batches"] == size
        out[f"get_job_store_reads_{size}_batches"] = cost["statements"]
        out[f"summary_vm_steps_{size}_batches"] = cost["summary_vm_steps"]
        out[f"per_status_counts_vm_steps_{size}_batches"] = cost["per_status_counts_vm_steps"]
    small, large = sorted(reads)
    out["get_job_store_reads_equal"] = reads[small]["statements"] == reads[large]["statements"]
    detail, _ = sample(f"{api}/jobs/{jobs[large].job_id}", n)
    out |= figures(f"get_job_{large}_batches_api", detail)

    ui = ui_page(api)
    if ui is None:
        out["ui_jobs"] = "not measured: /ui/jobs does not answer 200 yet"
        return out
    html, _ = sample(ui, n)
    out |= figures("ui_jobs", html)
    out["ui_vs_json_p95"] = round(percentile(html, 95) / percentile(json_http, 95), 2)
    out["ui_vs_json_target"] = TARGET_RATIO
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(
            state_dir=Path(tmp) / "stack", port_base=free_port_block(len(FUNCTIONS))
        )
        store = SqliteJobStore(config.state_dir / "fanout.sqlite3")
        now = datetime.now(UTC)
        started = time.perf_counter()
        made = seed_jobs(store, args.jobs - 2, now)
        # Older than the first page, so that the page is the same for every measurement.
        old = now - timedelta(days=30)
        jobs = {size: seed_batch_job(store, size, old) for size in (50, 5_000)}
        out: dict[str, Any] = {
            "via": "local stack jobs_api (functions-framework) over HTTP, SQLite store",
            "page": PAGE,
            "requests": args.requests,
            "seeded_jobs": made,
            "seed_s": round(time.perf_counter() - started, 1),
        }
        with LocalStack(config) as stack:
            out |= measure(stack, store, jobs, args.requests)
        store.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
