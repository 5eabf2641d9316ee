"""Stacks stopped behind the tests: a stack's stop is mostly waiting (gunicorn's graceful
shutdown, about 2 s), so a passing test hands it to a thread and the next test starts at
once. The session waits for every stop before it ends, and reports one that failed."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from functions.local.stack import LocalStack

_STOPPER = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stack-stop")
_PENDING: list[Future[None]] = []


def stop_in_background(stack: LocalStack) -> None:
    _PENDING.append(_STOPPER.submit(stack.stop))


def pytest_sessionfinish(session: pytest.Session) -> None:
    _STOPPER.shutdown(wait=True)
    errors = [error for future in _PENDING if (error := future.exception()) is not None]
    if errors:
        session.shouldfail = f"{len(errors)} stack(s) failed to stop: {errors[0]!r}"
