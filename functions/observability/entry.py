"""Binding each entry point's log lines to the function that wrote them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import flask

from functions.observability.context import bound
from functions.observability.trace import incoming_trace

P = ParamSpec("P")
R = TypeVar("R")


def logged_as(function: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Every line logged while the entry point runs carries the `function` label and, until
    a job's own trace replaces it, the request's trace. The wrapper keeps the entry point's
    name: the Functions Framework looks it up by name."""

    def decorate(entry_point: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(entry_point)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            incoming = (
                incoming_trace(flask.request.headers) if flask.has_request_context() else None
            )
            trace_id, span_id = incoming or (None, None)
            with bound(
                function=function, trace_id=trace_id, request_trace_id=trace_id, span_id=span_id
            ):
                return entry_point(*args, **kwargs)

        return wrapper

    return decorate
