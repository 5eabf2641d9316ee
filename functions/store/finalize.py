"""What a job looks like once all its batches are terminal: shared by both stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.jobs import Job, JobStatus


@dataclass(frozen=True, slots=True)
class FinalFields:
    status: JobStatus
    expire_at: datetime
    message: str
    error: str | None


def final_fields(job: Job, now: datetime, retention: timedelta) -> FinalFields:
    """The terminal fields of `job`, whose counters are complete. Failed if any batch failed.
    `expire_at` drives Firestore's TTL policy (and the cleanup function everywhere)."""
    status = job.final_status()
    total = job.total_batches
    error = f"{job.failed_batches} of {total} batches failed" if job.failed_batches else None
    return FinalFields(
        status=status,
        expire_at=now + retention,
        message=f"{job.completed_batches} of {total} batches completed",
        error=error,
    )
