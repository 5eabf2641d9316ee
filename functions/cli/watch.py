"""`fanout watch JOB...`: the live progress of one or several jobs until every one ends.

On a terminal each job gets a rich progress bar (batches done and failed, items per second,
ETA), redrawn after each poll. Into a pipe or a file a plain line is printed whenever a
job's progress changes, so `fanout watch J | head -1` shows something at once. With --json
nothing is shown until the end, then the final jobs.

Exit codes: 0 every job completed, 1 any failed, 2 any cancelled (and none failed).
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, Self

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.text import Text

from functions.cli.client import FanoutClient
from functions.cli.output import console, duration, print_json, print_note
from functions.cli.parsing import positive_seconds
from functions.cli.target import Target
from functions.cli.termination import exit_code
from functions.cli.views import STATUS_STYLES, priority_tag, stage, start_note, status_text

if TYPE_CHECKING:
    from functions.cli.parsing import Commands

TERMINAL = frozenset({"completed", "failed", "cancelled"})
# Seconds of samples the rates are measured over: recent enough to follow a change of pace.
RATE_WINDOW = 30.0
DEFAULT_INTERVAL = 0.5
EXIT_COMPLETED, EXIT_FAILED, EXIT_CANCELLED = 0, 1, 2


def items_done(job: Mapping[str, Any]) -> int:
    """Items that reached an end: processed (their results stored), failed, skipped or
    unchanged."""
    stats = job.get("stats") or {}
    return sum(
        int(stats.get(name) or 0) for name in ("processed", "failed", "skipped", "unchanged")
    )


def unchanged_text(job: Mapping[str, Any]) -> str:
    """`, 12 unchanged` when items were found unchanged since they were ingested."""
    unchanged = int((job.get("stats") or {}).get("unchanged") or 0)
    return f", {unchanged} unchanged" if unchanged else ""


def batches_done(job: Mapping[str, Any]) -> int:
    return int(job["completed_batches"]) + int(job["failed_batches"])


class Rates:
    """Items per second, from the samples of the last `RATE_WINDOW` seconds (a job already
    over when first seen is measured over its whole duration), and the time left, from the
    work stored since the job started: its ended batches plus the stored progress of its
    running ones. Batches end in waves (as many at once as run at once), so counting ended
    batches alone leaves the time left unknown, or jumping, until late in a job."""

    def __init__(self, window: float = RATE_WINDOW) -> None:
        self.window = window
        self._samples: deque[tuple[float, int, int]] = deque()
        self._running_progress = 0.0

    def add(self, at: float, job: Mapping[str, Any], running_progress: float = 0.0) -> None:
        """A poll of `job`; `running_progress` sums its running batches' `progress`."""
        self._samples.append((at, batches_done(job), items_done(job)))
        self._running_progress = running_progress
        while len(self._samples) > 2 and at - self._samples[1][0] >= self.window:
            self._samples.popleft()

    def _span(self) -> tuple[float, int, int] | None:
        if len(self._samples) < 2:
            return None
        (t0, b0, i0), (t1, b1, i1) = self._samples[0], self._samples[-1]
        return (t1 - t0, b1 - b0, i1 - i0) if t1 > t0 else None

    def items_per_second(self, job: Mapping[str, Any]) -> float | None:
        span = self._span()
        if span is not None and span[2] > 0:
            return span[2] / span[0]
        seconds = job.get("duration_seconds")
        if job["status"] in TERMINAL and seconds:
            return items_done(job) / float(seconds)
        return None

    def eta_seconds(self, job: Mapping[str, Any]) -> float | None:
        if job["status"] in TERMINAL:
            return 0.0
        return time_left(job, self._running_progress)


def time_left(job: Mapping[str, Any], running_progress: float) -> float | None:
    """Seconds until `job` ends at the pace of its stored work so far (None until some is
    stored): batches' worth done = ended batches + the running ones' stored progress."""
    total = int(job["total_batches"])
    done = min(float(total), batches_done(job) + running_progress)
    elapsed = job.get("duration_seconds")
    if not elapsed or done <= 0 or total <= 0:
        return None
    return (total - done) * float(elapsed) / done


def running_progress(client: FanoutClient, job: Mapping[str, Any]) -> float:
    """The summed stored `progress` (0..1 each) of `job`'s running batches: how far the
    batches that have not ended yet have got. Running batches are few (the queue's dispatch
    concurrency), so one page holds them."""
    if job["status"] != "running":
        return 0.0
    page = client.batches(str(job["job_id"]), status="running", limit="200")
    return sum(float(batch.get("progress") or 0.0) for batch in page["batches"])


def rate_text(rate: float | None) -> str:
    return "- items/s" if rate is None else f"{rate:.1f} items/s"


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return "done" if seconds == 0 else duration(seconds)


def when_text(job: Mapping[str, Any], rates: Rates) -> str:
    """`ETA 3 min 5 s`; for a scheduled job, when it starts (`starts in 2 h`)."""
    return start_note(job) or f"ETA {eta_text(rates.eta_seconds(job))}"


class Display(Protocol):
    """Shows the jobs as they are polled; a context manager around the whole watch."""

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None: ...

    def show(self, job: Mapping[str, Any], rates: Rates) -> None: ...

    def refresh(self) -> None: ...


