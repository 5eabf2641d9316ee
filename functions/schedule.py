"""A later start: the ingest request's `not_before`, its form and its window.

The window is Cloud Tasks': a task's `schedule_time` may be at most 720 h (30 days) ahead,
and every task of a scheduled job is created with `schedule_time = not_before`. A time a
little in the past is taken as "now" (`PAST_GRACE`): the caller's clock may run behind ours.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from functions.errors import InvalidField

FIELD = "not_before"
MAX_AHEAD = timedelta(days=30)
PAST_GRACE = timedelta(seconds=60)

# RFC 3339's date-time (section 5.6): a date, "T", a time, and an offset ("Z" or +hh:mm).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def parse_rfc3339(value: object) -> datetime:
    """`value` as an aware UTC datetime, if it is an RFC 3339 date-time string with an
    offset; ValueError otherwise (a naive time, a number, another format)."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise ValueError(
            "give an RFC 3339 time with an offset, such as 2026-12-07T02:00:00Z"
            " or 2026-12-07T03:00:00+01:00"
        )
    # Digits past the microsecond are dropped, not rounded.
    return datetime.fromisoformat(value.upper()).astimezone(UTC)


def check_not_before(not_before: datetime, now: datetime) -> None:
    """`InvalidField` naming `not_before` unless it lies between `now` minus `PAST_GRACE`
    and `now` plus `MAX_AHEAD`."""
    if not_before < now - PAST_GRACE:
        raise InvalidField(
            FIELD,
            f"{not_before.isoformat()} is in the past (now {now.isoformat(timespec='seconds')})",
        )
    if not_before > now + MAX_AHEAD:
        raise InvalidField(
            FIELD,
            f"{not_before.isoformat()} is more than {MAX_AHEAD.days} days ahead"
            " (Cloud Tasks' limit)",
        )
