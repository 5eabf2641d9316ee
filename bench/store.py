"""Store benchmark: one JSON line per backend (SQLite, and Firestore on each emulator here).

(a) fan-out: create a job with 10,000 batches through `add_batches`, against the naive
    baseline of writing the same 10,000 batch records one write per batch, in the same run.
(b) fan-in: 2,000 batches, every one delivered twice, run by 16 concurrent workers through
    the worker's real path (claim, then finish if granted). Reports batches per second, the
    final `completed_batches` (must be 2,000), and the store round trips per batch on the
    happy path (claim + finish, plus the finalize check where one runs), counted at the
    transport: RPCs for Firestore, write transactions for SQLite (reads there are
    in-process).

Usage: python -m bench.store [--firestore auto|npm|google|none] [--batches N]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from google.cloud import firestore

from functions.jobs import Batch, BatchOutcome, Job, JobStats, JobStatus, plan_batches
from functions.local.emulators import (
    Emulator,
    google_firestore_available,
    start_google_firestore,
    start_npm_firestore,
)
from functions.store.firestore import FirestoreJobStore, _batch_doc
from functions.store.protocol import JobStore
from functions.store.sqlite import SqliteJobStore, _us

FIRESTORE_RPCS = (
    "commit",
    "batch_get_documents",
    "run_query",
    "run_aggregation_query",
    "begin_transaction",
    "rollback",
    "get_document",
)
LEASE = timedelta(minutes=5)
# A factory of store factories: each call makes new, isolated state that the stores built by
# the returned factory share (a new SQLite file, or a new Firestore project on an emulator).
Fresh = Callable[[], Callable[[], JobStore]]


class RoundTrips:
    """Counts store round trips per thread, so each delivery can be measured alone."""

    def __init__(self) -> None:
        self._local = threading.local()

    def hit(self) -> None:
        self._local.n = getattr(self._local, "n", 0) + 1

    def take(self) -> int:
        n: int = getattr(self._local, "n", 0)
        self._local.n = 0
        return n

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.hit()
            return fn(*args, **kwargs)

        return counted


def instrument(store: JobStore, trips: RoundTrips) -> None:
    """Count round trips where they leave the process (or, for SQLite, the transaction)."""
    if isinstance(store, FirestoreJobStore):
        api = store.db._firestore_api
        for name in FIRESTORE_RPCS:
            setattr(api, name, trips.wrap(getattr(api, name)))
    elif isinstance(store, SqliteJobStore):
        # An embedded store has no network round trip: count write transactions, explicit
        # ones and single-statement ones (the SQLite lock is the shared resource).
        original = store.db.transaction

        @contextmanager
        def counted_tx(mode: str = "IMMEDIATE") -> Iterator[Any]:
            if mode == "IMMEDIATE":
                trips.hit()
            with original(mode) as conn:
                yield conn

        store.db.transaction = counted_tx  # type: ignore[method-assign]
        store.db.write = trips.wrap(store.db.write)  # type: ignore[method-assign]


def naive_writes(store: JobStore, job_id: str, batches: list[Batch]) -> None:
    """The baseline: the same batch records, one write (one round trip, one commit) each."""
    if isinstance(store, FirestoreJobStore):
        ref = store.db.collection("baseline").document(job_id).collection("batches")
        for batch in batches:
            ref.document(batch.batch_id).set(_batch_doc(batch))
    elif isinstance(store, SqliteJobStore):
        # The store's own write path, once per batch: what an `add_batch` method would do
        # (every store write is an IMMEDIATE transaction that checks the job it touches).
        for batch in batches:
            with store.db.transaction() as conn:
                conn.execute("SELECT status FROM jobs WHERE job_id = ?", (job_id,))
                conn.execute(
                    "INSERT INTO batches (job_id, batch_index, items, status, created_at)"
                    " VALUES (?, ?, ?, 'pending', ?)",
                    (job_id, batch.index, json.dumps(list(batch.items)), _us(batch.created_at)),
                )


def fan_out(fresh: Fresh, count: int) -> dict[str, float]:
    """Both sides write the same planned batches, each into fresh state (so neither pays
    for the other's leftovers, such as a WAL checkpoint). Planning is outside both."""
    items = [f"doc-{i}" for i in range(count)]
    timings = {}
    for side in ("baseline", "bulk"):
        store = fresh()()
        job, _ = store.create_job(Job.new(source="noop", collection="bench"))
        batches = plan_batches(job.job_id, items, 1)
        start = time.perf_counter()
        if side == "bulk":
            store.add_batches(job.job_id, batches)
        else:
            naive_writes(store, job.job_id, batches)
        timings[side] = time.perf_counter() - start
        store.close()
    return {
        "fanout_batches": count,
        "fanout_s": round(timings["bulk"], 3),
        "baseline_one_write_per_batch_s": round(timings["baseline"], 3),
        "fanout_speedup": round(timings["baseline"] / timings["bulk"], 1),
    }


def fan_in(make_store: Callable[[], JobStore], batches: int, workers: int) -> dict[str, Any]:
    setup = make_store()
    job, _ = setup.create_job(Job.new(source="noop", collection="bench"))
    job = setup.add_batches(
        job.job_id, plan_batches(job.job_id, [f"doc-{i}" for i in range(batches)], 1)
    )
    trips = RoundTrips()
    stores = [make_store() for _ in range(workers)]
    for store in stores:
        instrument(store, trips)
    deliveries = [f"{job.job_id}_{i:04d}" for i in range(batches)] * 2
    random.Random(1).shuffle(deliveries)

    def deliver(n: int) -> tuple[bool, int, bool]:
        store = stores[n % workers]
        trips.take()
        claim = store.claim_batch(deliveries[n], lease=LEASE)
        if not claim.granted:
            return False, trips.take(), False
        result = store.finish_batch(
            claim.job, claim.batch, BatchOutcome(JobStatus.COMPLETED, JobStats(processed=1))
        )
        return True, trips.take(), result.finalized

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(deliver, range(len(deliveries))))
    elapsed = time.perf_counter() - start
    happy = [n for granted, n, _ in results if granted]
    final = setup.get_job(job.job_id)
    for store in [setup, *stores]:
        store.close()
    return {
        "fanin_batches": batches,
        "fanin_deliveries": len(deliveries),
        "fanin_workers": workers,
        "fanin_batches_per_s": round(batches / elapsed, 1),
        "fanin_deliveries_per_s": round(len(deliveries) / elapsed, 1),
        "fanin_completed_batches": final.completed_batches,
        "fanin_exact": final.completed_batches == batches
        and final.stats.processed == batches
        and sum(f for *_, f in results) == 1,
        "round_trips_per_batch_median": statistics.median(happy),
        "round_trips_per_batch_mean": round(statistics.mean(happy), 3),
        "round_trips_per_batch_max": max(happy),
    }


