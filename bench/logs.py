"""Job logs benchmark on the real local stack; prints one JSON line.

A log file like a busy local stack's: a 1,000-batch job's lines (claims, processor lines, a
retried attempt with a traceback every 25 batches, a failed batch every 100, the job's own
events) interleaved with three jobs running at the same time, after four earlier jobs and
before two later ones, all written by the real `FanoutLogHandler` (with simulated times,
hours apart). Then `GET /jobs/{id}/logs` is timed through the stack's `jobs_api` process
(functions-framework, over HTTP, as `fanout logs` calls it): the first page, every page of
the job (deep pages), a batch filter, severity filters and event filters. Reports p50/p95
per kind and the overall p95 against the 200 ms target (`p95_vs_target` = p95_ms / 200).

Usage: python -m bench.logs [--batches 1000] [--samples 30]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from functions.cli.client import FanoutClient
from functions.jobs import Job, batch_id_for
from functions.local.emulators import free_port_block
from functions.local.stack import LocalStack, StackConfig
from functions.observability.context import bound
from functions.observability.events import Event, emit
from functions.observability.handler import AppendOnlyLines, FanoutLogHandler
from functions.observability.lines import LOCAL_LOG_FILE
from functions.store.sqlite import SqliteJobStore

TARGET_MS = 200
OTHER_BATCHES = 600
# Batches of one job running at once (their lines interleave within the job too).
LANES = 4


@dataclass(frozen=True, slots=True)
class Line:
    """One line to write: what the service would log, with the labels it would bind."""

    message: str
    labels: dict[str, Any]
    level: int = logging.INFO
    event: Event | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    traceback: bool = False


def job_lines(job_id: str, batches: int) -> Iterator[Line]:
    """A documents job's lines, as the service and the processor write them."""
    job = {"job_id": job_id, "source": "documents", "trace_id": secrets.token_hex(16)}
    ingest = {**job, "function": "ingest"}
    yield Line(
        f"job {job_id} submitted: {batches * 2} items into 'bench'",
        ingest,
        event=Event.SUBMITTED,
        fields={"created": True, "collection": "bench"},
    )
    yield Line(
        f"planned {batches} batches", ingest, event=Event.PLANNED, fields={"total_batches": batches}
    )
    yield Line(f"enqueued {batches} of {batches} tasks", ingest, event=Event.ENQUEUED)
    lanes = [
        itertools.chain.from_iterable(_batch_lines(job, i) for i in range(lane, batches, LANES))
        for lane in range(LANES)
    ]
    yield from interleave(lanes, random.Random(job_id))
    yield Line(
        f"job completed: {batches} of {batches} batches completed, 0 failed",
        {**job, "function": "run_batch"},
        event=Event.JOB_FINALIZED,
        fields={"status": "completed", "completed_batches": batches},
    )


def _batch_lines(job: dict[str, Any], index: int) -> Iterator[Line]:
    batch_id = batch_id_for(job["job_id"], index)
    attempts = 2 if index % 25 == 7 else 1
    for attempt in range(1, attempts + 1):
        labels = {**job, "function": "run_batch", "batch_id": batch_id, "attempt": attempt}
        yield Line(
            f"attempt {attempt} of 2 items on bench-host pid 4242",
            labels,
            event=Event.BATCH_CLAIMED,
            fields={"items": 2, "ran_on": "bench-host pid 4242"},
        )
        yield Line(f"read docs/{index:05d}.pdf: 12 pages, 48 chunks", labels)
        yield Line("embedded 48 chunks in 0.31 s", labels, level=logging.DEBUG)
        if attempt < attempts:
            yield Line("embedding failed", labels, level=logging.ERROR, traceback=True)
            yield Line(
                "attempt 1 failed and will be retried: embedding service unavailable",
                labels,
                level=logging.WARNING,
                event=Event.BATCH_RETRIED,
                fields={"error": "embedding service unavailable", "attempts_left": 4},
            )
        elif index % 100 == 42:
            yield Line(
                "batch failed: 1 of 2 items failed",
                labels,
                level=logging.ERROR,
                event=Event.BATCH_FAILED,
                fields={"failed_items": {f"docs/{index:05d}.pdf": "not a PDF: bad header"}},
            )
        else:
            yield Line(
                "batch completed",
                labels,
                event=Event.BATCH_COMPLETED,
                fields={"status": "completed", "stats": {"processed": 2, "chunks": 96}},
            )


def interleave(streams: Sequence[Iterator[Line]], rng: random.Random) -> Iterator[Line]:
    """Lines of streams running at the same time: each next line from a random stream."""
    live = list(streams)
    while live:
        stream = rng.choice(live)
        line = next(stream, None)
        if line is None:
            live.remove(stream)
        else:
            yield line


class Writer:
    """Writes `Line`s through the real handler, each stamped with a simulated time."""

    def __init__(self, path: Path) -> None:
        self.handler = FanoutLogHandler(project="local", stream=AppendOnlyLines(path))
        self.plain = logging.getLogger("fanout.documents")
        self.at = datetime.now(UTC)
        try:
            raise ConnectionError("embedding service unavailable")
        except ConnectionError as error:
            self.error = error
        for logger in (self.plain, logging.getLogger("fanout.events")):
            logger.addHandler(self.handler)
            logger.addFilter(self._stamp)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False

    def _stamp(self, record: logging.LogRecord) -> bool:
        record.created = self.at.timestamp()
        return True

    def write(self, lines: list[Line], start: datetime, end: datetime) -> None:
        """`lines`, spread evenly from `start` to `end`."""
        step = (end - start) / max(len(lines), 1)
        for n, line in enumerate(lines):
            self.at = start + step * n
            with bound(**line.labels):
                if line.event is not None:
                    emit(line.event, line.message, level=line.level, **line.fields)
                else:
                    self.plain.log(
                        line.level, line.message, exc_info=self.error if line.traceback else None
                    )


