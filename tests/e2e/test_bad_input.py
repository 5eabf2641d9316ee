"""Bad input gets a 4xx JSON error naming the problem, and changes nothing: every refusal
here compares the stack's whole state directory before and after it."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.cli.client import ApiError, call
from functions.config import DispatchSettings
from functions.local.emulators import ROOT, free_port_block
from functions.local.stack import LocalStack, StackConfig
from functions.queue.local import LocalTaskQueue
from tests.e2e.conftest import FAST_ENV, client_for

GOOD = {"source": "noop", "collection": "docs", "items": ["a", "b"], "batch_size": 1}
DOCS = {"source": "documents", "collection": "docs", "location": "samples/corpus"}
ALLOWED_BUCKET = "fanout-allowed"
MISSING = str(ROOT / "samples" / "no-such-folder")
# `not_before`s outside the window, as the module is collected (its tests take minutes).
NOW = datetime.now(UTC)
PAST = (NOW - timedelta(hours=1)).isoformat()
TOO_FAR = (NOW + timedelta(days=31)).isoformat()
# A body whose options nest far past the limit (32), in about 2 KB.
DEEP = b'{"source": "noop", "collection": "docs", "items": ["a"], "options": {"x": ' + (
    b"[" * 1000 + b"]" * 1000 + b"}}"
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("bad-input"),
        port_base=free_port_block(5),
        env={**FAST_ENV, "FANOUT_ALLOWED_BUCKETS": ALLOWED_BUCKET},
    )
    with LocalStack(config) as running:
        # The first read creates the store's tables: state every later comparison starts from.
        client_for(running).jobs()
        yield running


def _rows(database: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table of the SQLite file `database`, read without writing."""
    if not database.exists():
        return {}
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(map(tuple, db.execute(f'SELECT * FROM "{t}"')), key=repr) for t in tables}


def _state(stack: LocalStack) -> dict[str, Any]:
    """The stack's state directory: each file's bytes (a FIFO or device by its type, never
    opened), each directory, and the SQLite database as its rows (its bytes and -wal/-shm
    change on reads). The logs are left out: they record each refusal."""
    state: dict[str, Any] = {"database rows": _rows(stack.sqlite_path)}
    for path in sorted(stack.state_dir.rglob("*")):
        if path.is_relative_to(stack.logs) or path.name.startswith(stack.sqlite_path.name):
            continue
        mode = path.lstat().st_mode
        name = str(path.relative_to(stack.state_dir))
        state[name] = path.read_bytes() if stat.S_ISREG(mode) else stat.S_IFMT(mode)
    return state


def _refused(
    stack: LocalStack,
    method: str,
    url: str,
    *,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> ApiError:
    before = _state(stack)
    with pytest.raises(ApiError) as caught:
        call(method, url, body, raw=raw, headers=headers)
    error = caught.value
    assert 400 <= error.status < 500
    assert error.body["error"] and error.body["message"]
    assert _state(stack) == before, f"{method} {url} changed the stack's state"
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
        ({**GOOD, "priority": "urgent"}, 400, "priority"),
        ({**GOOD, "priority": "HIGH"}, 400, "'high', 'normal' or 'low'"),
        ({**DOCS, "collection": "../escape"}, 400, "collection"),
        ({**DOCS, "collection": "has space"}, 400, "collection"),
        ({**DOCS, "collection": "x" * 65}, 400, "collection"),
        ({**DOCS, "location": "gs://"}, 400, "not a valid gs:// URI"),
        ({**DOCS, "location": "gs://Upper_Case/x"}, 400, "not a valid gs:// URI"),
        ({**DOCS, "location": "gs://other-bucket/docs"}, 400, ALLOWED_BUCKET),
        ({**DOCS, "location": "s3://bucket/docs"}, 400, "unsupported scheme"),
        ({**GOOD, "items": None, "items_from": "/etc/hostname"}, 400, "items_from '/etc/hostname'"),
        ({**GOOD, "items": None, "items_from": "gs://other-bucket/m.txt"}, 400, "items_from"),
        ({**GOOD, "items": None, "items_from": "samples"}, 400, "items_from 'samples' is not a"),
        ({**GOOD, "items_from": "samples/m.txt"}, 400, "one of items, location or items_from"),
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
        ({**DOCS, "collection": "probeA", "location": "/etc"}, 400, "outside the allowed roots"),
        ({**DOCS, "collection": "probeA", "location": MISSING}, 400, "does not exist"),
        ({**GOOD, "options": {"x": "y" * 20_000}}, 400, "the limit is 16384"),
        ({**GOOD, "options": {"fail_items_file": "/etc/passwd"}}, 400, "outside the allowed"),
        ({**GOOD, "options": {"fail_items_file": "/etc"}}, 400, "outside the allowed roots"),
        ({**GOOD, "options": {"fail_items_file": "/dev/zero"}}, 400, "outside the allowed"),
        ({**GOOD, "callback_url": "https://user:pw@example.com/cb"}, 400, "Fanout-Signature"),
        ({**GOOD, "not_before": PAST}, 400, "is in the past"),
        ({**GOOD, "not_before": TOO_FAR}, 400, "more than 30 days ahead"),
        ({**GOOD, "not_before": "2030-01-01T02:00:00"}, 400, "with an offset"),
        ({**GOOD, "not_before": "2030-01-01"}, 400, "'field': 'not_before'"),
        ({**GOOD, "not_before": "tomorrow"}, 400, "RFC 3339"),
        ({**GOOD, "not_before": 1893456000}, 400, "RFC 3339"),
    ],
)
def test_bad_ingest_requests_are_refused(
    stack: LocalStack, body: dict[str, Any], status: int, says: str
) -> None:
    """Each invalid request gets its 4xx with a JSON body naming the problem."""
    error = _refused(stack, "POST", stack.url("ingest"), body=body)
    assert error.status == status
    assert says in str(error.body)
    _nothing_created(stack)


