"""Planning as work: a job whose items come from a manifest (`items_from`), or from a
location whose listing holds more than one page, is planned by planner tasks, one page each,
never inside the request and never whole in memory.

Page `n` reads the next items of the manifest or the listing (from the cursor the job
keeps), writes their batches and the job's new totals in one store write
(`JobStore.add_plan_page`: all or nothing, once), enqueues the batches' tasks, then the task
of page `n + 1`. Every page but the last holds exactly the job's `page_batches` batches
(fixed at submit), so page `n`'s batches are known from `n` alone: a delivery of a page
already written (a duplicate, or a retry after the planner stopped between its write and
its enqueues) enqueues that page's batches still unenqueued and the next page's task again,
under the same task names, which the queue deduplicates. Planner tasks run at once, also for
a job whose start is later: only its batches' tasks wait for `not_before`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from functions.errors import InvalidArgument
from functions.priority import Priority

# Items one page reads at most (its memory), and batches it writes at most (one Firestore
# commit holds a page: at most 500 writes, the page's marker and the job among them).
PAGE_ITEMS = 20_000
PAGE_BATCHES = 250
# A request lists at most this many names of a location (and the one after): a listing that
# ends within them is planned in the request; a longer one by pages, from its start. The
# submit's time stays that of a small listing (1,000 local files: tens of milliseconds).
SUBMIT_LISTING_ITEMS = 1_000
PLAN_TASK_KEY = "plan"
# Planner tasks wait in the high class's queue, whatever their job's priority: each is
# tiny and gates its job's batches, and one class means the sweeper knows where to ask.
PLAN_PRIORITY = Priority.HIGH
# Where a planned job's recorded request keeps how many batches its pages hold.
PAGE_BATCHES_KEY = "page_batches"


def page_batches(batch_size: int, page_items: int = PAGE_ITEMS) -> int:
    """How many batches every page but the last holds, reading at most `page_items` items
    (or one batch)."""
    return max(1, min(PAGE_BATCHES, page_items // batch_size))


def plan_task_name(job_id: str, page: int, rounds: int = 0) -> str:
    return f"{job_id}-plan-{page}" + (f"-r{rounds}" if rounds else "")


def plan_task_body(job_id: str, page: int, worker_url: str) -> bytes:
    """The body of a planner task. It carries the worker's URL, where the page's tasks go:
    run_batch, which plans, cannot be told its own URL by its deployment (a cycle), so the
    function that enqueued the first page (ingest) passes its own setting along."""
    return json.dumps({PLAN_TASK_KEY: job_id, "page": page, "worker_url": worker_url}).encode()


@dataclass(frozen=True, slots=True)
class PlanRun:
    """What one delivery of a planner task did: `written` a page; else `reason` says why
    not (a duplicate, an ended job)."""

    job_id: str
    page: int
    written: bool
    batches: int = 0
    last: bool = False
    finalized: bool = False
    reason: str | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "job_id": self.job_id,
            "page": self.page,
            "written": self.written,
            "batches": self.batches,
            "last": self.last,
            "finalized": self.finalized,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class PlanTask:
    """What a planner task's body asks: plan `page` of `job_id`, enqueuing to `worker_url`
    (None: the worker URL of this function's own settings)."""

    job_id: str
    page: int
    worker_url: str | None = None


def parse_plan_task(body: Mapping[str, object]) -> PlanTask | None:
    """The planner task a body holds, None for a batch's task. `InvalidArgument` for a
    planner task's body that is malformed."""
    job_id = body.get(PLAN_TASK_KEY)
    if job_id is None:
        return None
    page, worker_url = body.get("page"), body.get("worker_url")
    if not isinstance(job_id, str) or not isinstance(page, int) or isinstance(page, bool):
        raise InvalidArgument('a planner task\'s body is {"plan": "JOB_ID", "page": n, ...}')
    if page < 0 or not (worker_url is None or isinstance(worker_url, str)):
        raise InvalidArgument("a planner task's page is 0 or more, its worker_url a string")
    return PlanTask(job_id, page, worker_url)
