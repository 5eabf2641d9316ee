"""The contract: /openapi.json documents exactly the routes the code registers (jobs_api's
and ingest's, each at its own server), every documented operation answers on a live stack,
the document is valid OpenAPI 3.1, every error has its one shape, and /docs shows it all to
people without fetching anything."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import jsonschema_rs
import pytest
import schemathesis
from schemathesis.core.result import Ok
from werkzeug.exceptions import RequestEntityTooLarge

from functions.cli.client import ApiError, call
from functions.config import Settings
from functions.local.stack import LocalStack
from functions.web.app import ingest_router, web_router
from functions.web.http import handle_errors
from functions.web.openapi import openapi_path
from functions.web.routes import Router
from tests.e2e.conftest import client_for
from tests.support.services import sqlite_service

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}
# Well formed, and no job has it.
NO_SUCH_JOB = "20260101-000000-000000-00000000"

Operation = tuple[str, str, str]  # (server URL, METHOD, OpenAPI path)


@pytest.fixture
def routers(tmp_path: Path, stack: LocalStack) -> Iterator[tuple[Router, Router]]:
    """The routers the stack's jobs_api and ingest build, from the same code."""
    settings = Settings(
        sqlite_path=tmp_path / "fanout.sqlite3",
        api_url=stack.url("jobs_api"),
        ingest_url=stack.url("ingest"),
    )
    with sqlite_service(settings) as service:
        yield web_router(service), ingest_router(service)


def documented(document: dict[str, Any]) -> dict[Operation, dict[str, Any]]:
    """Every operation of the document, keyed by where it is served and how."""
    default = document["servers"][0]["url"]
    operations = {}
    for path, item in document["paths"].items():
        path_server = item["servers"][0]["url"] if item.get("servers") else default
        for method, operation in item.items():
            if method in HTTP_METHODS:
                server = operation["servers"][0]["url"] if operation.get("servers") else path_server
                operations[(server, method.upper(), path)] = operation
    return operations


def test_every_registered_route_is_documented_and_nothing_else(
    stack: LocalStack, document: dict[str, Any], routers: tuple[Router, Router]
) -> None:
    """The operations of /openapi.json are exactly the routes the routers register, with
    the same methods: jobs_api's at the API URL, ingest's at the ingest URL."""
    api, ingest = routers
    registered = {
        (stack.url("jobs_api"), route.method, openapi_path(route.path)) for route in api.routes
    } | {(stack.url("ingest"), route.method, openapi_path(route.path)) for route in ingest.routes}
    assert set(documented(document)) == registered
    # Spot checks that the comparison compares something.
    assert (stack.url("ingest"), "POST", "/") in registered
    assert (stack.url("jobs_api"), "GET", "/jobs/{job_id}") in registered
    assert (stack.url("jobs_api"), "GET", "/openapi.json") in registered


def test_every_documented_operation_exists_on_the_live_stack(
    document: dict[str, Any],
) -> None:
    """Each documented method and path, requested on its server, reaches a handler: any
    answer but the edge's route-not-found 404 or method-not-allowed 405."""
    for (server, method, path), operation in documented(document).items():
        url = server + re.sub(r"\{\w+\}", NO_SUCH_JOB, path)
        body: dict[str, Any] | None = {} if "requestBody" in operation else None
        status, answer = _answer(method, url, body)
        assert not isinstance(answer, dict) or answer.get("error") not in {
            "RouteNotFound",
            "MethodNotAllowedError",
        }, (method, url, answer)
        assert status != 405, (method, url)


def _answer(method: str, url: str, body: Any) -> tuple[int, Any]:
    """The status and decoded body of any answer, error or not."""
    try:
        return call(method, url, body)
    except ApiError as error:
        return error.status, dict(error.body)


