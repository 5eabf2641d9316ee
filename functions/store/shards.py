"""Counter shards (rule 3, no hot document): both stores count batches into shard records,
never into the parent, which is written only at lifecycle steps (create, plan, finalize,
cancel, retry). While a job runs, readers sum its shards; finalizing copies the sums onto
the parent. Firestore needs this (about one sustained write per second per document); the
SQLite store mirrors it so that the two behave alike.
"""

from __future__ import annotations

import math

from functions.jobs import MAX_PLANNED_SHARDS, Job, JobStatus

# Up to this many batches, one shard takes every count. Past it, one shard per
# BATCHES_PER_SHARD batches, capped, since a reader sums every shard.
SHARD_THRESHOLD = 32
BATCHES_PER_SHARD = 32
MAX_SHARDS = MAX_PLANNED_SHARDS

# Statuses whose parent record holds exact counters: written when finalized (or never
# counted yet: no batch ends while a job is pending or scheduled). Running and cancelled
# jobs are summed from their shards.
MATERIALIZED = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.PENDING, JobStatus.SCHEDULED}
)


def counter_shards(total_batches: int) -> int:
    """How many counter shards a job with `total_batches` batches counts into."""
    if total_batches <= SHARD_THRESHOLD:
        return 1
    return min(MAX_SHARDS, math.ceil(total_batches / BATCHES_PER_SHARD))


def shards_of(job: Job) -> int:
    """How many shards `job` counts into: fixed when it was created for a job planned by
    pages (its size is unknown until planning ends), derived from its size otherwise."""
    return job.counter_shards or counter_shards(job.total_batches)


def shard_of(batch_index: int, total_batches: int, shards: int | None = None) -> int:
    return batch_index % (shards or counter_shards(total_batches))


def shard_size(shard: int, total_batches: int, shards: int | None = None) -> int:
    """How many batches count into `shard`: fixed by their indexes (`shard_of`), so a shard
    knows when it is complete, and the job is complete once every shard is. Only known once
    planning has ended (`total_batches` final)."""
    shards = shards or counter_shards(total_batches)
    return total_batches // shards + int(shard < total_batches % shards)
