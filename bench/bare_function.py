"""A Functions Framework function that does nothing: the raw limit for bench/e2e.py."""

import flask
import functions_framework


@functions_framework.http
def bare(request: flask.Request) -> flask.Response:
    return flask.Response("{}", mimetype="application/json")