@dataclass
class Workload:
    job: Job
    batches: int
    finished_at: datetime
    # Lines in the file, and the job's among them.
    lines: int
    job_lines: list[Line]


def build_log(path: Path, batches: int, now: datetime) -> Workload:
    """Four earlier jobs, the job with three others at once, then two later jobs."""
    writer = Writer(path)
    total = one_after_another(writer, now - timedelta(hours=4), jobs=4)
    created = now - timedelta(hours=2)
    job = Job.new(source="documents", collection="bench", now=created)
    mine = list(job_lines(job.job_id, batches))
    others = [job_lines(_job_id(created), OTHER_BATCHES) for _ in range(3)]
    window = list(interleave([iter(mine), *others], random.Random(7)))
    finished = created + timedelta(minutes=30)
    writer.write(window, created, finished)
    total += len(window)
    # Well past the job's end and its 10-minute margin.
    total += one_after_another(writer, now - timedelta(minutes=75), jobs=2)
    return Workload(job, batches, finished, total, mine)


def one_after_another(writer: Writer, start: datetime, *, jobs: int) -> int:
    """`jobs` jobs of OTHER_BATCHES, 25 minutes each, every 30 minutes; returns their lines."""
    total = 0
    for n in range(jobs):
        begin = start + timedelta(minutes=30 * n)
        lines = list(job_lines(_job_id(begin), OTHER_BATCHES))
        writer.write(lines, begin, begin + timedelta(minutes=25))
        total += len(lines)
    return total


def _job_id(created: datetime) -> str:
    return Job.new(source="documents", collection="b", now=created).job_id


Samples = dict[str, list[float]]


def timed(samples: Samples, kind: str, client: FanoutClient, job_id: str, **query: Any) -> Any:
    """One `GET /jobs/{id}/logs`, its wall time recorded under `kind`."""
    start = time.perf_counter()
    page = client.logs(job_id, **query)
    samples.setdefault(kind, []).append((time.perf_counter() - start) * 1000)
    return page


def walk(
    samples: Samples, kind: str, client: FanoutClient, job_id: str, **filters: Any
) -> list[dict[str, Any]]:
    """Every page of a query; returns all its lines."""
    lines: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = timed(samples, kind, client, job_id, cursor=cursor, **filters)
        lines += page["lines"]
        cursor = page["next_cursor"]
        if cursor is None:
            return lines


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def measure_filters(
    samples: Samples, suffix: str, client: FanoutClient, load: Workload, n: int
) -> None:
    """Batch, severity and event filters: each scans the job's whole range (or to the end
    of the file while the job is open) for few lines."""
    job_id = load.job.job_id
    for index in random.Random(3).sample(range(load.batches), n):
        page = timed(
            samples, "batch" + suffix, client, job_id, batch_id=batch_id_for(job_id, index)
        )
        assert page["next_cursor"] is None and len(page["lines"]) >= 4, page
    for severity in ("ERROR", "WARNING"):
        for _ in range(n // 2):
            walk(samples, "severity" + suffix, client, job_id, severity=severity)
    for event in ("batch_failed", "batch_retried"):
        for _ in range(n // 2):
            walk(samples, "event" + suffix, client, job_id, event=event)
    walk(samples, "event" + suffix, client, job_id, event="batch_completed")


def measure(stack: LocalStack, load: Workload, n: int) -> dict[str, Any]:
    job_id = load.job.job_id
    client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
    store = SqliteJobStore(stack.sqlite_path)
    samples: Samples = {}
    # The route reads the job's created and finished times only: the job is first open
    # (its reads run to the end of the file), then finished (they stop 10 minutes past it).
    store.create_job(load.job)
    client.logs(job_id, limit=1)  # the process's first request builds its service
    measure_filters(samples, "_open_job", client, load, n)
    store.cancel_job(job_id, now=load.finished_at)
    store.close()
    for _ in range(n):
        timed(samples, "first_page", client, job_id)
    every = walk(samples, "deep_page", client, job_id)
    assert len(every) == len(load.job_lines), (len(every), len(load.job_lines))
    samples["deep_page"] = samples["deep_page"][1:]  # the first page is measured above
    measure_filters(samples, "", client, load, n)
    figures: dict[str, Any] = {}
    for kind, values in samples.items():
        figures[f"{kind}_p50_ms"] = round(statistics.median(values), 1)
        figures[f"{kind}_p95_ms"] = round(percentile(values, 95), 1)
        figures[f"{kind}_requests"] = len(values)
    overall = percentile([v for values in samples.values() for v in values], 95)
    figures |= {
        "overall_p95_ms": round(overall, 1),
        "target_ms": TARGET_MS,
        "p95_vs_target": round(overall / TARGET_MS, 3),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--batches", type=int, default=1_000)
    parser.add_argument("--samples", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = StackConfig(state_dir=Path(tmp) / "stack", port_base=free_port_block(5))
        path = config.state_dir / "logs" / LOCAL_LOG_FILE  # where the stack's processes log
        started = time.perf_counter()
        load = build_log(path, args.batches, datetime.now(UTC))
        written_s = time.perf_counter() - started
        figures: dict[str, Any] = {
            "via": "GET /jobs/{id}/logs on the local stack's jobs_api (functions-framework)",
            "log_lines": load.lines,
            "log_mb": round(path.stat().st_size / 2**20, 1),
            "job_batches": args.batches,
            "job_lines": len(load.job_lines),
            "write_s": round(written_s, 1),
        }
        with LocalStack(config) as stack:
            figures |= measure(stack, load, args.samples)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
