"""The OpenAPI 3.1 document, generated from the route declarations and their pydantic models
(pydantic writes every schema), so it lists exactly the routes the code serves and the
shapes it really answers with.

jobs_api's routes are served at the API URL (the document's server). `ingest` is another
function with its own URL: its path carries its own `servers` entry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from functions.web.models import ErrorBody
from functions.web.routes import Route

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1"
REF_TEMPLATE = "#/components/schemas/{model}"
JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"

DESCRIPTION = (
    "Fanout runs large ingestion jobs: ingest (at its own URL) starts one, the jobs API "
    "follows, cancels, retries and deletes them, reads their logs and searches the "
    "collections they fill. Every error answers the same JSON shape, ErrorBody: the "
    "error type, a message and, for invalid input, each field's problem."
)

# What each error status means here; the error types that answer it are in parentheses.
ERROR_MEANINGS: dict[int, str] = {
    400: "Invalid input: a parameter, the body or a cursor (InvalidArgument, InvalidCursor)",
    401: "Missing or wrong credentials (Unauthorized)",
    403: (
        "Refused: sent by a browser from another site, or a page's form without its token "
        "(CrossSiteRequest)"
    ),
    404: "No such job, batch, collection or route (JobNotFound, CollectionNotFound, ...)",
    405: "The path exists, not for this method (MethodNotAllowedError)",
    409: "The job's status does not allow it (InvalidTransition)",
    413: "The body is too large (PayloadTooLarge)",
    415: "Not UTF-8 JSON sent as Content-Type: application/json (UnsupportedMediaType)",
    500: "Internal error (InternalError)",
    501: "This deployment cannot read logs: no log directory, no project (LogsUnavailable)",
    502: "A Google service failed (CloudLogsError, EmbeddingError)",
    503: "Unavailable for now; try again (TransientError)",
}

# "<job_id>" or "<int:index>" in a werkzeug rule.
_PATH_PARAMETER = re.compile(r"<(?:(?P<converter>[a-z_]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
# werkzeug's default converter: one path segment. Without a newline: the Functions
# Framework's own catch-all rule matches no path with one, and answers its own HTML 404.
_SEGMENT = {"type": "string", "minLength": 1, "pattern": r"^[^/\n]+$"}

Mode = Literal["validation", "serialization"]


def openapi_path(rule: str) -> str:
    """The OpenAPI path of a werkzeug rule: "/jobs/<job_id>" -> "/jobs/{job_id}"."""
    return _PATH_PARAMETER.sub(lambda m: "{" + m["name"] + "}", rule)


def path_parameters(rule: str) -> list[dict[str, Any]]:
    parameters = []
    for match in _PATH_PARAMETER.finditer(rule):
        schema = {"type": "integer"} if match["converter"] == "int" else dict(_SEGMENT)
        parameters.append({"name": match["name"], "in": "path", "required": True, "schema": schema})
    return parameters


def build_document(
    routes: Sequence[Route],
    *,
    api_url: str,
    ingest_routes: Sequence[Route] = (),
    ingest_url: str | None = None,
    sources: Sequence[str] = (),
) -> dict[str, Any]:
    """The document for jobs_api's `routes` (served at `api_url`) and ingest's
    `ingest_routes` (served at `ingest_url`); `sources`, the registered processors, are
    the values an ingest request's `source` may take."""
    schemas = _Schemas([*routes, *ingest_routes])
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        paths.setdefault(openapi_path(route.path), {})[route.method.lower()] = _operation(
            route, schemas
        )
    if ingest_routes:
        if ingest_url is None:
            raise ValueError("ingest routes need the ingest URL")
        ingest_server = [{"url": ingest_url, "description": "the ingest function"}]
        api_server = [{"url": api_url, "description": "the jobs API"}]
        for route in ingest_routes:
            item = paths.setdefault(openapi_path(route.path), {})
            # A jobs_api operation on the same path keeps the API's server.
            for operation in item.values():
                operation["servers"] = api_server
            item["servers"] = ingest_server
            item[route.method.lower()] = _operation(route, schemas)
    components = schemas.components()
    if sources and "IngestRequest" in components:
        components["IngestRequest"]["properties"]["source"]["enum"] = list(sources)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Fanout", "version": API_VERSION, "description": DESCRIPTION},
        "servers": [{"url": api_url, "description": "the jobs API"}],
        "paths": paths,
        "components": {"schemas": components},
    }


