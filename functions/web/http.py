"""The HTTP edge: reading JSON bodies, and turning typed errors into status codes.

This is the only place (with main.py) where errors become HTTP: deeper code raises
`FanoutError` subclasses, each naming its status.
"""

from __future__ import annotations

import functools
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import flask
import pydantic
from werkzeug.exceptions import HTTPException

from functions.bounded_json import loads_bounded
from functions.errors import (
    FanoutError,
    InvalidArgument,
    MethodNotAllowedError,
    PayloadTooLarge,
    Unauthorized,
)
from functions.web.models import ErrorBody

log = logging.getLogger("fanout.http")

Handler = Callable[[flask.Request], flask.Response]
JSON = "application/json"


def json_response(body: Any, status: int = 200) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype=JSON)


def view_response(view: pydantic.BaseModel, status: int = 200) -> flask.Response:
    """An answer built through its response model (functions/web/models.py)."""
    return flask.Response(view.model_dump_json(), status=status, mimetype=JSON)


def error_body_response(body: ErrorBody, status: int) -> flask.Response:
    return flask.Response(body.to_json(), status=status, mimetype=JSON)


# The errors the edge answers as themselves: typed errors and invalid input.
ANSWERED = (FanoutError, pydantic.ValidationError)


def error_answer(
    request: flask.Request, error: FanoutError | pydantic.ValidationError
) -> tuple[ErrorBody, int]:
    """The body and status that answer `error`, for the JSON API and the pages alike; a
    typed 5xx is logged."""
    if isinstance(error, pydantic.ValidationError):
        return ErrorBody.from_validation(error), 400
    if error.http_status >= 500:
        log.warning("%s %s: %s", request.method, request.path, error.message)
    return ErrorBody.from_error(error), error.http_status


def handle_errors(fn: Handler) -> Handler:
    """Typed errors and invalid input become JSON 4xx answers; anything else a 500. Every
    one has the `ErrorBody` shape."""

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        try:
            return fn(request)
        except ANSWERED as error:
            response = error_body_response(*error_answer(request, error))
            if isinstance(error, MethodNotAllowedError):
                response.headers["Allow"] = ", ".join(error.allowed)
            return response
        except HTTPException as error:
            # What werkzeug itself refuses while reading the request (a malformed form).
            status = error.code or 400
            name = type(error).__name__
            body = ErrorBody(error=name, message=error.description or name)
            return error_body_response(body, status)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            body = ErrorBody(error="InternalError", message="internal error")
            return error_body_response(body, 500)

    return wrapper


def read_json_object(request: flask.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; typed errors for too large (413), nested deeper
    than `MAX_DEPTH`, malformed, not an object (400)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is over {max_bytes} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is over {max_bytes} bytes")
    body = loads_bounded(raw)
    if not isinstance(body, dict):
        raise InvalidArgument("the body must be a JSON object")
    return body


def check_secret(request: flask.Request, header: str, secret: str | None) -> None:
    """Refuse the call unless it carries `secret` in `header` (when a secret is set)."""
    if secret is None:
        return
    given = request.headers.get(header, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        raise Unauthorized(f"missing or wrong {header} header")
