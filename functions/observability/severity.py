"""Cloud Logging's severities, in order; `severity>=S` filters use this order everywhere."""

from __future__ import annotations

from functions.errors import InvalidArgument

SEVERITIES = (
    "DEFAULT",
    "DEBUG",
    "INFO",
    "NOTICE",
    "WARNING",
    "ERROR",
    "CRITICAL",
    "ALERT",
    "EMERGENCY",
)
_RANK = {name: rank for rank, name in enumerate(SEVERITIES)}


def parse_severity(value: str) -> str:
    """`value` as a severity name (any case); InvalidArgument if it is not one."""
    name = value.strip().upper()
    if name not in _RANK:
        raise InvalidArgument(f"unknown severity {value!r}; use one of {', '.join(SEVERITIES)}")
    return name


def severity_rank(name: str) -> int:
    """The rank of a line's severity; an unknown one ranks as DEFAULT, as in Cloud Logging."""
    return _RANK.get(name, 0)
