"""`python -m functions.cli`: run the local stack, submit jobs and watch them.

run      start the local stack, ingest the sample corpus, show progress, print the
         result and a search over it, stop everything (what `make run` does)
dev      start the local stack and keep it up (what `make dev` does)
submit   submit a job to a running stack (optionally watch it)
watch    show a job's progress until it ends
jobs     list jobs
search   search a collection (hybrid: vector + full text)
logs     print a job's log lines (local stack or Cloud Logging), or follow them
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from functions.cli.client import ApiError, FanoutClient
from functions.config import Settings
from functions.errors import FanoutError
from functions.jobs import Job, batch_id_for
from functions.local.emulators import ROOT
from functions.local.sample_corpus import generate
from functions.local.stack import LocalStack, StackConfig
from functions.observability.cloud_logs import CloudLogsReader, LogsFollower
from functions.observability.console import LogTailer, render
from functions.observability.handler import LOCAL_LOG_FILE
from functions.observability.lines import MAX_LOG_PAGE, LogLine
from functions.observability.links import CONSOLE, LogsQuery
from functions.observability.severity import parse_severity
from functions.urls import LOCAL_HOSTS

TERMINAL = {"completed", "failed", "cancelled"}
SAMPLE_CORPUS = ROOT / "samples" / "corpus"
DEMO_QUERY = "how do I stop a job that is already running?"
console = Console(soft_wrap=True)  # never break URLs and paths across lines


def watch(client: FanoutClient, job_id: str, *, poll: float = 0.3) -> dict[str, Any]:
    """Show a live progress bar until the job is terminal; returns the final job."""
    columns = (
        TextColumn("[bold]{task.description:<9}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("pending", total=None, detail="")
        while True:
            job = client.job(job_id)
            batches = job["batches"]
            detail = (
                f"[green]{job['completed_batches']} ok[/] "
                f"[red]{job['failed_batches']} failed[/] "
                f"{batches['running']} running, {job['stats']['processed']} items"
            )
            progress.update(
                bar,
                total=job["total_batches"] or 1,
                completed=job["completed_batches"] + job["failed_batches"],
                detail=detail,
                description=job["status"],
            )
            if job["status"] in TERMINAL:
                return job
            time.sleep(poll)  # polling the API: the CLI's refresh rate


def print_result(job: dict[str, Any]) -> None:
    table = Table(title=f"job {job['job_id']}", show_header=False)
    rows = [
        ("status", job["status"]),
        ("source", job["source"]),
        ("collection", job["collection"]),
        (
            "batches",
            f"{job['completed_batches']} completed, {job['failed_batches']} "
            f"failed of {job['total_batches']}",
        ),
        ("stats", ", ".join(f"{k} {v}" for k, v in job["stats"].items())),
        ("duration", f"{job['duration_seconds']} s"),
        ("message", job.get("message") or ""),
        ("error", job.get("error") or ""),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    console.print(table)


def print_where(job: dict[str, Any], stack: LocalStack | None, api_url: str) -> None:
    console.print("Where to look next:")
    console.print(f"  job:       {api_url}/jobs/{job['job_id']}")
    console.print(f"  batches:   {api_url}/jobs/{job['job_id']}/batches")
    if job.get("logs_url"):
        console.print(f"  logs:      {job['logs_url']}")
    console.print(
        f"  its lines: .venv/bin/python -m functions.cli logs {job['job_id']} --api-url {api_url}"
    )
    if stack is not None:
        console.print(f"  log files: {stack.logs}/")
        console.print("  keep the stack up to explore: make dev")


def print_failed_items(client: FanoutClient, job_id: str) -> int:
    """List the items that failed, with their errors; returns how many were shown."""
    shown = 0
    for batch in client.batches(job_id, status="failed")["batches"]:
        failed_items = (batch.get("error_details") or {}).get("failed_items") or {}
        for item, error in failed_items.items():
            console.print(f"  [red]failed[/] {item}\n         {error}")
            shown += 1
        if not failed_items:
            console.print(f"  [red]failed[/] batch {batch['batch_id']}: {batch.get('error')}")
    return shown


def print_hits(result: dict[str, Any]) -> None:
    table = Table("score", "source", "heading / page", "text", title=f"search: {result['query']}")
    for hit in result["hits"]:
        where = hit["heading_path"] or ""
        if hit["page"] is not None:
            where = f"{where} (page {hit['page']})".strip()
        text = " ".join(hit["text"].split())
        table.add_row(
            f"{hit['score']:.4f}",
            Path(hit["uri"]).name if not hit["uri"].startswith("gs://") else hit["uri"],
            where,
            text[:160] + ("..." if len(text) > 160 else ""),
        )
    console.print(table)


def _stop_on_termination() -> None:
    """`kill` (SIGTERM) and a closing terminal (SIGHUP) stop the stack like Ctrl-C does:
    the children run in their own sessions, so nothing else would stop them."""

    def raise_interrupt(signum: int, frame: object) -> NoReturn:
        raise KeyboardInterrupt

    for termination in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(termination, raise_interrupt)


def _report_leftovers(stack: LocalStack) -> None:
    if stack.leftovers_ended:
        console.print(
            f"[yellow]Ended {stack.leftovers_ended} processes left running by an earlier "
            f"stack in {stack.state_dir}[/]"
        )


class _SupervisionLines(logging.Handler):
    """Shows the supervisor's restarts on the console. Its crash-loop error is not shown
    here: it ends the command, which prints it as its error."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno < logging.ERROR:
            style = "yellow" if record.levelno >= logging.WARNING else "green"
            console.print(self.format(record), style=style, markup=False, highlight=False)


