"""Reading a value that must name a member of a string enum (a job's status, a priority)."""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from functions.errors import InvalidArgument

E = TypeVar("E", bound=StrEnum)


def parse_named(kind: type[E], value: str, what: str) -> E:
    """The member of `kind` named `value`; `InvalidArgument` naming the allowed values
    otherwise."""
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise InvalidArgument(f"unknown {what} {value!r}; expected one of: {allowed}") from None