def test_the_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    """The OpenAPI 3.1 meta-schema accepts the document, every component schema is a valid
    JSON Schema (2020-12), and schemathesis builds every operation from it."""
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    schema.validate()
    for name, component in document["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(component), name
    results = list(schema.get_all_operations())
    assert all(isinstance(result, Ok) for result in results)
    assert len(results) == len(documented(document))


def _error_validator(document: dict[str, Any]) -> jsonschema_rs.Validator:
    return jsonschema_rs.Draft202012Validator(
        {"$ref": "#/components/schemas/ErrorBody", "components": document["components"]}
    )


def test_every_error_answers_the_one_documented_shape(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """Invalid input (400, with its problems), a missing secret (401), no such route (404),
    a wrong method (405), a body too large (413): each body is an ErrorBody."""
    validator = _error_validator(document)
    api = stack.url("jobs_api")
    big = {"source": "noop", "collection": "docs", "items": ["x" * 1000] * 1100}
    cases = [
        ("GET", f"{api}/jobs?limit=many", None, 400, "InvalidArgument"),
        ("POST", stack.url("ingest"), {"source": "noop"}, 400, "InvalidArgument"),
        ("POST", stack.url("run_batch"), {"batch_id": "x"}, 401, "Unauthorized"),
        ("GET", f"{api}/nothing-here", None, 404, "RouteNotFound"),
        ("GET", f"{api}/jobs/{NO_SUCH_JOB}", None, 404, "JobNotFound"),
        ("PUT", f"{api}/jobs", None, 405, "MethodNotAllowedError"),
        ("GET", stack.url("ingest"), None, 405, "MethodNotAllowedError"),
        ("POST", stack.url("ingest"), big, 413, "PayloadTooLarge"),
    ]
    for method, url, body, status, error in cases:
        with pytest.raises(ApiError) as caught:
            call(method, url, body)
        answer = caught.value
        assert (answer.status, answer.body["error"]) == (status, error), (method, url)
        validator.validate(dict(answer.body))
    limit = call_error("GET", f"{api}/jobs?limit=many")
    assert [p["field"] for p in limit["problems"]] == ["limit"]
    assert limit["message"] == "invalid request: limit"


def call_error(method: str, url: str) -> dict[str, Any]:
    with pytest.raises(ApiError) as caught:
        call(method, url)
    return dict(caught.value.body)


@pytest.mark.parametrize(
    ("raised", "status", "body"),
    [
        (
            ZeroDivisionError("secret detail"),
            500,
            {"error": "InternalError", "message": "internal error"},
        ),
        (
            RequestEntityTooLarge("form too large"),
            413,
            {"error": "RequestEntityTooLarge", "message": "form too large"},
        ),
    ],
)
def test_a_crash_or_a_refusal_by_werkzeug_answers_the_error_shape(
    document: dict[str, Any], raised: Exception, status: int, body: dict[str, str]
) -> None:
    """What no handler turned into a typed error still answers an ErrorBody: a crash is a
    500 that tells nothing of the exception; what werkzeug refuses while reading the request
    keeps its status."""

    def fails(request: flask.Request) -> flask.Response:
        raise raised

    with flask.Flask(__name__).test_request_context("/jobs"):
        response = handle_errors(fails)(flask.request)
    assert response.status_code == status and response.mimetype == "application/json"
    answer = response.get_json()
    _error_validator(document).validate(answer)
    assert answer == body


def test_the_reference_page_shows_every_operation_and_fetches_nothing(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """/docs is one HTML page rendered by the server: every operation with its parameters,
    body and answers, the error shape; no script, and no resource from anywhere else."""
    status, page = call("GET", stack.url("jobs_api") + "/docs")
    assert status == 200 and isinstance(page, str) and page.startswith("<!doctype html>")
    for (_, method, path), operation in documented(document).items():
        assert f'id="{operation["operationId"]}"' in page
        assert f"{method}</span> <code>{path}</code>" in page
        for parameter in operation.get("parameters", []):
            assert f"<code>{parameter['name']}</code>" in page, (path, parameter["name"])
    assert stack.url("ingest") in page  # where ingest is served
    for field in ("error", "message", "problems"):
        assert f"<code>{field}</code>" in page
    assert "&#34;problems&#34;: [" in page  # a real error body, escaped
    assert "<script" not in page.lower()
    assert re.findall(r'(?:src|href)="(?!#|openapi\.json")[^"]*"', page) == []


def _raw(
    method: str, url: str, data: bytes | None, headers: dict[str, str]
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Status, JSON body and headers of a request sent exactly as given."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read()), dict(error.headers)


def _running_job(stack: LocalStack) -> str:
    """A job whose one batch runs for a minute (cancelled by the caller at the end)."""
    slow: dict[str, Any] = {"source": "noop", "collection": "docs", "batch_size": 60}
    slow |= {"items": [f"i{n}" for n in range(60)], "options": {"delay_ms": 1000}}
    _, accepted = call("POST", stack.url("ingest"), slow)
    return str(accepted["job_id"])


def test_state_changing_api_calls_from_another_site_are_refused(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """A browser on another site cannot cancel, retry or delete a job: a foreign Origin or
    a cross-site/same-site Sec-Fetch-Site is a 403, a form's content type a 415, each in the
    error shape, and the job keeps running; the CLI's own cancel still works."""
    validator = _error_validator(document)
    job = _running_job(stack)
    cancel = f"{stack.url('jobs_api')}/jobs/{job}/cancel"
    form = {"Content-Type": "text/plain"}
    json_type = {"Content-Type": "application/json"}
    refusals = [
        ("POST", cancel, {**form, "Origin": "http://evil.example"}, 403, "CrossSiteRequest"),
        ("POST", cancel, {**json_type, "Origin": "http://evil.example"}, 403, "CrossSiteRequest"),
        ("POST", cancel, {**json_type, "Sec-Fetch-Site": "cross-site"}, 403, "CrossSiteRequest"),
        ("POST", cancel, {**json_type, "Sec-Fetch-Site": "same-site"}, 403, "CrossSiteRequest"),
        ("POST", cancel, form, 415, "UnsupportedMediaType"),
        ("POST", cancel, {}, 415, "UnsupportedMediaType"),
        ("POST", cancel.replace("/cancel", "/retry"), form, 415, "UnsupportedMediaType"),
        ("DELETE", cancel.removesuffix("/cancel"), form, 415, "UnsupportedMediaType"),
    ]
    for method, url, headers, status, error in refusals:
        got, body, _ = _raw(method, url, b"{}" if headers else None, headers)
        assert (got, body["error"]) == (status, error), (method, headers, body)
        validator.validate(body)
    assert client_for(stack).job(job)["status"] == "running"
    assert client_for(stack).cancel(job)["status"] == "cancelled"  # no body, JSON type


@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b'{"source": "noop"}'),
        (None, b'{"source": "noop"}'),
        ("application/x-www-form-urlencoded", b"source=noop"),
        ("application/json; charset=utf-16", '{"source": "noop"}'.encode("utf-16")),
        ("application/json", '{"source": "noop"}'.encode("utf-16-le")),
        ("application/json", b'\xef\xbb\xbf{"source": "noop"}'),
    ],
)
def test_ingest_takes_only_utf8_json(
    stack: LocalStack, document: dict[str, Any], content_type: str | None, data: bytes
) -> None:
    """ingest answers 415, in the error shape, to a body that is not UTF-8 JSON declared as
    application/json: text/plain, no Content-Type, a form, UTF-16, a BOM."""
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, body, _ = _raw("POST", stack.url("ingest"), data, headers)
    assert (status, body["error"]) == (415, "UnsupportedMediaType"), body
    _error_validator(document).validate(body)


def test_the_edge_answers_json_404_and_405_with_allow(
    stack: LocalStack, document: dict[str, Any]
) -> None:
    """A path no rule of the Functions Framework matches (a newline in it), a path with no
    route, and a wrong method all answer the JSON error shape; a 405 names the methods the
    path takes in its Allow header."""
    validator = _error_validator(document)
    api = stack.url("jobs_api")
    for path in ("/jobs/a%0Ab", "/robots.txt", "/nothing-here"):
        status, body, headers = _raw("GET", api + path, None, {})
        assert (status, body["error"]) == (404, "RouteNotFound"), path
        assert headers["Content-Type"] == "application/json"
        validator.validate(body)
    status, body, headers = _raw("PUT", f"{api}/jobs/{NO_SUCH_JOB}", None, {})
    assert (status, body["error"]) == (405, "MethodNotAllowedError")
    assert set(headers["Allow"].split(", ")) == {"GET", "HEAD", "DELETE"}
    validator.validate(body)
