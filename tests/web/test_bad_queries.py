"""Bad query strings on the live jobs API: wrong types, unknown statuses, unknown parameters
and huge values get a 400 in the one error shape, naming the parameter, and change nothing."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from functions.cli.client import ApiError, FanoutClient, call
from functions.local.stack import LocalStack
from tests.e2e.conftest import all_batches, client_for, wait_terminal

HUGE = "9" * 40
LONG = "x" * 5000

JOB_LIST = [
    ("status=bogus", "status"),
    ("status=running,bogus", "status"),
    ("status=failed&status=RUNNING", "status"),
    ("status=1", "status"),
    ("limit=ten", "limit"),
    ("limit=0", "limit"),
    ("limit=201", "limit"),
    ("limit=-1", "limit"),
    ("limit=2.5", "limit"),
    (f"limit={HUGE}", "limit"),
    ("limit=1&limit=2", "limit"),
    (f"cursor={LONG}", "cursor"),
    (f"source={LONG}", "source"),
    (f"client_id={LONG}", "client_id"),
    ("stauts=failed", "stauts"),
    ("page=2", "page"),
]
BATCH_LIST = [
    ("status=done", "status"),
    ("status=failed,completed", "status"),
    ("status=failed&status=completed", "status"),
    ("limit=many", "limit"),
    ("limit=0", "limit"),
    (f"limit={HUGE}", "limit"),
    (f"cursor={LONG}", "cursor"),
    ("offset=10", "offset"),
]


@pytest.fixture(scope="module")
def jobs(stack: LocalStack) -> list[str]:
    """Two finished jobs (one failed), so nothing changes unless a request changes it."""
    client = client_for(stack)
    fail = stack.state_dir / "fail.txt"
    fail.write_text("b\n")
    noop: dict[str, Any] = {"source": "noop", "collection": "docs", "batch_size": 1}
    ids = [
        client.submit({**noop, "items": ["a", "b", "c"]})["job_id"],
        client.submit({**noop, "items": ["a", "b"], "options": {"fail_items_file": str(fail)}})[
            "job_id"
        ],
    ]
    for job_id in ids:
        wait_terminal(client, job_id)
    return ids


def _everything(client: FanoutClient) -> dict[str, Any]:
    """Every job and every batch, as the API shows them."""
    listed = client.jobs(limit="200")
    return {
        "jobs": listed,
        "batches": {job["job_id"]: all_batches(client, job["job_id"]) for job in listed["jobs"]},
    }


def _refused(url: str) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        call("GET", url)
    assert caught.value.status == 400, (url, caught.value.body)
    return dict(caught.value.body)


@pytest.mark.parametrize(
    ("listing", "query", "parameter"),
    [("jobs", query, parameter) for query, parameter in JOB_LIST]
    + [("batches", query, parameter) for query, parameter in BATCH_LIST],
)
def test_a_bad_query_is_a_400_naming_the_parameter_and_changes_nothing(
    stack: LocalStack,
    document: dict[str, Any],
    jobs: list[str],
    listing: str,
    query: str,
    parameter: str,
) -> None:
    """The answer is the documented ErrorBody: InvalidArgument, the parameter named in the
    message and in `problems` with what is wrong; no job or batch changed."""
    client = client_for(stack)
    before = _everything(client)
    api = stack.url("jobs_api")
    path = "/jobs" if listing == "jobs" else f"/jobs/{jobs[1]}/batches"

    error = _refused(f"{api}{path}?{query}")

    validator = jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/ErrorBody", "components": document["components"]}
    )
    validator.validate(error)
    assert error["error"] == "InvalidArgument"
    assert parameter in error["message"].removeprefix("invalid request: ").split(", ")
    named = [p for p in error["problems"] if p["field"].split(".")[0] == parameter]
    assert named and all(p["problem"] for p in named), error
    assert _everything(client) == before


def test_an_unknown_status_names_the_statuses_there_are(stack: LocalStack) -> None:
    """The problem says what the parameter takes."""
    error = _refused(stack.url("jobs_api") + "/jobs?status=bogus")
    (problem,) = error["problems"]
    assert problem["field"] == "status.0"
    for status in ("pending", "running", "completed", "failed", "cancelled"):
        assert status in problem["problem"]


def test_a_cursor_the_store_did_not_make_is_refused(stack: LocalStack, jobs: list[str]) -> None:
    """A well-formed but foreign cursor gets past validation; the store refuses it: 400
    InvalidCursor, in the same shape, and the listing is unchanged."""
    client = client_for(stack)
    before = _everything(client)
    api = stack.url("jobs_api")
    for url in (f"{api}/jobs?cursor=garbage", f"{api}/jobs/{jobs[0]}/batches?cursor=garbage"):
        error = _refused(url)
        assert error["error"] == "InvalidCursor" and "'garbage'" in error["message"]
    assert _everything(client) == before


def test_bad_search_and_log_queries_are_400_too(stack: LocalStack, jobs: list[str]) -> None:
    """The same for the other query strings: search's k, q (too long, only quotes) and by,
    the logs' limit, severity and unknown parameters."""
    api = stack.url("jobs_api")
    cases = {
        f"{api}/collections/docs/search?q=x&k=zero": "k",
        f"{api}/collections/docs/search?q=x&k=51": "k",
        f"{api}/collections/docs/search?q={LONG}": "q",
        f"{api}/collections/docs/search?q={'x' * 10_000}": "q",
        f"{api}/collections/docs/search?q=%22": "q",
        f"{api}/collections/docs/search?q=%22%22%20%22%22": "q",
        f"{api}/collections/docs/search?q=%E2%80%9C%E2%80%9D": "q",
        f"{api}/collections/docs/search?q=%C2%85": "q",  # NEL: str.strip() removes it
        f"{api}/collections/docs/search?q=x&by=page": "by",
        f"{api}/collections/docs/search": "q",
        f"{api}/jobs/{jobs[0]}/logs?limit={HUGE}": "limit",
        f"{api}/jobs/{jobs[0]}/logs?severity=LOUD": "severity",
        f"{api}/jobs/{jobs[0]}/logs?level=ERROR": "level",
    }
    for url, parameter in cases.items():
        error = _refused(url)
        assert error["error"] == "InvalidArgument"
        assert [p["field"] for p in error["problems"]] == [parameter], (url, error)


def test_the_documented_search_text_refuses_every_string_the_server_strips_to_nothing(
    document: dict[str, Any],
) -> None:
    """`q`'s pattern in the document, read as OpenAPI's readers read it (ECMA-262, whose
    \\s is not Python's), refuses each character str.strip() removes, which the server
    refuses as nothing to search for: a client that checks its request against the
    document is never refused for a query the document allows."""
    search = document["paths"]["/collections/{name}/search"]["get"]
    (q,) = [p for p in search["parameters"] if p["name"] == "q"]
    validator = jsonschema_rs.Draft202012Validator(q["schema"])
    stripped = [chr(c) for c in range(0x110000) if not chr(c).strip()]
    assert len(stripped) > 20  # Unicode's whitespace, not just ASCII's
    assert [hex(ord(c)) for c in stripped if validator.is_valid(c)] == []