def _show_supervision() -> None:
    supervisor = logging.getLogger("fanout.supervisor")
    if not any(isinstance(h, _SupervisionLines) for h in supervisor.handlers):
        supervisor.addHandler(_SupervisionLines())
    supervisor.setLevel(logging.INFO)
    supervisor.propagate = False  # shown once, here, not again by logging's last resort


def cmd_run(args: argparse.Namespace) -> int:
    _show_supervision()
    config = StackConfig(
        state_dir=args.state_dir, port_base=args.port_base, store=args.store, sweep_interval=10.0
    )
    corpus = args.state_dir.resolve() / "sample-corpus"
    files = generate(corpus)
    bad = [f.path for f in files if f.phrase is None and f.format != "unknown"]
    console.print(
        f"Sample corpus: {len(files)} files in {corpus} "
        f"(on purpose: {', '.join(bad)} fail, and one file of an unknown type is skipped)"
    )
    console.print(f"Starting the local stack ({args.store} store) ...")
    with LocalStack(config) as stack:
        _report_leftovers(stack)
        try:
            client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
            request = {
                "source": "documents",
                "collection": args.collection,
                "location": str(corpus),
                "batch_size": args.batch_size,
            }
            accepted = client.submit(request)
            console.print(
                f"Submitted job {accepted['job_id']} ({accepted['total_batches']} batches)\n"
                f"  status: {accepted['status_url']}"
            )
            job = watch(client, accepted["job_id"])
            print_result(job)
            failed = print_failed_items(client, job["job_id"])
            print_hits(client.search(args.collection, args.query))
            print_where(job, stack, stack.url("jobs_api"))
            console.print(
                f"  search it:  .venv/bin/python -m functions.cli search {args.collection} "
                '"your question" --api-url ' + stack.url("jobs_api")
            )
            # The corpus fails `len(bad)` files on purpose; any other failure is a real one.
            return 0 if job["status"] != "cancelled" and failed == len(bad) else 1
        except OSError:
            stack.check()  # the stack stopped itself (a crash loop): that is the error
            raise


def print_lines(lines: list[LogLine]) -> None:
    for line in lines:
        console.print(render(line))


