"""Processors: the work a batch does, one item at a time, pluggable by name.

A processor turns one item (a document reference) into stats. It raises `ItemFailed` for
a bad item (only that item fails) and `TransientError` when the whole batch should be
retried later. Register one with `@register("name")`; `get_processor` resolves request
`source` names.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from functions.errors import InvalidArgument, ItemFailed
from functions.jobs import JobStats


@dataclass(frozen=True, slots=True)
class BatchContext:
    """What a processor knows about the batch it works for."""

    job_id: str
    batch_id: str
    collection: str
    options: Mapping[str, Any] = field(default_factory=dict)


class Processor(Protocol):
    def check_options(self, options: Mapping[str, Any]) -> None:
        """Raise `InvalidArgument` for options this processor cannot use (at submit)."""
        ...

    def process(self, item: str, context: BatchContext) -> JobStats: ...


_REGISTRY: dict[str, Callable[[], Processor]] = {}


def register(name: str) -> Callable[[Callable[[], Processor]], Callable[[], Processor]]:
    def add(factory: Callable[[], Processor]) -> Callable[[], Processor]:
        _REGISTRY[name] = factory
        return factory

    return add


def processor_names() -> list[str]:
    return sorted(_REGISTRY)


def get_processor(name: str) -> Processor:
    """The processor registered as `name`; `InvalidArgument` naming the known ones."""
    factory = _REGISTRY.get(name)
    if factory is None:
        known = ", ".join(processor_names())
        raise InvalidArgument(f"unknown source {name!r}; registered: {known}")
    return factory()


@register("noop")
class NoopProcessor:
    """Does no real work: for benchmarks and tests of the fan-out machinery.

    Options: `delay_ms` (0..60000) spent per item, to make batches take time;
    `fail_items_file`, a file listing item names (one per line) that fail. The file is read
    when the item is processed, so fixing it and retrying the job makes those items pass.
    """

    MAX_DELAY_MS = 60_000

    def check_options(self, options: Mapping[str, Any]) -> None:
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

    def process(self, item: str, context: BatchContext) -> JobStats:
        delay = int(context.options.get("delay_ms", 0))
        if delay:
            time.sleep(delay / 1000)  # simulated work
        fail_file = context.options.get("fail_items_file")
        if fail_file and item in _lines(Path(fail_file)):
            raise ItemFailed(f"item {item!r} is listed in {fail_file}")
        return JobStats(processed=1)


def _lines(path: Path) -> set[str]:
    try:
        return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except FileNotFoundError:
        return set()
