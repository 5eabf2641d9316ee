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

from functions.errors import FanoutError, InvalidArgument, PayloadTooLarge, Unauthorized

log = logging.getLogger("fanout.http")

Handler = Callable[[flask.Request], flask.Response]


def json_response(body: Any, status: int = 200) -> flask.Response:
    return flask.Response(json.dumps(body), status=status, mimetype="application/json")


def error_response(error: FanoutError) -> flask.Response:
    return json_response(error.to_dict(), error.http_status)


def handle_errors(fn: Handler) -> Handler:
    """Typed errors and invalid input become JSON 4xx answers; anything else a 500."""

    @functools.wraps(fn)
    def wrapper(request: flask.Request) -> flask.Response:
        try:
            return fn(request)
        except FanoutError as error:
            if error.http_status >= 500:
                log.warning("%s %s: %s", request.method, request.path, error.message)
            return error_response(error)
        except pydantic.ValidationError as error:
            problems = [
                {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "problem": e["msg"]}
                for e in error.errors()
            ]
            body = InvalidArgument("invalid request").to_dict() | {"problems": problems}
            return json_response(body, 400)
        except Exception:
            log.exception("%s %s failed", request.method, request.path)
            return json_response({"error": "InternalError", "message": "internal error"}, 500)

    return wrapper


def read_json_object(request: flask.Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a JSON object; typed errors for too large, malformed, not an
    object."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is over {max_bytes} bytes")
    raw = request.get_data(cache=False)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"body is over {max_bytes} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"malformed JSON: {error}") from None
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
