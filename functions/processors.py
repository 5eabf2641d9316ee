"""Processors: the work a batch does, pluggable by request `source` name.

A processor checks a request at submit (`check_request`, before anything is written),
sets up what its batches share before the job is recorded (`prepare`, idempotent), opens
one `BatchWork` per batch attempt, and tidies up once when the job ends (`job_finished`).
A `BatchWork` takes the batch's items one at a time and raises `ItemFailed` for a bad
item (only that item fails), `ItemSkipped` for an item it has no use for, and
`TransientError` when the whole batch should be retried later. `flush` writes what the
work buffered; the batch counts as done only once it returns.

Register a processor with `@register("name")`; `get_processor` resolves request sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from functions.config import Settings
from functions.errors import InvalidArgument, ItemFailed
from functions.ingest_request import IngestRequest
from functions.jobs import Job, JobStats


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a processor knows about the batch it works for."""

    job_id: str
    batch_id: str
    collection: str
    options: Mapping[str, Any] = field(default_factory=dict)


class BatchWork(Protocol):
    def process(self, item: str) -> JobStats: ...

    def flush(self) -> JobStats:
        """Write what is buffered; returns stats not yet reported by `process`."""
        ...


class Processor(Protocol):
    def check_request(self, request: IngestRequest) -> None:
        """Raise `InvalidArgument` for a request this processor cannot run (at submit)."""
        ...

    def prepare(self, request: IngestRequest) -> None:
        """Set up what the job's batches share (a collection), after `check_request` and
        before the job is recorded: a failure here leaves no job behind. Idempotent."""
        ...

    def open_batch(self, context: BatchContext) -> BatchWork: ...

    def job_finished(self, job: Job) -> None:
        """Once per job, by whoever finalized it (the exactly-once step)."""
        ...


ProcessorFactory = Callable[[Settings], Processor]
_REGISTRY: dict[str, ProcessorFactory] = {}


def register(name: str) -> Callable[[ProcessorFactory], ProcessorFactory]:
    def add(factory: ProcessorFactory) -> ProcessorFactory:
        _REGISTRY[name] = factory
        return factory

    return add


def processor_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_processor(name: str, settings: Settings) -> Processor:
    """The processor registered as `name`; `InvalidArgument` naming the known ones."""
    _load_builtin()
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(processor_names())
        raise InvalidArgument(f"unknown source {name!r}; registered: {known}")
    return factory(settings)


def _load_builtin() -> None:
    # Imported on first use: ingestion pulls in LanceDB and the loaders, which the
    # registry itself does not need.
    import functions.ingestion.processor  # noqa: F401


class Stateless:
    """Base for processors with nothing to prepare or tidy up."""

    def prepare(self, request: IngestRequest) -> None:
        return None

    def job_finished(self, job: Job) -> None:
        return None


@register("noop")
class NoopProcessor(Stateless):
    """Does no real work: for benchmarks and tests of the fan-out machinery.

    Options: `delay_ms` (0..60000) spent per item, to make batches take time;
    `fail_items_file`, a file listing item names (one per line) that fail. The file is read
    when the item is processed, so fixing it and retrying the job makes those items pass.
    """

    MAX_DELAY_MS = 60_000

    def __init__(self, settings: Settings) -> None:
        pass  # nothing configurable: the factory signature is shared by every processor

    def check_request(self, request: IngestRequest) -> None:
        options = request.options
        unknown = set(options) - {"delay_ms", "fail_items_file"}
        if unknown:
            raise InvalidArgument(f"unknown noop options: {', '.join(sorted(unknown))}")
        delay = options.get("delay_ms", 0)
        if (
            not isinstance(delay, int)
            or isinstance(delay, bool)
            or not (0 <= delay <= self.MAX_DELAY_MS)
        ):
            raise InvalidArgument(f"delay_ms must be a whole number 0..{self.MAX_DELAY_MS}")
        if not isinstance(options.get("fail_items_file", ""), str):
            raise InvalidArgument("fail_items_file must be a path")

    def open_batch(self, context: BatchContext) -> BatchWork:
        return _NoopBatch(context)


class _NoopBatch:
    def __init__(self, context: BatchContext) -> None:
        self.delay = int(context.options.get("delay_ms", 0))
        self.fail_file = context.options.get("fail_items_file")

    def process(self, item: str) -> JobStats:
        if self.delay:
            time.sleep(self.delay / 1000)  # simulated work
        if self.fail_file and item in _lines(Path(self.fail_file)):
            raise ItemFailed(f"item {item!r} is listed in {self.fail_file}")
        return JobStats(processed=1)

    def flush(self) -> JobStats:
        return JobStats()


def _lines(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except FileNotFoundError:
        return set()
