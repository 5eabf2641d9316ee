"""A 100,000-item job on the local stack: `noop` items from a manifest, every task
delivered twice (FANOUT_DUPLICATE_DELIVERY). The submit answers at once, planning runs as
tasks, and the job ends exact, finalized once. bench/scale.py runs the 1,000,000-item one."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.e2e.conftest import StackFactory, client_for, wait_terminal

ITEMS = 100_000
BATCH_SIZE = 1_000


def test_a_100000_item_manifest_job_ends_exact_under_duplicate_delivery(
    make_stack: StackFactory, tmp_path: Path
) -> None:
    """100,000 manifest items: submit under 1 s, exact end, every task delivered twice."""
    manifest = tmp_path / "manifest.txt"
    manifest.write_text("".join(f"item-{i}\n" for i in range(ITEMS)))
    stack = make_stack(
        env={"FANOUT_DUPLICATE_DELIVERY": "true", "FANOUT_ALLOWED_ROOTS": str(tmp_path)}
    )
    client = client_for(stack)
    # A first request pays the function's cold start (imports on first use); the figure
    # pinned here is a warm submit's, whatever the manifest's size.
    warm_up = tmp_path / "warm-up.txt"
    warm_up.write_text("warm-up\n")
    client.submit({"source": "noop", "collection": "scale", "items_from": str(warm_up)})
    started = time.monotonic()
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "scale",
            "items_from": str(manifest),
            "batch_size": BATCH_SIZE,
        }
    )
    assert time.monotonic() - started < 1.0
    assert accepted["planning"] is True and accepted["total_batches"] == 0

    job = wait_terminal(client, accepted["job_id"], timeout=120)
    assert job["status"] == "completed" and job["planning"] is False
    batches = ITEMS // BATCH_SIZE
    assert (job["total_batches"], job["completed_batches"], job["failed_batches"]) == (
        batches,
        batches,
        0,
    )
    assert (job["planned_items"], job["stats"]["processed"]) == (ITEMS, ITEMS)

    events = [json.loads(line) for line in (stack.logs / "fanout.jsonl").read_text().splitlines()]
    mine = [
        e
        for e in events
        if e.get("logging.googleapis.com/labels", {}).get("job_id") == job["job_id"]
    ]
    assert sum(e.get("event") == "job_finalized" for e in mine) == 1
    assert sum(e.get("event") == "batch_completed" for e in mine) == batches
    # Delivered twice: each batch's second delivery was refused (or found it counted).
    assert sum(e.get("event") == "batch_refused" for e in mine) >= batches
