"""Lifecycle events: log lines with an `event` field in their JSON payload.

Each event says what happened and what a person needs to act on it; the job, batch and
attempt come from the `LogContext`, so they are labels, filterable in Cloud Logging and in
`GET /jobs/{id}/logs`.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Any

_log = logging.getLogger("fanout.events")


class Event(StrEnum):
    SUBMITTED = "submitted"
    PLANNED = "planned"
    ENQUEUED = "enqueued"
    BATCH_CLAIMED = "batch_claimed"
    BATCH_REFUSED = "batch_refused"
    BATCH_COMPLETED = "batch_completed"
    BATCH_FAILED = "batch_failed"
    BATCH_RETRIED = "batch_retried"
    JOB_FINALIZED = "job_finalized"
    JOB_CANCELLED = "job_cancelled"
    JOB_RETRIED = "job_retried"
    JOB_STARTED = "job_started"
    CALLBACK_SENT = "callback_sent"
    CALLBACK_FAILED = "callback_failed"
    SWEPT = "swept"


def emit(
    event: Event,
    message: str,
    *,
    level: int = logging.INFO,
    exc_info: BaseException | None = None,
    **fields: Any,
) -> None:
    """Log `message` as the `event` line, with `fields` in its JSON payload."""
    _log.log(
        level,
        message,
        exc_info=exc_info,
        extra={"json_fields": {"event": event, **fields}},
        stacklevel=2,  # the source location is the caller's, not this function's
    )
