"""The local stack's commands: `run` (what `make run` does) and `dev` (what `make dev` does).

run  start the stack, generate and ingest the sample corpus with live progress, print the
     result, the files that failed on purpose and a search over the new collection, stop
     everything; exit 0 when only the planted files failed
dev  start the stack and keep it up, printing its URLs and every line its processes log,
     until Ctrl-C (or `kill`, or a closed terminal)

With `--cloud emulated` both run the deployed shape on Google's emulators instead
(functions/local/emulated.py): `run` uploads the corpus to the Cloud Storage emulator and
publishes the ingestion on the Pub/Sub emulator's ingest topic, as a deployment's callers do.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from functions.cli import termination
from functions.cli.client import FanoutClient
from functions.cli.output import console
from functions.cli.search import hits_table
from functions.cli.views import failed_items, job_table, links
from functions.cli.watch import display_for, watch_jobs
from functions.config import CliSettings
from functions.errors import StartupError
from functions.humanize import plural
from functions.local.emulators import ROOT
from functions.local.stack import LocalStack, StackConfig
from functions.observability.console import LogTailer, render
from functions.observability.lines import LogLine

if TYPE_CHECKING:
    from functions.cli.parsing import Commands
    from functions.local.emulated import EmulatedCloud

DEMO_QUERY = "how do I stop a job that is already running?"
# The client id of `run`'s job, whose request id finds the job a published message made.
RUN_CLIENT_ID = "fanout-run"
# How long a published ingestion may take to show up as a job.
PUBLISHED_JOB_SECONDS = 60.0
DEV_TARGETS = ("ingest", "jobs_api", "run_batch", "cleanup_jobs", "ingest_pubsub")


def _report_leftovers(stack: LocalStack) -> None:
    if stack.leftovers_ended:
        console.print(
            f"[yellow]Ended {plural(stack.leftovers_ended, 'process group')} left running by "
            f"an earlier stack in {stack.state_dir}[/]"
        )


@contextmanager
def _saying_so_when_stopped() -> Iterator[None]:
    """A signal stops the stack on the way out (LocalStack.__exit__), which takes a few
    seconds: say so first (if the terminal is still there to show it)."""
    try:
        yield
    except KeyboardInterrupt:
        with suppress(OSError):
            console.print("Stopping the local stack ... (a second Ctrl-C hurries it)")
            console.file.flush()
        raise


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


def _print_where(job: dict[str, Any], stack: LocalStack, collection: str) -> None:
    api_url, job_id = stack.url("jobs_api"), job["job_id"]
    console.print("Where to look next:")
    console.print(
        links(
            [
                ("job", f"{api_url}/jobs/{job_id}"),
                ("batches", f"{api_url}/jobs/{job_id}/batches"),
                ("page", f"{api_url}/ui/jobs/{job_id}"),
                ("logs", job.get("logs_url")),
                ("its lines", f"fanout logs {job_id} --api-url {api_url}"),
                ("search it", f'fanout search {collection} "your question" --api-url {api_url}'),
                ("log files", f"{stack.logs}/"),
            ]
        )
    )
    # `run` stops its stack as soon as this is printed: say how to get the links back.
    if stack.config.cloud == "local" and stack.config.store == "sqlite":
        console.print(
            "These links need the stack, which stops now: make dev brings it back, "
            "with this job in it."
        )
    else:
        console.print(
            "These links need the stack, which stops now, and its emulators keep nothing: "
            "make dev starts it again, empty."
        )


def _submit(stack: LocalStack, client: FanoutClient, request: dict[str, Any]) -> str:
    """Submit the sample ingestion as the stack's callers do: POST it to ingest, or (the
    emulated cloud) upload the corpus to Cloud Storage and publish the request on the
    ingest topic. Returns the job's id."""
    if stack.cloud is None:
        accepted = client.submit(request)
        console.print(
            f"Submitted job {accepted['job_id']} ({plural(accepted['total_batches'], 'batch')})\n"
            f"  status: {accepted['status_url']}"
        )
        return str(accepted["job_id"])
    assert stack.cloud.topic is not None
    location = stack.cloud.upload(Path(request["location"]), "sample-corpus")
    request = {
        **request,
        "location": location,
        "client_id": RUN_CLIENT_ID,
        "request_id": uuid.uuid4().hex,
    }
    message_id = stack.cloud.topic.publish(request)
    console.print(
        f"Uploaded the corpus to {location}; published the ingestion as message "
        f"{message_id} on {stack.cloud.topic.topic_path()}"
    )
    job_id = _published_job(client, request["request_id"])
    console.print(f"ingest_pubsub submitted job {job_id}")
    return job_id


def _published_job(client: FanoutClient, request_id: str) -> str:
    """The job that ingest_pubsub made for `request_id`, once it exists."""
    deadline = time.monotonic() + PUBLISHED_JOB_SECONDS
    while time.monotonic() < deadline:
        for job in client.jobs(client_id=RUN_CLIENT_ID)["jobs"]:
            if job.get("request_id") == request_id:
                return str(job["job_id"])
        time.sleep(0.5)  # polling the API until the push has been handled
    raise StartupError(
        f"no job for the published ingestion after {PUBLISHED_JOB_SECONDS:g} s; "
        "see ingest_pubsub.log and pubsub-google.log in the stack's logs"
    )


