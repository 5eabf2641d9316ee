"""Bad input gets a 4xx JSON error naming the problem, and creates nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.cli.client import ApiError, call
from functions.config import DispatchSettings
from functions.local.emulators import free_port_block
from functions.local.stack import LocalStack, StackConfig
from functions.queue.local import LocalTaskQueue
from tests.e2e.conftest import FAST_ENV, client_for

GOOD = {"source": "noop", "collection": "docs", "items": ["a", "b"], "batch_size": 1}
DOCS = {"source": "documents", "collection": "docs", "location": "samples/corpus"}
ALLOWED_BUCKET = "fanout-allowed"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("bad-input"),
        port_base=free_port_block(5),
        env={**FAST_ENV, "FANOUT_ALLOWED_BUCKETS": ALLOWED_BUCKET},
    )
    with LocalStack(config) as running:
        yield running


def _refused(
    method: str,
    url: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(method, url, body, raw=raw, headers=headers)
    error = caught.value
    assert 400 <= error.status < 500
    assert error.body["error"] and error.body["message"]
    return error


def _nothing_created(stack: LocalStack) -> None:
    assert client_for(stack).jobs()["total"] == 0
    assert sum(LocalTaskQueue(stack.sqlite_path, DispatchSettings()).counts().values()) == 0


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({k: v for k, v in GOOD.items() if k != "source"}, 400, "source"),
        ({**GOOD, "source": "nope"}, 400, "unknown source 'nope'"),
        ({**GOOD, "batch_size": 0}, 400, "batch_size"),
        ({**GOOD, "batch_size": 1001}, 400, "batch_size"),
        ({**GOOD, "items": None, "location": "/etc"}, 400, "outside the allowed roots"),
        ({**GOOD, "items": None, "location": "samples/../../etc"}, 400, "outside the allowed"),
        ({**GOOD, "callback_url": "http://example.com/cb"}, 400, "must use https"),
        (
            {**GOOD, "callback_url": "https://169.254.169.254/computeMetadata"},
            400,
            "internal address",
        ),
        ({**GOOD, "callback_url": "https://metadata.google.internal/x"}, 400, "metadata"),
        ({**GOOD, "callback_url": "https://10.1.2.3/cb"}, 400, "internal address"),
        ({**GOOD, "callback_url": "https://[fe80::1]/cb"}, 400, "internal address"),
        ({**GOOD, "options": {"delay_ms": -1}}, 400, "delay_ms"),
        ({**GOOD, "client_id": "c"}, 400, "client_id and request_id go together"),
        ({**GOOD, "surprise": 1}, 400, "surprise"),
        ({**DOCS, "collection": "../escape"}, 400, "collection"),
        ({**DOCS, "collection": "has space"}, 400, "collection"),
        ({**DOCS, "collection": "x" * 65}, 400, "collection"),
        ({**DOCS, "location": "gs://"}, 400, "not a valid gs:// URI"),
        ({**DOCS, "location": "gs://Upper_Case/x"}, 400, "not a valid gs:// URI"),
        ({**DOCS, "location": "gs://other-bucket/docs"}, 400, ALLOWED_BUCKET),
        ({**DOCS, "location": "s3://bucket/docs"}, 400, "unsupported scheme"),
        ({**DOCS, "options": {"chunk_size": 100}}, 400, "chunk_size"),
        ({**DOCS, "options": {"chunk_tokens": 0}}, 400, "chunk_tokens"),
        ({**DOCS, "options": {"chunk_tokens": 1_000_000}}, 400, "chunk_tokens"),
        ({**DOCS, "options": {"chunk_tokens": 64, "chunk_overlap": 60}}, 400, "chunk_overlap"),
        ({**DOCS, "options": {"embedder": "gpt"}}, 400, "embedder"),
        ({**DOCS, "max_batch_bytes": 10}, 400, "max_batch_bytes"),
        (
            {**DOCS, "location": None, "items": ["/etc/passwd"]},
            400,
            "outside the allowed roots",
        ),
        ({**DOCS, "location": None, "items": ["a.md"], "options": {"prune": True}}, 400, "prune"),
    ],
)
def test_bad_ingest_requests_are_refused(
    stack: LocalStack, body: dict[str, Any], status: int, says: str
) -> None:
    """Each invalid request gets its 4xx with a JSON body naming the problem."""
    error = _refused("POST", stack.url("ingest"), body=body)
    assert error.status == status
    assert says in str(error.body)
    _nothing_created(stack)


def test_malformed_and_oversized_bodies_are_refused(stack: LocalStack) -> None:
    """Not JSON, not an object, or over 1 MB: 400/413, nothing created."""
    assert "malformed JSON" in _refused("POST", stack.url("ingest"), raw=b"{nope").body["message"]
    assert _refused("POST", stack.url("ingest"), raw=b"[1]").status == 400
    big = {**GOOD, "items": ["x" * 1000] * 1100}
    assert _refused("POST", stack.url("ingest"), body=big).status == 413
    _nothing_created(stack)


def test_searching_a_collection_that_does_not_exist_is_404(stack: LocalStack) -> None:
    """Search: an unknown or impossible collection is 404, a bad query or k is 400."""
    api = stack.url("jobs_api")
    assert _refused("GET", f"{api}/collections/nothing/search?q=x").status == 404
    assert _refused("GET", f"{api}/collections/..%2Fetc/search?q=x").status == 404
    assert _refused("GET", f"{api}/collections/docs/search?q=x&k=zero").status == 400


def test_unknown_jobs_and_routes_are_404(stack: LocalStack, tmp_path: Path) -> None:
    """Unknown job ids and paths on the jobs API answer 404 JSON; bad queries 400."""
    api = stack.url("jobs_api")
    assert _refused("GET", f"{api}/jobs/20260101-000000-000000-deadbeef").status == 404
    assert _refused("POST", f"{api}/jobs/nope/cancel").status == 404
    assert _refused("GET", f"{api}/nothing-here").status == 404
    assert _refused("PUT", f"{api}/jobs").status == 405
    assert _refused("GET", f"{api}/jobs?status=bogus").status == 400
    assert _refused("GET", f"{api}/jobs?limit=0").status == 400
    assert _refused("GET", f"{api}/jobs?cursor=garbage").status == 400


def test_worker_call_without_the_secret_is_refused(stack: LocalStack) -> None:
    """run_batch refuses callers without the stack's shared secret (401)."""
    error = _refused("POST", stack.url("run_batch"), body={"batch_id": "x"})
    assert error.status == 401
    wrong = _refused(
        "POST",
        stack.url("run_batch"),
        body={"batch_id": "x"},
        headers={"X-Fanout-Worker-Secret": "guess"},
    )
    assert wrong.status == 401
    _nothing_created(stack)
