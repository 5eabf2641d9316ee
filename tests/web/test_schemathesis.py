"""schemathesis, a third-party API fuzzer, against the live local jobs_api and ingest: every
operation of /openapi.json, with requests generated from the document itself, must answer
without a server error, with a documented status, a documented content type and a body
that matches the documented schema."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis import APIOperation, BaseSchema
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import load_all_checks
from schemathesis.core.result import Ok

from functions.cli.client import ApiError, FanoutClient
from functions.local.stack import LocalStack
from tests.e2e.conftest import client_for, wait_for, wait_terminal

# Examples per strategy: each operation gets this many requests generated from the document
# alone; the operations on a job, on a collection, and ingest get as many again aimed at
# real data (jobs that exist in each status, a collection with chunks, valid requests).
EXAMPLES = 50
load_all_checks()
# Every check schemathesis has: no server error; the answer's status, content type,
# headers and body as documented; a request the document allows is accepted (no 400, 415,
# ...); invalid ones refused; a missing required header, an undocumented method (405 with
# Allow); use after delete; resources available; auth.
CHECKS = REGISTERED_CHECKS.get_all()
COLLECTION = "fuzzed"
Operation = APIOperation[Any, Any, Any, Any]


def _jobs_in_every_state(stack: LocalStack, client: FanoutClient) -> list[str]:
    """A completed job, a failed one, a cancelled one and one still running."""
    fail = stack.state_dir / "fail.txt"
    fail.write_text("b\n")
    noop: dict[str, Any] = {"source": "noop", "collection": "docs", "batch_size": 1}
    completed = client.submit({**noop, "items": ["a", "b", "c"]})["job_id"]
    failed = client.submit(
        {**noop, "items": ["a", "b"], "options": {"fail_items_file": str(fail)}}
    )["job_id"]
    # One batch that takes a minute: running throughout, holding one worker thread only,
    # and stopping within a second of its job's cancellation.
    slow = {**noop, "items": [f"i{n}" for n in range(60)], "batch_size": 60}
    slow["options"] = {"delay_ms": 1000}
    cancelled, running = client.submit(slow)["job_id"], client.submit(slow)["job_id"]
    client.cancel(cancelled)
    assert wait_terminal(client, completed)["status"] == "completed"
    assert wait_terminal(client, failed)["status"] == "failed"
    return [completed, failed, cancelled, running]


def _collection_with_chunks(stack: LocalStack, client: FanoutClient) -> str:
    """A small collection to search, full text only (the stack embeds nothing)."""
    corpus = stack.state_dir / "corpus"
    corpus.mkdir()
    (corpus / "cancel.md").write_text("# Cancelling\n\nA cancelled job stops its batches.\n")
    (corpus / "retry.md").write_text("# Retrying\n\nRetry runs the failed batches again.\n")
    job = client.submit({"source": "documents", "collection": COLLECTION, "location": str(corpus)})
    assert wait_terminal(client, job["job_id"])["status"] == "completed"
    wait_for(lambda: client.search(COLLECTION, "cancelled")["hits"], what="a searchable hit")
    return COLLECTION


def _valid_ingest_requests() -> st.SearchStrategy[dict[str, Any]]:
    """Requests ingest accepts (the document cannot say that `source` must be a registered
    processor, or that items and location exclude each other)."""
    return st.fixed_dictionaries(
        {
            "source": st.just("noop"),
            "collection": st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z"),
            "items": st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5),
            "batch_size": st.integers(1, 1000),
        },
        optional={
            "options": st.fixed_dictionaries({"delay_ms": st.integers(0, 20)}),
            "client_id": st.just("fuzzer"),
        },
    ).map(_with_request_id)


def _with_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """A client_id goes with a request_id; one per collection makes some submits repeats."""
    if "client_id" not in body:
        return body
    return body | {"request_id": f"r-{body['collection']}"}


def operations_of(schema: BaseSchema) -> list[Operation]:
    """Every operation of `schema`; it fails if schemathesis cannot build one."""
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result.err()
        operations.append(result.ok())
    return operations


def _run(strategy: st.SearchStrategy[Any], send: Callable[[Any], None]) -> None:
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[hypothesis.Phase.generate],  # no shrinking: each request has effects
        suppress_health_check=list(hypothesis.HealthCheck),
    )
    @hypothesis.given(strategy)
    def fuzz(case: Any) -> None:
        send(case)

    fuzz()


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(
    stack: LocalStack, document: dict[str, Any], stack_logs_on_failure: None
) -> None:
    """Each operation of the document (the JSON API, the document routes, ingest and the
    pages) gets up to 50 requests generated from the document; the operations on a job
    get up to 50 more on real jobs (completed, failed, cancelled, running), search and the
    collection page 50 more on a real collection, and ingest 50 valid requests (new jobs).
    That is about 670 requests on the 11 operations of the API and ingest, and 1,400 with
    the 11 pages, in under 10 s (at least 500 are required). Every one of schemathesis'
    checks holds on every answer: a documented status, content type, headers and body, no
    5xx, and no request the document allows refused."""
    client = client_for(stack)
    prepared = time.monotonic()
    jobs = _jobs_in_every_state(stack, client)
    collection = _collection_with_chunks(stack, client)
    print(f"jobs and collection ready in {time.monotonic() - prepared:.1f} s")
    # From the served document: from_url would leave out the route that serves it. Loaded
    # so, only a path's own server (ingest's) is absolute; the rest go to the jobs API.
    schema = schemathesis.openapi.from_dict(document)
    # Deleting comes last, so that the other operations meet jobs in every state.
    operations = sorted(operations_of(schema), key=lambda op: op.method.upper() == "DELETE")
    sent: Counter[str] = Counter()
    answered: Counter[tuple[str, int]] = Counter()
    session = requests.Session()
    started = time.monotonic()

    def send(case: Any) -> None:
        case = _as_issued(case, str(stack.state_dir / "corpus"))
        base = case.operation.base_url
        base = base if base.startswith("http") else stack.url("jobs_api")
        response = case.call(base_url=base, session=session, timeout=30)
        sent[case.operation.label] += 1
        answered[(case.operation.label, response.status_code)] += 1
        case.validate_response(response, checks=CHECKS)

    for operation in operations:
        _run(operation.as_strategy(), send)
        path_parameters = {p.name for p in operation.path_parameters}
        if "job_id" in path_parameters:
            on_jobs = [operation.as_strategy(path_parameters={"job_id": job}) for job in jobs]
            _run(st.one_of(on_jobs), send)
        if "name" in path_parameters:  # a collection's name
            _run(operation.as_strategy(path_parameters={"name": collection}), send)
        if operation.label == "POST /":
            _run(_valid_ingest_requests().flatmap(_body_for(operation)), send)

    elapsed = time.monotonic() - started
    with contextlib.suppress(ApiError):  # the fuzzer may have cancelled it already
        client.cancel(jobs[-1])  # so that the stack stops at once
    print(f"schemathesis: {sum(sent.values())} requests in {elapsed:.1f} s: {dict(sent)}")
    assert {op.label for op in operations} == set(sent), "an operation got no request"
    assert sum(sent.values()) >= 500
    # The aimed requests reached real data: new jobs, real jobs and real hits.
    for label, status in [
        ("POST /", 202),
        ("GET /jobs/{job_id}", 200),
        ("GET /jobs/{job_id}/batches", 200),
        ("GET /jobs/{job_id}/logs", 200),
        ("GET /collections/{name}/search", 200),
    ]:
        assert answered[(label, status)] > 0, (label, status, answered)


def _as_issued(case: Any, root: str) -> Any:
    """What the document says in words, not in a schema, made true of a generated request
    (schemathesis' advice when valid-looking input is refused: extend the generators). A
    cursor is one a listing issued: a string drawn from its pattern is not (and is refused,
    as documented), so generated ones are left out. What ingest takes from a deployment's
    configuration: items and a location under its allowed roots (`documents` requests go
    to `noop`, which takes any item; `root` is an allowed location, its files manifests),
    each source's own options (none here), a callback URL it would call (https, a public
    host: none), and a `not_before` within its window from now (an hour ahead: the job is
    scheduled; not with `items_from`, which refuses it). The source itself stays as drawn:
    the document lists the registered ones."""
    if case.query:
        case.query.pop("cursor", None)
    if isinstance(case.body, dict) and "source" in case.body:
        if case.body["source"] == "documents":
            case.body["source"] = "noop"
        case.body.pop("options", None)
        case.body.pop("callback_url", None)
        if isinstance(case.body.get("location"), str):
            case.body["location"] = root
        if isinstance(case.body.get("not_before"), str):
            case.body["not_before"] = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        if isinstance(case.body.get("items_from"), str):  # a file there, read as a manifest
            case.body["items_from"] = f"{root}/cancel.md"
            case.body.pop("not_before", None)
    return case


def _body_for(operation: Operation) -> Callable[[Any], st.SearchStrategy[Any]]:
    return lambda body: operation.as_strategy(body=body)


def test_the_fuzzer_is_pointed_at_both_functions(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """Pointed at the served document, schemathesis sends ingest's requests to the ingest
    function's URL (the path's own server) and the rest to the jobs API's."""
    schema = schemathesis.openapi.from_url(stack.url("jobs_api") + "/openapi.json")
    bases = {op.label: str(op.base_url) for op in operations_of(schema)}
    assert bases.pop("POST /") == stack.url("ingest")
    assert {base.rstrip("/") for base in bases.values()} == {stack.url("jobs_api")}
