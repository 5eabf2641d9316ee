"""Jobs and batches for people: rich tables and lines built from the API's JSON. Pure: the
commands decide where they go."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Column, Table
from rich.text import Text

from functions.cli.output import ago, duration, starts

STATUS_STYLES = {
    "pending": "dim",
    "scheduled": "magenta",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "yellow",
    "planning": "blue",
}
JOB_ID_WIDTH = len("20260101-000000-000000-0a1b2c3d")
# Failed items shown under one failed batch; the rest are counted.
ITEMS_SHOWN = 10


def status_text(status: str, width: int = 0) -> Text:
    """The status in its colour, padded to `width` (columns of lines that line up)."""
    return Text(f"{status:<{width}}", style=STATUS_STYLES.get(status, ""))


def priority_tag(job: Mapping[str, Any]) -> str:
    """` [high]` or ` [low]` after a job's id in one-line views; nothing for normal jobs."""
    priority = job.get("priority") or "normal"
    return "" if priority == "normal" else f" [{priority}]"


def start_note(job: Mapping[str, Any]) -> str:
    """`starts in 2 h` for a scheduled job; empty for any other."""
    return starts(job.get("not_before")) if job["status"] == "scheduled" else ""


def stage(job: Mapping[str, Any]) -> str:
    """The job's status, or "planning" while a running job's manifest or listing is still read
    (its batches already planned run meanwhile)."""
    return "planning" if job.get("planning") and job["status"] == "running" else job["status"]


def planning_text(job: Mapping[str, Any]) -> str:
    """`planning: 40,000 items in 40 batches so far (2 pages)`, or "" once planned."""
    if stage(job) != "planning":
        return ""
    return (
        f"planning: {job.get('planned_items', 0):,} items in {job['total_batches']:,} batches"
        f" so far ({job.get('plan_pages', 0)} pages)"
    )


def batch_counts(job: Mapping[str, Any]) -> str:
    """`8 completed, 2 failed of 10`, and the running/pending/cancelled counts when the API
    sent its batch summary."""
    text = (
        f"{job['completed_batches']} completed, {job['failed_batches']} failed "
        f"of {job['total_batches']}"
    )
    summary = job.get("batches") or {}
    others = [f"{summary[s]} {s}" for s in ("running", "pending", "cancelled") if summary.get(s)]
    return text + (f" ({', '.join(others)})" if others else "")


def stats_line(job: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in (job.get("stats") or {}).items())


def job_table(job: Mapping[str, Any]) -> Table:
    """One job, a row per fact; rows without a value are left out."""
    table = Table(title=f"job {job['job_id']}", show_header=False, title_justify="left")
    client = " / ".join(str(job[k]) for k in ("client_id", "request_id") if job.get(k))
    created = f"{job.get('created_at') or ''} ({ago(job.get('created_at'))})"
    rows: list[tuple[str, str | Text]] = [
        ("status", status_text(stage(job))),
        ("planning", planning_text(job)),
        ("priority", job.get("priority") or ""),
        ("source", job["source"]),
        ("collection", job["collection"]),
        ("client / request", client),
        ("created", created if job.get("created_at") else ""),
        ("starts", f"{job.get('not_before')} ({start_note(job)})" if start_note(job) else ""),
        ("duration", duration(job.get("duration_seconds"))),
        ("batches", batch_counts(job)),
        ("stats", stats_line(job)),
        ("retries", str(job["retries"]) if job.get("retries") else ""),
        ("message", job.get("message") or ""),
        ("error", job.get("error") or ""),
        ("callback", job.get("callback_status") or ""),
    ]
    for key, value in rows:
        if value:
            table.add_row(key, value if isinstance(value, Text) else Text(value))
    return table


def jobs_table(jobs: Iterable[Mapping[str, Any]]) -> Table:
    table = Table(
        # A job id is copied into the next command: never shortened nor broken.
        Column("job", no_wrap=True, min_width=JOB_ID_WIDTH),
        "status",
        "priority",
        "source",
        "collection",
        Column("batches", no_wrap=True),
        Column("created", no_wrap=True),
    )
    for job in jobs:
        done = job["completed_batches"] + job["failed_batches"]
        batches = Text(f"{done}/{job['total_batches']}")
        if job["failed_batches"]:
            batches.append(f" ({job['failed_batches']} failed)", style="red")
        status = status_text(stage(job))
        if note := start_note(job):
            status.append(f" ({note})", style="dim")
        table.add_row(
            Text(job["job_id"]),
            status,
            Text(job.get("priority") or ""),
            Text(job["source"]),
            Text(job["collection"]),
            batches,
            Text(ago(job.get("created_at"))),
        )
    return table


def failed_batch(batch: Mapping[str, Any]) -> RenderableType:
    """A failed batch: its id, attempts and error, then each failed item with its error."""
    lines = [
        Text.assemble(
            ("failed ", "red"),
            f"batch {batch['batch_id']} (attempt {batch.get('attempts', 0)}): ",
            str(batch.get("error") or ""),
        )
    ]
    items = dict((batch.get("error_details") or {}).get("failed_items") or {})
    for item, error in list(items.items())[:ITEMS_SHOWN]:
        lines.append(Text(f"    {item}: {error}"))
    if len(items) > ITEMS_SHOWN:
        lines.append(Text(f"    ... and {len(items) - ITEMS_SHOWN} more failed items"))
    return Group(*lines)


def failed_items(batches: Iterable[Mapping[str, Any]]) -> tuple[RenderableType, int]:
    """Every failed item of these failed batches with its error (a batch that failed as a
    whole is shown with its error), and how many lines that made."""
    lines: list[Text] = []
    for batch in batches:
        items = (batch.get("error_details") or {}).get("failed_items") or {}
        for item, error in items.items():
            lines.append(Text.assemble(("  failed ", "red"), f"{item}\n         {error}"))
        if not items:
            lines.append(
                Text.assemble(
                    ("  failed ", "red"), f"batch {batch['batch_id']}: {batch.get('error')}"
                )
            )
    return Group(*lines), len(lines)


def links(rows: Iterable[tuple[str, str | None]]) -> Group:
    """`name: url` lines, aligned; rows without a URL are left out."""
    shown = [(name, url) for name, url in rows if url]
    width = max((len(name) for name, _ in shown), default=0) + 1
    return Group(*(Text(f"  {name + ':':<{width}} {url}") for name, url in shown))
