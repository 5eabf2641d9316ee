"""The document routes on jobs_api: /openapi.json, and /docs, a reference for people that
the server renders from that same document (Jinja2, no script, nothing fetched from
elsewhere: it reads the same offline)."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import flask
import pydantic
from werkzeug.datastructures import MultiDict

from functions.web.http import view_response
from functions.web.models import ErrorBody, OpenApiDocument
from functions.web.openapi import ERROR_MEANINGS, build_document
from functions.web.queries import JobListQuery, parse_query
from functions.web.routes import Handler, Route
from functions.web.templating import render

REFERENCE = ("reference",)
DOC_ROUTES: list[Route] = [
    Route(
        "GET",
        "/openapi.json",
        "openapi_document",
        "This API's OpenAPI 3.1 document (ingest included)",
        response=OpenApiDocument,
        tags=REFERENCE,
    ),
    Route(
        "GET",
        "/docs",
        "reference_page",
        "This API's reference, as a page",
        html=True,
        tags=REFERENCE,
    ),
]

HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")


class Reference:
    """The handlers of `DOC_ROUTES`. The document and the page are built at their first
    request, once per instance."""

    def __init__(
        self,
        routes: Sequence[Route],
        *,
        api_url: str,
        ingest_routes: Sequence[Route],
        ingest_url: str,
        sources: Sequence[str] = (),
    ) -> None:
        self._build = functools.partial(
            build_document,
            routes,
            api_url=api_url,
            ingest_routes=ingest_routes,
            ingest_url=ingest_url,
            sources=sources,
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            "openapi_document": self.openapi_document,
            "reference_page": self.reference_page,
        }

    @functools.cached_property
    def document(self) -> OpenApiDocument:
        return OpenApiDocument.model_validate(self._build())

    @functools.cached_property
    def page(self) -> str:
        return render_reference(self.document.model_dump())

    def openapi_document(self, request: flask.Request) -> flask.Response:
        return view_response(self.document)

    def reference_page(self, request: flask.Request) -> flask.Response:
        return flask.Response(self.page, mimetype="text/html")


# -- the page -------------------------------------------------------------------------------

# A type as text, with the names of schemas as links: [(text, anchor or None), ...].
TypeLabel = list[tuple[str, str | None]]


@dataclass(frozen=True)
class FieldDoc:
    name: str
    type: TypeLabel
    required: bool
    description: str
    default: str
    where: str = ""  # a parameter's location: path or query


@dataclass(frozen=True)
class ResponseDoc:
    status: str
    description: str
    media: list[str]
    type: TypeLabel


@dataclass(frozen=True)
class OperationDoc:
    method: str
    path: str
    anchor: str
    summary: str
    server: str | None
    parameters: list[FieldDoc]
    body_media: str | None
    body: TypeLabel
    responses: list[ResponseDoc]


@dataclass(frozen=True)
class SchemaDoc:
    name: str
    anchor: str
    description: str
    fields: list[FieldDoc]
    values: list[str]


def render_reference(document: dict[str, Any]) -> str:
    """The /docs page for `document`."""
    schemas = document.get("components", {}).get("schemas", {})
    default_server = (document.get("servers") or [{}])[0].get("url")
    operations = []
    for path, item in document["paths"].items():
        path_server = (item.get("servers") or [{}])[0].get("url")
        for method in HTTP_METHODS:
            if method in item:
                operations.append(_operation(method, path, item[method], path_server))
    return render(
        "reference.html",
        info=document["info"],
        server=default_server,
        operations=operations,
        schemas=[_schema(name, schema) for name, schema in schemas.items()],
        error_example=_error_example(),
        error_meanings=sorted(ERROR_MEANINGS.items()),
    )


def _error_example() -> str:
    """A real error body: the one `GET /jobs?limit=500` answers."""
    try:
        parse_query(JobListQuery, MultiDict({"limit": "500"}))
    except pydantic.ValidationError as error:
        body = ErrorBody.from_validation(error).model_dump(exclude_none=True)
        return json.dumps(body, indent=2)
    raise AssertionError("limit=500 is over the page size")  # pragma: no cover


def _anchor(name: str) -> str:
    return "schema-" + name


def _operation(
    method: str, path: str, operation: dict[str, Any], path_server: str | None
) -> OperationDoc:
    servers = operation.get("servers") or []
    server = servers[0]["url"] if servers else path_server
    parameters = [
        FieldDoc(
            name=p["name"],
            type=type_label(p.get("schema", {})),
            required=bool(p.get("required")),
            description=p.get("description", ""),
            default=_default(p.get("schema", {})),
            where=p["in"],
        )
        for p in operation.get("parameters", [])
    ]
    body_media, body = None, []
    for media, content in operation.get("requestBody", {}).get("content", {}).items():
        body_media, body = media, type_label(content.get("schema", {}))
    responses = [
        ResponseDoc(
            status=status,
            description=answer.get("description", ""),
            media=list(answer.get("content", {})),
            type=_first_json_type(answer.get("content", {})),
        )
        for status, answer in operation["responses"].items()
    ]
    return OperationDoc(
        method=method.upper(),
        path=path,
        anchor=operation.get("operationId", f"{method}-{path}"),
        summary=operation.get("summary", ""),
        server=server,
        parameters=parameters,
        body_media=body_media,
        body=body,
        responses=responses,
    )


def _first_json_type(content: dict[str, Any]) -> TypeLabel:
    for media, entry in content.items():
        if media.endswith("json"):
            return type_label(entry.get("schema", {}))
    return [("page", None)] if content else []


def _schema(name: str, schema: dict[str, Any]) -> SchemaDoc:
    required = set(schema.get("required", ()))
    fields = [
        FieldDoc(
            name=field,
            type=type_label(spec),
            required=field in required,
            description=spec.get("description", ""),
            default=_default(spec),
        )
        for field, spec in schema.get("properties", {}).items()
    ]
    return SchemaDoc(
        name=name,
        anchor=_anchor(name),
        description=schema.get("description", ""),
        fields=fields,
        values=[str(v) for v in schema.get("enum", ())],
    )


def _default(schema: dict[str, Any]) -> str:
    if "default" not in schema or schema["default"] is None:
        return ""
    return json.dumps(schema["default"])


def type_label(schema: dict[str, Any]) -> TypeLabel:
    """`schema` for people: "integer, 1 to 200", "array of JobStatus", "string or null"."""
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        return [(name, _anchor(name))]
    if "anyOf" in schema:
        label: TypeLabel = []
        for index, branch in enumerate(schema["anyOf"]):
            if index:
                label.append((" or ", None))
            label += type_label(branch)
        return label
    if "enum" in schema:
        return [("one of " + ", ".join(str(v) for v in schema["enum"]), None)]
    kind = schema.get("type", "any")
    if kind == "array":
        return [("array of ", None), *type_label(schema.get("items", {}))]
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return [("object of ", None), *type_label(schema["additionalProperties"])]
    return [(str(kind) + _constraints(schema), None)]


def _constraints(schema: dict[str, Any]) -> str:
    notes = []
    if "format" in schema:
        notes.append(str(schema["format"]))
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None or high is not None:
        notes.append(f"{'' if low is None else low} to {'' if high is None else high}".strip())
    short, long = schema.get("minLength"), schema.get("maxLength")
    if long is not None:
        notes.append(f"{short or 0} to {long} characters")
    elif short:
        notes.append(f"at least {short} character{'s' if short > 1 else ''}")
    if "maxItems" in schema:
        notes.append(f"at most {schema['maxItems']} items")
    if "pattern" in schema:
        notes.append(f"matching {schema['pattern']}")
    return f" ({'; '.join(notes)})" if notes else ""