def bench(name: str, fresh: Fresh, args: argparse.Namespace) -> None:
    figures: dict[str, Any] = {"backend": name, **fan_out(fresh, args.fanout)}
    figures.update(fan_in(fresh(), args.batches, args.workers))
    print(json.dumps(figures), flush=True)


class FreshEmulator:
    """Fresh Firestore state = a freshly started emulator, not just a new project: the npm
    emulator's cost per write grows with everything it holds, so leftovers of one side
    would slow the other."""

    def __init__(self, start: Callable[[Path], Emulator], log_dir: Path) -> None:
        self.start = start
        self.log_dir = log_dir
        self.emulator: Emulator | None = None

    def __call__(self) -> Callable[[], JobStore]:
        self.stop()
        self.emulator = self.start(self.log_dir)
        os.environ["FIRESTORE_EMULATOR_HOST"] = self.emulator.host
        project = f"bench-{uuid.uuid4().hex[:8]}"
        return lambda: FirestoreJobStore(client=firestore.Client(project=project))

    def stop(self) -> None:
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--firestore", choices=("auto", "npm", "google", "none"), default="auto")
    parser.add_argument("--fanout", type=int, default=10_000)
    parser.add_argument("--batches", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:

        def fresh_sqlite() -> Callable[[], JobStore]:
            path = Path(tmp) / f"{uuid.uuid4().hex}.sqlite3"
            return lambda: SqliteJobStore(path)

        bench("sqlite", fresh_sqlite, args)
        starters: list[tuple[str, Callable[[Path], Emulator]]] = []
        if args.firestore in ("auto", "npm"):
            starters.append(("firestore-npm", start_npm_firestore))
        if args.firestore == "google" or (
            args.firestore == "auto" and google_firestore_available()
        ):
            starters.append(("firestore-google", start_google_firestore))
        for name, start in starters:
            fresh = FreshEmulator(start, Path(tmp))
            try:
                bench(name, fresh, args)
            finally:
                fresh.stop()


if __name__ == "__main__":
    main()
