"""Fixtures for the HTTP edge's tests: a live local stack per test module, and its
OpenAPI document as the running jobs_api serves it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from functions.cli.client import call
from functions.local.stack import LocalStack
from tests.e2e.conftest import FAST_ENV, print_logs, shared_stack
from tests.support.background_stops import stop_in_background
from tests.support.reports import failed

# No embedding model: a `documents` job (the fuzzer's, or a test's) embeds nothing, and
# search is full-text only.
WEB_ENV = {**FAST_ENV, "FANOUT_EMBEDDER": "none"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """One stack for the module's tests, which do not interfere with each other."""
    running = shared_stack(tmp_path_factory, "web", WEB_ENV)
    yield running
    stop_in_background(running)  # its tests print its logs when they fail


@pytest.fixture
def stack_logs_on_failure(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[None]:
    """Print the stack's process logs when the test fails (CI keeps no files)."""
    yield
    if failed(request.node):
        print_logs(stack)


@pytest.fixture(scope="module")
def document(stack: LocalStack) -> dict[str, Any]:
    status, body = call("GET", stack.url("jobs_api") + "/openapi.json")
    assert status == 200 and isinstance(body, dict)
    return body