class _Schemas:
    """Every model's JSON schema, from one pydantic run: shared models (JobStatus, ...) are
    defined once under components/schemas and referenced."""

    def __init__(self, routes: Iterable[Route]) -> None:
        pairs: list[tuple[type[BaseModel], Mode]] = [(ErrorBody, "serialization")]
        self._queries: set[type[BaseModel]] = set()
        for route in routes:
            for model in (route.query, route.body, route.form):
                if model is not None:
                    pairs.append((model, "validation"))
            if route.query is not None:
                self._queries.add(route.query)
            if route.response is not None:
                pairs.append((route.response, "serialization"))
        unique = list(dict.fromkeys(pairs))
        refs, definitions = models_json_schema(unique, ref_template=REF_TEMPLATE)
        self._refs: dict[tuple[Any, Mode], dict[str, Any]] = dict(refs)
        self._definitions: dict[str, Any] = definitions.get("$defs", {})

    def ref(self, model: type[BaseModel], mode: Mode) -> dict[str, Any]:
        return dict(self._refs[(model, mode)])

    def _name(self, model: type[BaseModel], mode: Mode) -> str:
        return str(self._refs[(model, mode)]["$ref"]).rsplit("/", 1)[-1]

    def query_parameters(self, model: type[BaseModel]) -> list[dict[str, Any]]:
        """A query model's fields, one `in: query` parameter each; a list field is a
        repeated parameter (`?status=a&status=b`)."""
        schema = self._definitions[self._name(model, "validation")]
        required = set(schema.get("required", ()))
        parameters = []
        for name, field in schema.get("properties", {}).items():
            field = _without_null(field) if name not in required else dict(field)
            field.pop("title", None)
            parameter: dict[str, Any] = {"name": name, "in": "query", "required": name in required}
            if "description" in field:
                parameter["description"] = field.pop("description")
            parameter["schema"] = field
            if field.get("type") == "array":
                parameter |= {"style": "form", "explode": True}
            parameters.append(parameter)
        return parameters

    def components(self) -> dict[str, Any]:
        """The schemas operations reference; query models are spelled out as parameters."""
        flattened = {self._name(model, "validation") for model in self._queries}
        return {
            name: schema
            for name, schema in sorted(self._definitions.items())
            if name not in flattened
        }


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """An optional field's schema without its `null` branch and `null` default: a query
    parameter is absent, never null."""
    schema = dict(schema)
    branches = schema.pop("anyOf", None)
    if schema.get("default", 0) is None:
        del schema["default"]
    if branches is None:
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == 1:
        return {**kept[0], **schema}
    return {"anyOf": kept, **schema}


def _operation(route: Route, schemas: _Schemas) -> dict[str, Any]:
    parameters = path_parameters(route.path)
    if route.query is not None:
        parameters += schemas.query_parameters(route.query)
    operation: dict[str, Any] = {"operationId": route.endpoint, "summary": route.summary}
    if route.tags:
        operation["tags"] = list(route.tags)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        content = {JSON: {"schema": schemas.ref(route.body, "validation")}}
        operation["requestBody"] = {"required": True, "content": content}
    elif route.form is not None:
        content = {FORM: {"schema": schemas.ref(route.form, "validation")}}
        operation["requestBody"] = {"required": True, "content": content}
    elif route.changes_state:
        # No input, but the Content-Type a browser cannot send from another site unasked.
        content = {JSON: {"schema": {"type": "object", "maxProperties": 0}}}
        operation["requestBody"] = {
            "required": True,
            "description": "{} (or no body at all, with Content-Type: application/json)",
            "content": content,
        }
    operation["responses"] = _responses(route, schemas)
    return operation


def error_statuses(route: Route) -> list[int]:
    """Every error status `route` can answer: its own, plus what the edge answers for any
    route with input (400), a path parameter (404), a body (413), a state-changing JSON
    route (400, 403, 415), and 500."""
    statuses = set(route.errors) | {500}
    if route.query or route.body or route.form:
        statuses.add(400)
    if _PATH_PARAMETER.search(route.path):
        statuses.add(404)
    if route.body or route.form:
        statuses.add(413)
    if route.changes_state:
        statuses |= {400, 403, 415}
    return sorted(statuses)


def _responses(route: Route, schemas: _Schemas) -> dict[str, Any]:
    success: dict[str, Any] = {"description": HTTPStatus(route.status).phrase}
    if route.html:
        success["content"] = {HTML: {"schema": {"type": "string"}}}
    elif route.response is not None:
        success["description"] = (route.response.__doc__ or success["description"]).strip()
        success["content"] = {JSON: {"schema": schemas.ref(route.response, "serialization")}}
    responses = {str(route.status): success}
    error = {JSON: {"schema": schemas.ref(ErrorBody, "serialization")}}
    if route.html:
        # A page shows its errors as a page; what fails before the page can render (an
        # unknown route, a crash) answers the JSON error.
        error = {HTML: {"schema": {"type": "string"}}, **error}
    for status in error_statuses(route):
        meaning = ERROR_MEANINGS.get(status, HTTPStatus(status).phrase)
        responses[str(status)] = {"description": meaning, "content": error}
    return responses
