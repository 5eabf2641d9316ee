"""The job listing's cursor: a page cursor whose position is a valid job id."""

from __future__ import annotations

from functions.errors import InvalidCursor, JobNotFound
from functions.jobs import check_job_id
from functions.paging import decode_cursor


def decode_job_cursor(cursor: str) -> str:
    """The job id a `list_jobs` cursor resumes after."""
    after: str = decode_cursor(cursor, "jobs", str)
    try:
        return check_job_id(after)
    except JobNotFound:
        raise InvalidCursor(f"cursor {cursor[:40]!r} has no valid position") from None
