"""The error shape for what the Functions Framework answers before any function runs.

Its Flask app routes every path to the function with one rule, `/<path:path>`, whose
pattern matches no path with a newline in it (`/jobs/a%0Ab`), and answers `/robots.txt` and
`/favicon.ico` itself: Flask's own HTML 404 for all of them, unless the app has a handler.
"""

from __future__ import annotations

import flask
from werkzeug.exceptions import HTTPException, NotFound

from functions.web.models import ErrorBody

JSON = "application/json"


def answer_framework_errors(app: flask.Flask) -> None:
    """Make `app`'s own refusals (no rule matched, ...) answer the one JSON error shape."""
    app.register_error_handler(HTTPException, _error_answer)


def _error_answer(error: HTTPException) -> flask.Response:
    request = flask.request
    if isinstance(error, NotFound):
        body = ErrorBody(error="RouteNotFound", message=f"no route {request.method} {request.path}")
    else:
        name = type(error).__name__
        body = ErrorBody(error=name, message=error.description or name)
    return flask.Response(body.to_json(), status=error.code or 500, mimetype=JSON)