class _Silent:
    """Shows nothing (--json: stdout is for the one JSON document)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def show(self, job: Mapping[str, Any], rates: Rates) -> None:
        return None

    def refresh(self) -> None:
        return None


class Bars(_Silent):
    """A rich progress bar per job, redrawn after each poll (never from a thread of its
    own, so a closed terminal or pipe is seen by the command, not by a background thread)."""

    def __init__(self, out: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            TextColumn("{task.fields[status]}"),
            BarColumn(bar_width=30),
            TextColumn("{task.fields[batches]}"),
            TextColumn("{task.fields[rate]}"),
            TextColumn("{task.fields[when]}"),
            console=out,
            auto_refresh=False,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> Self:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, job: Mapping[str, Any], rates: Rates) -> None:
        job_id = str(job["job_id"])
        status = stage(job)
        style = STATUS_STYLES.get(status, "")
        failed = int(job["failed_batches"])
        fields: dict[str, Any] = {  # the columns' {task.fields[...]}
            "status": f"[{style}]{status:<9}[/]" if style else f"{status:<9}",
            "batches": f"{batches_done(job)}/{job['total_batches']} batches, "
            + (f"[red]{failed} failed[/]" if failed else "0 failed")
            + unchanged_text(job),
            "rate": rate_text(rates.items_per_second(job)),
            "when": when_text(job, rates),
        }
        # No total until the job is planned: the bar pulses.
        total = int(job["total_batches"]) or None
        if job_id in self.tasks:
            self.progress.update(
                self.tasks[job_id], total=total, completed=batches_done(job), **fields
            )
        else:
            self.tasks[job_id] = self.progress.add_task(
                job_id + priority_tag(job), total=total, completed=batches_done(job), **fields
            )

    def refresh(self) -> None:
        self.progress.refresh()


class Lines(_Silent):
    """One plain line per change of a job's progress (a pipe, a file, a CI log)."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self._last: dict[str, tuple[object, ...]] = {}

    def show(self, job: Mapping[str, Any], rates: Rates) -> None:
        key = (stage(job), batches_done(job), job["failed_batches"], job["total_batches"])
        if self._last.get(job["job_id"]) == key:
            return
        self._last[job["job_id"]] = key
        self.out.print(
            Text.assemble(
                f"{job['job_id']}{priority_tag(job)} ",
                status_text(stage(job), width=9),
                f" {batches_done(job)}/{job['total_batches']} batches"
                + (" planned so far" if stage(job) == "planning" else "")
                + ", "
                f"{job['failed_batches']} failed{unchanged_text(job)}, "
                f"{rate_text(rates.items_per_second(job))}, "
                f"{when_text(job, rates)}",
            )
        )


def display_for(out: Console, *, quiet: bool) -> Display:
    if quiet:
        return _Silent()
    return Bars(out) if out.is_terminal else Lines(out)


def watch_jobs(
    client: FanoutClient,
    job_ids: Sequence[str],
    display: Display,
    *,
    interval: float = DEFAULT_INTERVAL,
) -> list[dict[str, Any]]:
    """Poll the jobs until every one is terminal; returns them as they ended. Every job is
    read once before anything is shown, so an unknown id fails before any output."""
    latest = {job_id: client.job(job_id) for job_id in dict.fromkeys(job_ids)}
    rates = {job_id: Rates() for job_id in latest}
    with display:
        while True:
            now = time.monotonic()
            for job_id, job in latest.items():
                rates[job_id].add(now, job, running_progress(client, job))
                display.show(job, rates[job_id])
            display.refresh()
            if all(job["status"] in TERMINAL for job in latest.values()):
                return list(latest.values())
            time.sleep(interval)  # polling the API: the watch's refresh rate
            for job_id, job in latest.items():
                if job["status"] not in TERMINAL:
                    latest[job_id] = client.job(job_id)


def outcome_code(jobs: Sequence[Mapping[str, Any]]) -> int:
    statuses = {job["status"] for job in jobs}
    if "failed" in statuses:
        return EXIT_FAILED
    if "cancelled" in statuses:
        return EXIT_CANCELLED
    return EXIT_COMPLETED


def print_outcome(jobs: Sequence[Mapping[str, Any]]) -> None:
    """A line per job as it ended, and where to see why for the failed ones."""
    for job in jobs:
        console.print(
            Text.assemble(
                f"{job['job_id']} ",
                status_text(job["status"]),
                f": {batches_done(job)}/{job['total_batches']} batches, "
                f"{job['failed_batches']} failed{unchanged_text(job)}; "
                f"{items_done(job)} items in "
                f"{duration(job.get('duration_seconds'))}",
            )
        )
        if job["status"] == "failed":
            console.print(Text(f"  its failed batches: fanout show {job['job_id']}"))


def watch_and_report(
    target: Target,
    job_ids: Sequence[str],
    args: argparse.Namespace,
    document: Mapping[str, Any] | None = None,
) -> int:
    """Watch, then print the outcome (with --json: `document` and the final jobs, as one
    JSON document); the outcome's exit code. Ctrl-C stops the watching, not the jobs."""
    try:
        jobs = watch_jobs(
            target.client,
            job_ids,
            display_for(console, quiet=args.json),
            interval=args.interval,
        )
    except KeyboardInterrupt as interrupt:
        print_note("stopped watching; the jobs go on (fanout cancel JOB stops one)")
        return exit_code(interrupt)
    if args.json:
        print_json({**(document or {}), "jobs": jobs})
    else:
        print_outcome(jobs)
    return outcome_code(jobs)


def add_watch_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=DEFAULT_INTERVAL,
        help=f"seconds between polls (default {DEFAULT_INTERVAL})",
    )


def cmd_watch(args: argparse.Namespace) -> int:
    return watch_and_report(Target.from_args(args), args.job_ids, args)


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "watch",
        parents=list(parents),
        help="live progress of jobs until they end (exit 0 completed, 1 failed, 2 cancelled)",
    )
    p.set_defaults(handler=cmd_watch)
    p.add_argument("job_ids", nargs="+", metavar="JOB")
    add_watch_options(p)
