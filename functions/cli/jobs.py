"""The job commands: `list` (alias `jobs`), `show`, `cancel`, `retry` and `delete`."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.text import Text

from functions.cli.output import console, print_json, print_table
from functions.cli.parsing import positive_int
from functions.cli.target import Target
from functions.cli.views import failed_batch, job_table, jobs_table, links, status_text
from functions.errors import InvalidArgument
from functions.jobs import parse_status
from functions.priority import Priority

if TYPE_CHECKING:
    from functions.cli.parsing import Commands

# Failed batches `show` lists; the rest are counted, and the job's page has them all.
FAILED_SHOWN = 20


def statuses(value: str) -> list[str]:
    """`--status failed,running`: each a known status, or a usage error naming them."""
    try:
        return [parse_status(s.strip()).value for s in value.split(",") if s.strip()]
    except InvalidArgument as error:
        raise argparse.ArgumentTypeError(error.message) from None


def cmd_list(args: argparse.Namespace) -> int:
    target = Target.from_args(args)
    wanted = [status for group in args.status or [] for status in group]
    filters = {
        "status": ",".join(dict.fromkeys(wanted)) or None,
        "source": args.source,
        "client_id": args.client,
        "priority": args.priority,
        "limit": str(args.limit) if args.limit else None,
    }
    given = {key: value for key, value in filters.items() if value}
    page = target.client.jobs(**given, **({"cursor": args.cursor} if args.cursor else {}))
    if args.json:
        print_json(page)
        return 0
    print_table(jobs_table(page["jobs"]))
    console.print(Text(f"{len(page['jobs'])} of {page['total']} jobs"))
    if page.get("next_cursor"):
        flags = {
            "status": "--status",
            "source": "--source",
            "client_id": "--client",
            "priority": "--priority",
            "limit": "--limit",
        }
        again = [part for key, value in given.items() for part in (flags[key], value)]
        command = shlex.join(["fanout", "list", *again, "--cursor", page["next_cursor"]])
        console.print(Text(f"next page: {command}"))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    target = Target.from_args(args)
    job = target.client.job(args.job_id)
    job_id = str(job["job_id"])
    failed = target.client.batches(job_id, status="failed", limit=str(FAILED_SHOWN))
    dropped = _dropped_tasks(target, job)
    urls = {
        "status": target.job_url(job_id),
        "batches": target.job_url(job_id) + "/batches",
        "logs": job.get("logs_url"),
        "page": target.page_url(job_id),
    }
    if args.json:
        print_json(
            {
                "job": job,
                "failed_batches": {"batches": failed["batches"], "total": failed["total"]},
                "dropped_tasks": dropped,
                "links": urls,
            }
        )
        return 0
    console.print(job_table(job))
    if failed["batches"]:
        console.print(Text(f"failed batches ({failed['total']}):", style="bold"))
        for batch in failed["batches"]:
            console.print(failed_batch(batch))
        if failed["total"] > len(failed["batches"]):
            more = failed["total"] - len(failed["batches"])
            console.print(Text(f"... and {more} more: {urls['page']}"))
    if dropped:
        console.print(Text(f"batches whose task the queue dropped ({len(dropped)}):", style="bold"))
        for batch in dropped:
            after = batch["redispatch_after"]
            console.print(
                Text(f"  #{batch['index']}: re-dispatched by the next sweep after {after}")
            )
    console.print(Text("links:", style="bold"))
    console.print(links(urls.items()))
    return 0


def _dropped_tasks(target: Target, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's first pending batches whose task the queue says it dropped."""
    if job["status"] != "running":
        return []
    pending = target.client.batches(str(job["job_id"]), status="pending", limit=str(FAILED_SHOWN))
    return [batch for batch in pending["batches"] if batch.get("task") == "dropped"]


def _changed(job: dict[str, Any], what: str) -> None:
    done = job["completed_batches"] + job["failed_batches"]
    console.print(
        Text.assemble(
            f"job {job['job_id']} ",
            status_text(job["status"]),
            f": {what}; {done} of {job['total_batches']} batches had ended",
        )
    )


def cmd_cancel(args: argparse.Namespace) -> int:
    job = Target.from_args(args).client.cancel(args.job_id)
    if args.json:
        print_json(job)
    else:
        _changed(job, "cancelled, its pending batches will not run")
    return 0


def cmd_retry(args: argparse.Namespace) -> int:
    job = Target.from_args(args).client.retry(args.job_id)
    if args.json:
        print_json(job)
    else:
        _changed(job, f"its failed batches run again (retry {job.get('retries', 0)})")
        console.print(Text(f"  follow it: fanout watch {job['job_id']}"))
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    Target.from_args(args).client.delete(args.job_id)
    if args.json:
        print_json({"job_id": args.job_id, "deleted": True})
    else:
        console.print(Text(f"deleted job {args.job_id}"))
    return 0


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "list", aliases=["jobs"], parents=list(parents), help="jobs, newest first, a page at a time"
    )
    p.set_defaults(handler=cmd_list)
    p.add_argument(
        "--status",
        type=statuses,
        action="append",
        help="only these statuses (repeatable, or a comma list)",
    )
    p.add_argument("--source", help="only jobs of this source")
    p.add_argument("--client", help="only jobs of this client id")
    p.add_argument(
        "--priority", choices=[level.value for level in Priority], help="only jobs of this priority"
    )
    p.add_argument("--limit", type=positive_int, help="jobs per page")
    p.add_argument("--cursor", help="the page after the one that printed it")
    for name, handler, summary in (
        ("show", cmd_show, "a job: stats, failed batches with their errors, links"),
        ("cancel", cmd_cancel, "cancel a job: its pending batches do not run"),
        ("retry", cmd_retry, "run a failed job's failed batches again"),
        ("delete", cmd_delete, "delete an ended job and its batches (asks nothing)"),
    ):
        p = commands.add_parser(name, parents=list(parents), help=summary)
        p.set_defaults(handler=handler)
        p.add_argument("job_id", metavar="JOB")