def cmd_dev(args: argparse.Namespace) -> int:
    _show_supervision()
    config = StackConfig(
        state_dir=args.state_dir, port_base=args.port_base, store=args.store, sweep_interval=30.0
    )
    stack = LocalStack(config)
    # The console view: every line the stack's processes log from now on, as it is written.
    tailer = LogTailer(stack.logs / LOCAL_LOG_FILE, lambda line: print_lines([line])).start()
    try:
        with stack:
            _report_leftovers(stack)
            for target in ("ingest", "jobs_api", "run_batch", "cleanup_jobs", "ingest_pubsub"):
                console.print(f"  {target:<14} {stack.url(target)}")
            console.print(f"State and logs in {stack.state_dir}. Ctrl-C stops everything.")
            console.file.flush()  # the URLs must reach a pipe (`make dev | tee`) right away
            stack.wait()  # until Ctrl-C, or a crash loop stops the stack (raised here)
    finally:
        tailer.stop()
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    client = FanoutClient(args.ingest_url, args.api_url)
    request: dict[str, Any] = {
        "source": args.source,
        "collection": args.collection,
        "batch_size": args.batch_size,
    }
    if args.items:
        request["items"] = args.items
    else:
        request["location"] = str(Path(args.location).resolve())
    accepted = client.submit(request)
    console.print_json(data=accepted)
    if args.watch:
        job = watch(client, accepted["job_id"])
        print_result(job)
        print_where(job, None, args.api_url)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    client = FanoutClient(args.api_url, args.api_url)
    job = watch(client, args.job_id)
    print_result(job)
    print_where(job, None, args.api_url)
    return 0 if job["status"] == "completed" else 1


def cmd_jobs(args: argparse.Namespace) -> int:
    client = FanoutClient(args.api_url, args.api_url)
    page = client.jobs(**({"status": args.status} if args.status else {}))
    table = Table("job", "status", "source", "batches", "progress")
    for job in page["jobs"]:
        table.add_row(
            job["job_id"],
            job["status"],
            job["source"],
            f"{job['completed_batches']}+{job['failed_batches']}/{job['total_batches']}",
            f"{job['progress']:.0%}",
        )
    console.print(table)
    console.print(f"{page['total']} jobs")
    return 0


def cmd_search(args: argparse.Namespace) -> int:
    client = FanoutClient(args.api_url, args.api_url)
    print_hits(client.search(args.collection, args.query, args.k))
    return 0


# Seconds between polls of a followed job. Cloud Logging's list method has a quota of 60
# requests a minute per project, shared with everyone reading its logs.
FOLLOW_LOCAL = 0.5
FOLLOW_CLOUD = 3.0


class LineSource(Protocol):
    def poll(self) -> list[LogLine]:
        """The lines not returned by an earlier call, oldest first."""
        ...


class LocalLines:
    """A job's lines from the jobs API (`GET /jobs/{id}/logs`): pages until the end, then
    continues from the API's resume cursor at the next poll."""

    def __init__(
        self,
        client: FanoutClient,
        job_id: str,
        *,
        batch_id: str | None = None,
        severity: str | None = None,
        event: str | None = None,
    ) -> None:
        self.client = client
        self.job_id = job_id
        self.batch_id, self.severity, self.event = batch_id, severity, event
        self._cursor: str | None = None

    def poll(self) -> list[LogLine]:
        lines: list[LogLine] = []
        cursor = self._cursor
        while True:
            page = self.client.logs(
                self.job_id,
                batch_id=self.batch_id,
                severity=self.severity,
                event=self.event,
                cursor=cursor,
                limit=MAX_LOG_PAGE,
            )
            lines.extend(LogLine.from_dict(line) for line in page["lines"])
            if page["next_cursor"] is None:
                resume = page.get("resume_cursor")
                self._cursor = resume if resume is not None else cursor
                return lines
            cursor = page["next_cursor"]


def logs_are_local(api_url: str, job: Mapping[str, Any]) -> bool:
    """A local stack's API (by its host), or a job whose logs link is not Cloud Logging's."""
    if urllib.parse.urlsplit(api_url).hostname in LOCAL_HOSTS:
        return True
    link = job.get("logs_url")
    return bool(link) and not str(link).startswith(CONSOLE)


def follow(client: FanoutClient, job_id: str, source: LineSource, interval: float) -> int:
    """Print new lines until the job is terminal. The status is read before the lines, so
    every line written before it ended is in the last poll; one more poll after an interval
    picks up what is logged as it ends (its final event, the callback) and, in the cloud,
    what Cloud Logging had not made visible yet."""
    was_running = False
    while True:
        ended = client.job(job_id)["status"] in TERMINAL
        print_lines(source.poll())
        console.file.flush()
        if ended:
            if was_running:
                time.sleep(interval)
                print_lines(source.poll())
            return 0
        was_running = True
        time.sleep(interval)  # polling the API (or Cloud Logging): the follow refresh rate