def test_malformed_and_oversized_bodies_are_refused(stack: LocalStack) -> None:
    """Not JSON, not an object, or over 1 MB: 400/413, nothing created."""
    assert (
        "malformed JSON"
        in _refused(stack, "POST", stack.url("ingest"), raw=b"{nope").body["message"]
    )
    assert _refused(stack, "POST", stack.url("ingest"), raw=b"[1]").status == 400
    big = {**GOOD, "items": ["x" * 1000] * 1100}
    assert _refused(stack, "POST", stack.url("ingest"), body=big).status == 413
    _nothing_created(stack)


def test_searching_a_collection_that_does_not_exist_is_404(stack: LocalStack) -> None:
    """Search: an unknown or impossible collection is 404, a bad query or k is 400; so is
    one that only refused requests named (they made no empty collection)."""
    api = stack.url("jobs_api")
    for location in ("/etc", MISSING):
        body = {**DOCS, "collection": "probeA", "location": location}
        assert _refused(stack, "POST", stack.url("ingest"), body=body).status == 400
    assert _refused(stack, "GET", f"{api}/collections/probeA/search?q=x").status == 404
    assert _refused(stack, "GET", f"{api}/collections/nothing/search?q=x").status == 404
    assert _refused(stack, "GET", f"{api}/collections/..%2Fetc/search?q=x").status == 404
    assert _refused(stack, "GET", f"{api}/collections/docs/search?q=x&k=zero").status == 400


def test_unknown_jobs_and_routes_are_404(stack: LocalStack, tmp_path: Path) -> None:
    """Unknown job ids and paths on the jobs API answer 404 JSON; bad queries 400."""
    api = stack.url("jobs_api")
    assert _refused(stack, "GET", f"{api}/jobs/20260101-000000-000000-deadbeef").status == 404
    assert _refused(stack, "POST", f"{api}/jobs/nope/cancel").status == 404
    assert _refused(stack, "GET", f"{api}/nothing-here").status == 404
    assert _refused(stack, "PUT", f"{api}/jobs").status == 405
    assert _refused(stack, "GET", f"{api}/jobs?status=bogus").status == 400
    assert _refused(stack, "GET", f"{api}/jobs?limit=0").status == 400
    assert _refused(stack, "GET", f"{api}/jobs?cursor=garbage").status == 400


def test_worker_call_without_the_secret_is_refused(stack: LocalStack) -> None:
    """run_batch refuses callers without the stack's shared secret (401)."""
    error = _refused(stack, "POST", stack.url("run_batch"), body={"batch_id": "x"})
    assert error.status == 401
    wrong = _refused(
        stack,
        "POST",
        stack.url("run_batch"),
        body={"batch_id": "x"},
        headers={"X-Fanout-Worker-Secret": "guess"},
    )
    assert wrong.status == 401
    _nothing_created(stack)


def test_callback_url_with_credentials_is_refused_without_echoing_them(stack: LocalStack) -> None:
    """Credentials in callback_url are refused (400) pointing at the signature instead; the
    answer does not repeat them, and no job keeps them."""
    body = {**GOOD, "callback_url": "https://alice:s3cret@example.com/cb?x=1"}
    error = _refused(stack, "POST", stack.url("ingest"), body=body)
    assert error.status == 400
    assert "credentials" in error.body["message"] and "Fanout-Signature" in error.body["message"]
    assert "s3cret" not in json.dumps(error.body) and "alice" not in json.dumps(error.body)
    _nothing_created(stack)


