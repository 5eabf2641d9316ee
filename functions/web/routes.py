"""Routes as data: one declaration per route serves both dispatch and the OpenAPI document,
so the document cannot list a route the code does not serve, or miss one it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flask
from pydantic import BaseModel
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule

from functions.errors import InvalidArgument, MethodNotAllowedError, RouteNotFound
from functions.web.guards import check_json_request

# The most a body-less state-changing route reads of a body (it must be empty or `{}`).
EMPTY_BODY_BYTES = 1024
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Route:
    """One HTTP route. `path` is a werkzeug rule ("/jobs/<job_id>"); `endpoint` names the
    handler method. The models describe the request and the 2xx answer for the document;
    `html` marks a page (text/html) rather than a JSON endpoint."""

    method: str
    path: str
    endpoint: str
    summary: str
    query: type[BaseModel] | None = None
    body: type[BaseModel] | None = None
    form: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    html: bool = False
    errors: tuple[int, ...] = ()
    tags: tuple[str, ...] = ()
    max_body: int = EMPTY_BODY_BYTES

    @property
    def changes_state(self) -> bool:
        """A JSON route that changes state (not a page's form): it takes only
        `application/json`, and nothing from another site (functions/web/guards.py)."""
        return self.method in _WRITES and not self.html and self.form is None


Handler = Callable[..., flask.Response]


class Router:
    """Matches a request against `routes` and calls the handler bound to its endpoint."""

    def __init__(self, routes: Sequence[Route], handlers: dict[str, Handler]) -> None:
        missing = {r.endpoint for r in routes} - handlers.keys()
        if missing:
            raise ValueError(f"routes without a handler: {sorted(missing)}")
        self.routes = tuple(routes)
        self._handlers = handlers
        self._routes = {r.endpoint: r for r in routes}
        self._map = Map(
            [Rule(r.path, methods=[r.method], endpoint=r.endpoint) for r in routes],
            strict_slashes=False,
        )

    def dispatch(self, request: flask.Request) -> flask.Response:
        adapter = self._map.bind("api", path_info=request.path)
        try:
            endpoint, values = adapter.match(method=request.method)
        except NotFound:
            raise RouteNotFound(f"no route {request.method} {request.path}") from None
        except MethodNotAllowed as error:
            allowed = tuple(error.valid_methods or ())
            raise MethodNotAllowedError(
                f"{request.method} not allowed on {request.path}; use {', '.join(allowed)}",
                allowed,
            ) from None
        route = self._routes[endpoint]
        if route.changes_state:
            check_json_request(request, route.max_body)
            if route.body is None:
                _check_empty_body(request)
        values_typed: dict[str, Any] = dict(values)
        return self._handlers[endpoint](request, **values_typed)


def _check_empty_body(request: flask.Request) -> None:
    """A route that takes no input takes no body, or `{}` (what its document asks for)."""
    if (request.content_length or 0) > EMPTY_BODY_BYTES:
        raise InvalidArgument("this route takes no body, or {}")
    raw = request.get_data(cache=True)
    if raw.strip() in (b"", b"{}"):
        return
    try:
        parsed = flask.json.loads(raw)
    except ValueError:
        raise InvalidArgument("malformed JSON: this route takes no body, or {}") from None
    if parsed != {}:
        raise InvalidArgument("this route takes no body, or {}")