def cmd_logs(args: argparse.Namespace) -> int:
    severity = parse_severity(args.severity) if args.severity else None
    client = FanoutClient(args.api_url, args.api_url)
    job = client.job(args.job_id)
    job_id = str(job["job_id"])
    batch_id = batch_id_for(job_id, args.batch) if args.batch is not None else None
    source: LineSource
    if logs_are_local(args.api_url, job):
        source = LocalLines(client, job_id, batch_id=batch_id, severity=severity, event=args.event)
        interval = FOLLOW_LOCAL
    else:
        settings = Settings.from_env()
        project = args.project or settings.gcp_project
        if not project:
            console.print(
                "[red]error:[/] the job's logs are in Cloud Logging: name its project with "
                "--project or FANOUT_GCP_PROJECT"
            )
            return 2
        query = LogsQuery.for_job(
            Job.from_dict(job), project=project, service_prefix=settings.service_prefix
        )
        # A batch's lines carry its id: the job's time range holds them all.
        query = replace(query, batch_id=batch_id, severity=severity, event=args.event)
        source = LogsFollower(CloudLogsReader(project), query)
        interval = FOLLOW_CLOUD
    if args.interval is not None:
        interval = args.interval
    if args.follow:
        return follow(client, job_id, source, interval)
    print_lines(source.poll())
    return 0


def _batch_index(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"a batch index is a whole number from 0, got {value!r}")
    return int(value)


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"an interval is 0 or more seconds, got {value!r}")
    return seconds


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="fanout", description=__doc__.splitlines()[0])
    sub = main.add_subparsers(dest="command", required=True)
    for name, handler in (("run", cmd_run), ("dev", cmd_dev)):
        p = sub.add_parser(name)
        p.set_defaults(handler=handler)
        p.add_argument("--store", choices=("sqlite", "firestore"), default="sqlite")
        p.add_argument("--port-base", type=int, default=8081)
        p.add_argument("--state-dir", type=Path, default=ROOT / ".local")
        if name == "run":
            p.add_argument("--batch-size", type=int, default=10)
            p.add_argument("--collection", default="samples")
            p.add_argument("--query", default=DEMO_QUERY, help="the search printed at the end")
    api_default = "http://127.0.0.1:8083"
    p = sub.add_parser("submit")
    p.set_defaults(handler=cmd_submit)
    p.add_argument("--ingest-url", default="http://127.0.0.1:8081")
    p.add_argument("--api-url", default=api_default)
    p.add_argument("--source", default="noop")
    p.add_argument("--collection", default="samples")
    p.add_argument("--batch-size", type=int, default=10)
    p.add_argument("--location", default=str(SAMPLE_CORPUS))
    p.add_argument("--items", nargs="*")
    p.add_argument("--watch", action="store_true")
    p = sub.add_parser("watch")
    p.set_defaults(handler=cmd_watch)
    p.add_argument("job_id")
    p.add_argument("--api-url", default=api_default)
    p = sub.add_parser("search")
    p.set_defaults(handler=cmd_search)
    p.add_argument("collection")
    p.add_argument("query")
    p.add_argument("-k", type=int, default=5, help="how many chunks")
    p.add_argument("--api-url", default=api_default)
    p = sub.add_parser("jobs")
    p.set_defaults(handler=cmd_jobs)
    p.add_argument("--status")
    p.add_argument("--api-url", default=api_default)
    p = sub.add_parser("logs", help="a job's log lines, oldest first")
    p.set_defaults(handler=cmd_logs)
    p.add_argument("job_id")
    p.add_argument("--batch", type=_batch_index, metavar="N", help="only batch N's lines")
    p.add_argument("--follow", action="store_true", help="print new lines until the job ends")
    p.add_argument("--severity", help="this severity and above (INFO, WARNING, ERROR, ...)")
    p.add_argument("--event", help="only this event (batch_failed, job_finalized, ...)")
    p.add_argument("--api-url", default=api_default)
    p.add_argument("--project", help="the Cloud Logging project (default FANOUT_GCP_PROJECT)")
    p.add_argument("--interval", type=_seconds, help="seconds between polls with --follow")
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    _stop_on_termination()
    try:
        code: int = args.handler(args)
        return code
    except (ApiError, FanoutError) as error:
        console.print(f"[red]error:[/] {error}")
        return 2
    except KeyboardInterrupt:
        console.print("stopped")
        return 130


if __name__ == "__main__":
    sys.exit(main())