def test_fail_items_file_must_be_a_small_regular_file(stack: LocalStack) -> None:
    """noop's fail_items_file inside the allowed roots is refused at submit when it is a
    directory, a FIFO (without blocking on it) or over 1 MiB."""
    fifo = stack.state_dir / "items.fifo"
    os.mkfifo(fifo)
    big = stack.state_dir / "big-items.txt"
    big.write_bytes(b"a\n" * (600 * 1024))
    for path, says in [
        (stack.state_dir, "not a regular file"),
        (fifo, "not a regular file"),
        (big, "over 1048576 bytes"),
    ]:
        body = {**GOOD, "options": {"fail_items_file": str(path)}}
        error = _refused(stack, "POST", stack.url("ingest"), body=body)
        assert error.status == 400 and says in error.body["message"], error.body
    _nothing_created(stack)


def test_deeply_nested_bodies_are_refused_naming_the_limit(stack: LocalStack) -> None:
    """A small body nested a thousand levels deep is a 400 naming the depth limit, on every
    function that reads a JSON body, and not a 500."""
    worker = {"X-Fanout-Worker-Secret": stack.secret}
    for url, headers in [
        (stack.url("ingest"), None),
        (stack.url("run_batch"), worker),
        (stack.url("cleanup_jobs"), None),
    ]:
        error = _refused(stack, "POST", url, raw=DEEP, headers=headers)
        assert error.status == 400 and "the limit is 32" in error.body["message"], url
    _nothing_created(stack)


def _push_refused(stack: LocalStack, data: bytes, message_id: str) -> list[str]:
    """Push `data` as a Pub/Sub message: acknowledged (200, no redelivery), changing
    nothing. The ingest_pubsub log lines naming the message."""
    event = {
        "message": {"data": base64.b64encode(data).decode(), "messageId": message_id},
        "subscription": "projects/p/subscriptions/s",
    }
    headers = {
        "ce-id": message_id,
        "ce-source": "//pubsub.googleapis.com/projects/p/topics/t",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-specversion": "1.0",
    }
    before = _state(stack)
    status, _ = call("POST", stack.url("ingest_pubsub"), event, headers=headers)
    assert status == 200
    assert _state(stack) == before
    # The function's own log (its stdout) and the stack's structured log, both written
    # before it answered.
    log = "".join((stack.logs / name).read_text() for name in ("ingest_pubsub.log", "fanout.jsonl"))
    return [line for line in log.splitlines() if message_id in line]


def test_deeply_nested_pubsub_message_is_acknowledged_and_logged(stack: LocalStack) -> None:
    """A Pub/Sub message nested past the limit is acknowledged (200, no redelivery), logged
    naming the limit without a traceback, and changes nothing."""
    lines = _push_refused(stack, DEEP, "deep-1")
    assert any("the limit is 32" in line for line in lines), lines
    log = (stack.logs / "ingest_pubsub.log").read_text()
    assert "Traceback" not in log and "RecursionError" not in log
    _nothing_created(stack)


def test_an_unknown_priority_is_refused_by_every_door(stack: LocalStack) -> None:
    """`GET /jobs?priority=` with an unknown class is a 400 naming the parameter; a Pub/Sub
    request with one is acknowledged (no redelivery), logged naming the field, and creates
    nothing, as ingest's 400 does."""
    error = _refused(stack, "GET", f"{stack.url('jobs_api')}/jobs?priority=urgent")
    assert error.status == 400 and "priority" in str(error.body)
    data = json.dumps({**GOOD, "priority": "urgent"}).encode()
    lines = _push_refused(stack, data, "urgent-1")
    says = "Input should be 'high', 'normal' or 'low'"
    assert any("priority" in line and says in line for line in lines), lines


def test_a_pubsub_message_with_a_bad_not_before_is_refused_by_name(stack: LocalStack) -> None:
    """Through Pub/Sub as over HTTP: a `not_before` in the past or not RFC 3339 is logged
    naming the field, acknowledged, and creates nothing."""
    for message_id, not_before, says in [
        ("nb-past", PAST, "in the past"),
        ("nb-naive", "2030-01-01T02:00:00", "RFC 3339"),
    ]:
        body = json.dumps({**GOOD, "not_before": not_before}).encode()
        lines = _push_refused(stack, body, message_id)
        assert any("not_before" in line and says in line for line in lines), lines
    _nothing_created(stack)