def cmd_run(args: argparse.Namespace) -> int:
    # Imported here: it brings python-docx along, which no other command needs.
    from functions.local.sample_corpus import generate

    _show_supervision()
    config = _stack_config(args, sweep_interval=10.0)
    corpus = args.state_dir.resolve() / "sample-corpus"
    files = generate(corpus)
    bad = [f.path for f in files if f.phrase is None and f.format != "unknown"]
    console.print(
        f"Sample corpus: {len(files)} files in {corpus} "
        f"(on purpose: {', '.join(bad)} fail, and one file of an unknown type is skipped)"
    )
    console.print(f"Starting the local stack ({_shape(args)}) ...")
    stack = LocalStack(config)
    termination.on_repeat(stack.hurry)
    with stack, _saying_so_when_stopped():
        _report_leftovers(stack)
        try:
            client = FanoutClient(stack.url("ingest"), stack.url("jobs_api"))
            request = {
                "source": "documents",
                "collection": args.collection,
                "location": str(corpus),
                "batch_size": args.batch_size,
            }
            job_id = _submit(stack, client, request)
            [job] = watch_jobs(client, [job_id], display_for(console, quiet=False))
            console.print(job_table(job))
            failures = client.batches(job["job_id"], status="failed", limit="200")["batches"]
            shown, failed = failed_items(failures)
            console.print(shown)
            console.print(hits_table(client.search(args.collection, args.query)))
            _print_where(job, stack, args.collection)
            # The corpus fails `len(bad)` files on purpose; any other failure is a real one.
            return 0 if job["status"] != "cancelled" and failed == len(bad) else 1
        except OSError:
            stack.check()  # the stack stopped itself (a crash loop): that is the error
            raise


def _stack_config(args: argparse.Namespace, *, sweep_interval: float) -> StackConfig:
    """The stack `run` and `dev` start, from their shared options. The folders of the
    user's own it may ingest: FANOUT_ALLOWED_ROOTS, then --allow."""
    return StackConfig(
        state_dir=args.state_dir,
        port_base=args.port_base,
        store=args.store,
        cloud=args.cloud,
        sweep_interval=sweep_interval,
        allowed_roots=(*CliSettings.from_env().allowed_roots, *args.allow),
    )


def _shape(args: argparse.Namespace) -> str:
    if args.cloud == "emulated":
        return "the deployed shape on Google's emulators"
    return f"{args.store} store"


def print_lines(lines: list[LogLine]) -> None:
    for line in lines:
        console.print(render(line))


def cmd_dev(args: argparse.Namespace) -> int:
    # Imported here: the log handler brings the Cloud Logging library along.
    from functions.observability.lines import LOCAL_LOG_FILE

    _show_supervision()
    config = _stack_config(args, sweep_interval=30.0)
    stack = LocalStack(config)
    termination.on_repeat(stack.hurry)
    # The console view: every line the stack's processes log from now on, as it is written.
    tailer = LogTailer(stack.logs / LOCAL_LOG_FILE, lambda line: print_lines([line])).start()
    try:
        with stack, _saying_so_when_stopped():
            _report_leftovers(stack)
            for target in DEV_TARGETS:
                console.print(Text(f"  {target:<14} {stack.url(target)}"))
            if stack.cloud is not None:
                _print_emulators(stack.cloud)
            console.print(f"State and logs in {stack.state_dir}. Ctrl-C stops everything.")
            console.file.flush()  # the URLs must reach a pipe (`make dev | tee`) right away
            stack.wait()  # until Ctrl-C, or a crash loop stops the stack (raised here)
    finally:
        tailer.stop()
    return 0


def _print_emulators(cloud: EmulatedCloud) -> None:
    """Where the emulators listen, and the topic that ingests what is published on it."""
    assert cloud.topic is not None
    for name, host in {**cloud.hosts(), "PUBSUB_EMULATOR_HOST": cloud.topic.host}.items():
        console.print(Text(f"  {name:<27} {host}"))
    console.print(Text(f"  ingest topic {cloud.topic.topic_path()} (push to ingest_pubsub)"))


def register(commands: Commands) -> None:
    for name, handler, summary in (
        ("run", cmd_run, "start the local stack, ingest the sample corpus, stop (make run)"),
        ("dev", cmd_dev, "start the local stack and keep it up until Ctrl-C (make dev)"),
    ):
        p = commands.add_parser(name, help=summary)
        p.set_defaults(handler=handler)
        p.add_argument("--store", choices=("sqlite", "firestore"), default="sqlite")
        p.add_argument(
            "--cloud",
            choices=("local", "emulated"),
            default="local",
            help="emulated: the deployed shape (Firestore, Cloud Tasks, Pub/Sub and Cloud "
            "Storage emulators; each function with infra/'s environment)",
        )
        p.add_argument("--port-base", type=int, default=8081)
        p.add_argument(
            "--allow",
            type=Path,
            action="append",
            default=[],
            metavar="DIR",
            help="a folder of your own requests may ingest (repeatable); FANOUT_ALLOWED_ROOTS "
            "adds more; the sample corpus is always allowed",
        )
        p.add_argument("--state-dir", type=Path, default=ROOT / ".local")
        if name == "run":
            p.add_argument("--batch-size", type=int, default=10)
            p.add_argument("--collection", default="samples")
            p.add_argument("--query", default=DEMO_QUERY, help="the search printed at the end")
