"""Binding each entry point's log lines to the function that wrote them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from functions.observability.context import bound

P = ParamSpec("P")
R = TypeVar("R")


def logged_as(function: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Every line logged while the entry point runs carries the `function` label. The
    wrapper keeps the entry point's name: the Functions Framework looks it up by name."""

    def decorate(entry_point: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(entry_point)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with bound(function=function):
                return entry_point(*args, **kwargs)

        return wrapper

    return decorate
