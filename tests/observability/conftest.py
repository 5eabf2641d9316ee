"""A log file written the way the local stack writes it: the real handler, appending lines."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from functions.observability.context import bound
from functions.observability.events import Event, emit
from functions.observability.handler import AppendOnlyLines, FanoutLogHandler
from functions.observability.lines import LOCAL_LOG_FILE

# `emit` logs through "fanout.events"; plain lines go through a logger of the tests' own.
_LOGGERS = ("fanout.events", "tests.observability")


class LogFile:
    """Lines for `log_dir/fanout.jsonl` through `FanoutLogHandler`, with a job's (and batch's)
    labels bound as the service binds them. `at`, when set, is the time lines are written
    with (a logger filter sets it on the record, before the handler formats it)."""

    def __init__(self, log_dir: Path) -> None:
        self.dir = log_dir
        self.path = log_dir / LOCAL_LOG_FILE
        self.handler = FanoutLogHandler(project="p", stream=AppendOnlyLines(self.path))
        self.logger = logging.getLogger(_LOGGERS[1])
        self.at: datetime | None = None

    def _stamp(self, record: logging.LogRecord) -> bool:
        if self.at is not None:
            record.created = self.at.timestamp()
        return True

    @contextmanager
    def _attached(self, **labels: str | None) -> Iterator[None]:
        """The handler on the loggers for one line only: each `LogFile` gets its own lines."""
        loggers = [logging.getLogger(name) for name in _LOGGERS]
        levels = [logger.level for logger in loggers]
        for logger in loggers:
            logger.setLevel(logging.DEBUG)
            logger.addHandler(self.handler)
            logger.addFilter(self._stamp)
        try:
            with bound(function="run_batch", **labels):
                yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.removeFilter(self._stamp)
                logger.removeHandler(self.handler)
                logger.setLevel(level)

    def line(
        self,
        message: str,
        *,
        job: str | None = None,
        batch: str | None = None,
        level: int = logging.INFO,
        event: Event | None = None,
        **fields: Any,
    ) -> None:
        """One line; an event line when `event` is given (with `fields` in its payload)."""
        with self._attached(job_id=job, batch_id=batch):
            if event is not None:
                emit(event, message, level=level, **fields)
            else:
                self.logger.log(level, message)

    def error(self, message: str, *, job: str, batch: str | None = None) -> None:
        """An ERROR line with a traceback, as `log.exception` writes it."""
        with self._attached(job_id=job, batch_id=batch):
            try:
                raise ZeroDivisionError("division by zero")
            except ZeroDivisionError:
                self.logger.exception(message)

    def raw(self, data: bytes) -> None:
        """Bytes appended as a writer appends them (a line, or part of one)."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


LogFiles = Callable[[str], LogFile]


@pytest.fixture
def log_files(tmp_path: Path) -> LogFiles:
    """Makes a `LogFile` in a directory of the test's own."""
    return lambda name: LogFile(tmp_path / name)


@pytest.fixture
def log_file(tmp_path: Path) -> LogFile:
    return LogFile(tmp_path / "logs")
