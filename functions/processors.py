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

import importlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.config import PREFIX, Settings
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
    # The items the batch will process, in order (to look them up at once).
    items: Sequence[str] = ()


class BatchWork(Protocol):
    def process(self, item: str) -> JobStats:
        """Stats of what reached its end meanwhile: an item is `processed` only once its
        results are stored, which for buffered work is in a later call or the flush."""
        ...

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
# The setting that turns the noop source on, and the largest fail_items_file it reads.
ENABLE_NOOP = f"{PREFIX}ENABLE_NOOP"
MAX_FAIL_FILE_BYTES = 1024 * 1024
_REGISTRY: dict[str, ProcessorFactory] = {}


def register(name: str) -> Callable[[ProcessorFactory], ProcessorFactory]:
    def add(factory: ProcessorFactory) -> ProcessorFactory:
        _REGISTRY[name] = factory
        return factory

    return add


# Processors registered by their own module, imported when a job first needs one: ingestion
# pulls in LanceDB, numpy and the document loaders, which neither the registry nor a noop
# job needs (each function process would pay half a second for them at its first request).
_BUILTIN_MODULES = {"documents": "functions.ingestion.processor"}


def processor_names() -> list[str]:
    return sorted({*_REGISTRY, *_BUILTIN_MODULES})


def get_processor(name: str, settings: Settings) -> Processor:
    """The processor registered as `name`; `InvalidArgument` naming the known ones."""
    if name not in _REGISTRY and name in _BUILTIN_MODULES:
        importlib.import_module(_BUILTIN_MODULES[name])
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(processor_names())
        raise InvalidArgument(f"unknown source {name!r}; registered: {known}")
    return factory(settings)


class Stateless:
    """Base for processors with nothing to prepare or tidy up."""

    def prepare(self, request: IngestRequest) -> None:
        return None

    def job_finished(self, job: Job) -> None:
        return None


@register("noop")
class NoopProcessor(Stateless):
    """Does no real work: for benchmarks and tests of the fan-out machinery. Refused unless
    `Settings.enable_noop` (FANOUT_ENABLE_NOOP; the local stack sets it).

    Options: `delay_ms` (0..60000) spent per item, to make batches take time;
    `fail_items_file`, a file listing item names (one per line) that fail. The file is read
    when the item is processed, so fixing it and retrying the job makes those items pass
    (a missing file fails nothing). It must be a regular file inside the allowed roots, of
    at most MAX_FAIL_FILE_BYTES: refused at submit when it is not, and when it stops being
    so later, each item fails saying why.
    """

    MAX_DELAY_MS = 60_000

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check_request(self, request: IngestRequest) -> None:
        if not self.settings.enable_noop:
            raise InvalidArgument(
                f"the noop source is turned off here; {ENABLE_NOOP} turns it on "
                "(it is for tests and benchmarks)"
            )
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
        fail_file = options.get("fail_items_file")
        if fail_file is not None:
            if not isinstance(fail_file, str) or not fail_file:
                raise InvalidArgument("fail_items_file must be a path")
            try:
                _fail_items(fail_file, self.settings)
            except ItemFailed as error:
                raise InvalidArgument(error.message) from None

    def open_batch(self, context: BatchContext) -> BatchWork:
        return _NoopBatch(context, self.settings)


class _NoopBatch:
    def __init__(self, context: BatchContext, settings: Settings) -> None:
        self.settings = settings
        self.delay = int(context.options.get("delay_ms", 0))
        self.fail_file = context.options.get("fail_items_file")
        # Read once per batch attempt, at its first item: the names, or why it cannot be.
        self._failing: set[str] | ItemFailed | None = None

    def process(self, item: str) -> JobStats:
        if self.delay:
            time.sleep(self.delay / 1000)  # simulated work
        if self.fail_file and item in self._failing_items(self.fail_file):
            raise ItemFailed(f"item {item!r} is listed in {self.fail_file}")
        return JobStats(processed=1)

    def _failing_items(self, path: str) -> set[str]:
        if self._failing is None:
            try:
                self._failing = _fail_items(path, self.settings)
            except ItemFailed as error:
                self._failing = error
        if isinstance(self._failing, ItemFailed):
            raise ItemFailed(self._failing.message)
        return self._failing

    def flush(self) -> JobStats:
        return JobStats()


def _fail_items(path: str, settings: Settings) -> set[str]:
    """The names listed in the file at `path` (none when it does not exist). `ItemFailed`
    saying why when it is outside the allowed roots, not a regular file (a directory, a
    FIFO, a device: never opened blocking), over MAX_FAIL_FILE_BYTES, or unreadable."""
    from functions.ingestion.sources.local import LocalSource  # pulls in the ingestion code

    try:
        source = LocalSource(path, settings, must_exist=False)
    except InvalidArgument as error:
        raise ItemFailed(f"fail_items_file: {error.message}") from None
    try:
        with source.open(path) as file:
            data = file.read(MAX_FAIL_FILE_BYTES + 1)
    except FileNotFoundError:
        return set()
    except ItemFailed as error:
        raise ItemFailed(f"fail_items_file: {error.message}") from None
    except OSError as error:
        raise ItemFailed(f"fail_items_file {path}: {error.strerror or error}") from None
    if len(data) > MAX_FAIL_FILE_BYTES:
        raise ItemFailed(f"fail_items_file {path} is over {MAX_FAIL_FILE_BYTES} bytes")
    text = data.decode("utf-8", errors="replace")
    return {line.strip() for line in text.splitlines() if line.strip()}
