"""`fanout logs JOB`: a job's log lines, oldest first, from the local stack's jobs API or,
for a deployed job, from Cloud Logging with the same query as its Logs Explorer link;
`--follow` prints new lines until the job ends.

--json prints one document, `{"job_id", "lines"}`; with --follow it prints one JSON object
per line instead (JSON Lines), as they come: a stream has no end to wait for.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from functions.cli.auth import is_local
from functions.cli.client import FanoutClient
from functions.cli.errors import UsageError
from functions.cli.output import console, print_json
from functions.cli.target import Target
from functions.cli.watch import TERMINAL
from functions.config import Settings
from functions.jobs import Job, batch_id_for
from functions.observability.console import render
from functions.observability.lines import MAX_LOG_PAGE, LogLine
from functions.observability.links import CONSOLE, LogsQuery
from functions.observability.severity import parse_severity

if TYPE_CHECKING:
    from functions.cli.parsing import Commands

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
    if is_local(api_url):
        return True
    link = job.get("logs_url")
    return bool(link) and not str(link).startswith(CONSOLE)


class Printer:
    """Prints lines as people read them, or as JSON Lines (--json --follow)."""

    def __init__(self, *, json_lines: bool) -> None:
        self.json_lines = json_lines

    def __call__(self, lines: list[LogLine]) -> None:
        for line in lines:
            if self.json_lines:
                sys.stdout.write(json.dumps(line.to_dict()) + "\n")
            else:
                console.print(render(line))
        sys.stdout.flush()


def follow(
    client: FanoutClient,
    job_id: str,
    source: LineSource,
    interval: float,
    show: Printer,
) -> int:
    """Print new lines until the job is terminal. The status is read before the lines, so
    every line written before it ended is in the last poll; one more poll after an interval
    picks up what is logged as it ends (its final event, the callback) and, in the cloud,
    what Cloud Logging had not made visible yet."""
    was_running = False
    while True:
        ended = client.job(job_id)["status"] in TERMINAL
        show(source.poll())
        if ended:
            if was_running:
                time.sleep(interval)
                show(source.poll())
            return 0
        was_running = True
        time.sleep(interval)  # polling the API (or Cloud Logging): the follow refresh rate


def _cloud_source(
    args: argparse.Namespace, job: Mapping[str, Any], batch_id: str | None, severity: str | None
) -> LineSource:
    # Imported here: the Cloud Logging client is slow to import and only a deployed job
    # needs it.
    from functions.observability.cloud_logs import CloudLogsReader, LogsFollower

    settings = Settings.from_env()
    project = args.project or settings.gcp_project
    if not project:
        raise UsageError(
            "the job's logs are in Cloud Logging: name its project with --project or "
            "FANOUT_GCP_PROJECT"
        )
    query = LogsQuery.for_job(
        Job.from_dict(job), project=project, service_prefix=settings.service_prefix
    )
    # A batch's lines carry its id: the job's time range holds them all.
    query = replace(query, batch_id=batch_id, severity=severity, event=args.event)
    return LogsFollower(CloudLogsReader(project), query)


def cmd_logs(args: argparse.Namespace) -> int:
    severity = parse_severity(args.severity) if args.severity else None
    target = Target.from_args(args)
    client = target.client
    job = client.job(args.job_id)
    job_id = str(job["job_id"])
    batch_id = batch_id_for(job_id, args.batch) if args.batch is not None else None
    source: LineSource
    if logs_are_local(target.api_url, job):
        source = LocalLines(client, job_id, batch_id=batch_id, severity=severity, event=args.event)
        interval = FOLLOW_LOCAL
    else:
        source = _cloud_source(args, job, batch_id, severity)
        interval = FOLLOW_CLOUD
    if args.interval is not None:
        interval = args.interval
    if args.follow:
        return follow(client, job_id, source, interval, Printer(json_lines=args.json))
    lines = source.poll()
    if args.json:
        print_json({"job_id": job_id, "lines": [line.to_dict() for line in lines]})
    else:
        Printer(json_lines=False)(lines)
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


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "logs", parents=list(parents), help="a job's log lines, oldest first (--follow: live)"
    )
    p.set_defaults(handler=cmd_logs)
    p.add_argument("job_id", metavar="JOB")
    p.add_argument("--batch", type=_batch_index, metavar="N", help="only batch N's lines")
    p.add_argument("--follow", action="store_true", help="print new lines until the job ends")
    p.add_argument("--severity", help="this severity and above (INFO, WARNING, ERROR, ...)")
    p.add_argument("--event", help="only this event (batch_failed, job_finalized, ...)")
    p.add_argument("--project", help="the Cloud Logging project (default FANOUT_GCP_PROJECT)")
    p.add_argument("--interval", type=_seconds, help="seconds between polls with --follow")
