"""Counter shards (rule 3, no hot document): both stores count batches into shard records,
never into the parent, which is written only at lifecycle steps (create, plan, finalize,
cancel, retry). While a job runs, readers sum its shards; finalizing copies the sums onto
the parent. Firestore needs this (about one sustained write per second per document); the
SQLite store mirrors it so that the two behave alike.
"""

from __future__ import annotations

import math

from functions.jobs import JobStatus

# Up to this many batches, one shard takes every count. Past it, one shard per
# BATCHES_PER_SHARD batches, capped, since a reader sums every shard.
SHARD_THRESHOLD = 32
BATCHES_PER_SHARD = 32
MAX_SHARDS = 64

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


def shard_of(batch_index: int, total_batches: int) -> int:
    return batch_index % counter_shards(total_batches)


def shard_size(shard: int, total_batches: int) -> int:
    """How many batches count into `shard`: fixed by their indexes (`shard_of`), so a shard
    knows when it is complete, and the job is complete once every shard is."""
    shards = counter_shards(total_batches)
    return total_batches // shards + int(shard < total_batches % shards)
