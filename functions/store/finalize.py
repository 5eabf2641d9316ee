"""What a job looks like once all its batches are terminal: shared by both stores."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from functions.jobs import Job, JobStatus

# Firestore's TTL deletes a parent but not its subcollections, and the cleanup function finds
# jobs through their parents. So TTL must never win the race: it fires this long after the
# cleanup cutoff (finished_at + retention), as a backstop for a cleanup that stopped running.
TTL_GRACE = timedelta(days=3)


def expire_at_for(finished_at: datetime, retention: timedelta) -> datetime:
    """The `expire_at` (Firestore TTL field) of a job that finished at `finished_at`."""
    return finished_at + retention + TTL_GRACE


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
        expire_at=expire_at_for(now, retention),
        message=f"{job.completed_batches} of {total} batches completed",
        error=error,
    )
