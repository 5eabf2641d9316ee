"""LanceDB's `optimize`, run in a short-lived child process.

Compacting a table (and merging its new rows into the full-text index) leaves native
memory in the process that did it, in proportion to the table: a worker that compacted as
it went grew with every job it ran (bench/ingest.py, memory section; docs/ingestion.md).
A child's memory goes back to the system when it exits, whatever LanceDB kept.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import timedelta
from typing import Any

# The child's exit status when its commit lost to a concurrent writer's (EX_TEMPFAIL).
CONFLICT_EXIT = 75
# The child: the parent's import path first, so it finds this package as the parent does.
_CHILD = (
    "import json, sys; args = json.loads(sys.argv[1]); sys.path[:] = args['path']; "
    "from functions.ingestion.compaction import optimize_here; "
    "sys.exit(optimize_here(args))"
)


class CompactionFailed(Exception):
    """The child could not optimize the table; the message holds the end of its stderr."""


def optimize_apart(db_uri: str, table: str, *, cleanup_older_than: timedelta | None) -> None:
    """`optimize` table `table` of the database at `db_uri` in a child process, and wait
    for it. `CommitConflict` when a concurrent commit won (retry on the latest version),
    `CompactionFailed` for anything else."""
    args = {
        "path": sys.path,
        "db_uri": db_uri,
        "table": table,
        "cleanup_seconds": None
        if cleanup_older_than is None
        else cleanup_older_than.total_seconds(),
    }
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return
    detail = done.stderr.strip()[-2000:]
    if done.returncode == CONFLICT_EXIT:
        from functions.ingestion.sink import CommitConflict

        raise CommitConflict(detail)
    raise CompactionFailed(f"compacting {table!r} failed ({done.returncode}): {detail}")


def optimize_here(args: dict[str, Any]) -> int:
    """The child's work: the exit status `optimize_apart` reads. A commit that loses to a
    concurrent writer's is retried here first, on the latest version: a new child costs
    a Python start, and a slow start widens the window for the next conflict."""
    import lancedb

    from functions.ingestion.sink import WRITE_ATTEMPTS, _is_conflict

    # A stop (SIGTERM to the worker's process group, as Cloud Run and the local stack send)
    # lets the worker finish the request in hand within its grace period; this compaction
    # is part of that request, so it finishes too. A hurried stop's SIGKILL still ends it.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

    seconds = args["cleanup_seconds"]
    cleanup = None if seconds is None else timedelta(seconds=seconds)
    try:
        table = lancedb.connect(args["db_uri"]).open_table(args["table"])
        for attempt in range(WRITE_ATTEMPTS):
            try:
                table.checkout_latest()  # type: ignore[no-untyped-call]  # untyped in lancedb
                table.optimize(cleanup_older_than=cleanup)
                return 0
            except (OSError, RuntimeError, ValueError) as error:
                if not _is_conflict(error) or attempt == WRITE_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * 2**attempt)
    except (OSError, RuntimeError, ValueError) as error:
        print(error, file=sys.stderr)
        return CONFLICT_EXIT if _is_conflict(error) else 1
    return 1  # not reached: the last attempt returns or raises
