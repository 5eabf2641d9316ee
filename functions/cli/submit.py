"""`fanout submit`: start an ingestion, from flags or a JSON request file, and optionally
watch it to its end.

The request file is the ingest API's body (`-` reads it from stdin); flags given with it
override its fields. A --location that is a path (not a gs:// URI) is made absolute for the
local stack, whose functions run in another directory; for a deployed API it is sent as is.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from functions.cli.errors import UsageError
from functions.cli.output import console, print_json
from functions.cli.parsing import positive_int
from functions.cli.target import Target
from functions.cli.views import start_note
from functions.cli.watch import add_watch_options, watch_and_report
from functions.humanize import plural
from functions.priority import Priority

if TYPE_CHECKING:
    from functions.cli.parsing import Commands


def option(value: str) -> tuple[str, Any]:
    """`key=value` for the processor's options; the value is JSON when it parses as JSON
    (`delay_ms=50` is a number, `strict=true` a boolean), text otherwise."""
    key, sep, raw = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"an option is key=value, got {value!r}")
    try:
        return key, json.loads(raw)
    except ValueError:
        return key, raw


def read_request_file(path: str) -> dict[str, Any]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the request file {path}: {error}") from None
    try:
        request = json.loads(text)
    except ValueError as error:
        raise UsageError(f"the request file {path} is not valid JSON: {error}") from None
    if not isinstance(request, dict):
        raise UsageError(f"the request file {path} must hold a JSON object")
    return request


def _location(value: str, target: Target) -> str:
    if "://" in value or not target.local:
        return value
    return str(Path(value).resolve())


def build_request(args: argparse.Namespace, target: Target) -> dict[str, Any]:
    """The ingest request: the file's (if any), then the flags that were given."""
    request = read_request_file(args.file) if args.file else {}
    flags = {
        "source": args.source,
        "collection": args.collection,
        "batch_size": args.batch_size,
        "client_id": args.client_id,
        "request_id": args.request_id,
        "callback_url": args.callback_url,
        "priority": args.priority,
        "not_before": args.not_before,
    }
    request.update({key: value for key, value in flags.items() if value is not None})
    inputs = {
        "items": args.items,
        "location": None if args.location is None else _location(args.location, target),
        "items_from": None if args.items_from is None else _location(args.items_from, target),
    }
    for name, value in inputs.items():
        if value is not None:  # the one given replaces the file's
            for other in inputs:
                request.pop(other, None)
            request[name] = value
    if args.options:
        request["options"] = {**(request.get("options") or {}), **dict(args.options)}
    missing = [
        flag
        for flag, present in (
            ("--source", "source" in request),
            ("--collection", "collection" in request),
            ("--items, --location or --items-from", any(name in request for name in inputs)),
        )
        if not present
    ]
    if missing:
        raise UsageError(f"the request needs {', '.join(missing)} (or --file request.json)")
    return request


def cmd_submit(args: argparse.Namespace) -> int:
    target = Target.from_args(args)
    target.require_ingest()
    accepted = target.client.submit(build_request(args, target))
    job_id = str(accepted["job_id"])
    if not args.json:
        said = (
            "submitted" if accepted.get("created", True) else "already submitted (same request id):"
        )
        batches = plural(accepted.get("total_batches", 0), "batch")
        if accepted.get("planning"):
            batches = "planning: its items are read page by page"
        console.print(Text(f"{said} job {job_id} ({batches})"))
        if accepted.get("status") == "scheduled":
            console.print(Text(f"  scheduled: {start_note(accepted)}"))
        console.print(Text(f"  status: {accepted.get('status_url') or target.job_url(job_id)}"))
        if not args.watch:
            console.print(Text(f"  watch:  fanout watch {job_id}"))
    if args.watch:
        return watch_and_report(target, [job_id], args, {"submitted": accepted})
    if args.json:
        print_json(accepted)
    return 0


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "submit", parents=list(parents), help="start an ingestion (flags or --file), --watch it"
    )
    p.set_defaults(handler=cmd_submit)
    p.add_argument("--file", metavar="REQUEST.json", help="the ingest request as JSON (- : stdin)")
    p.add_argument("--source", help="the processor: documents, noop, ...")
    p.add_argument("--collection", help="the collection to write ([A-Za-z0-9_-], 1-64)")
    given = p.add_mutually_exclusive_group()
    given.add_argument("--items", nargs="+", metavar="ITEM", help="explicit items")
    given.add_argument("--location", help="a folder (local stack) or gs://bucket/prefix")
    given.add_argument(
        "--items-from",
        metavar="MANIFEST",
        help="a file of items, one a line (local stack) or gs://bucket/object",
    )
    p.add_argument("--batch-size", type=positive_int, help="items per batch")
    p.add_argument(
        "--priority",
        choices=[level.value for level in Priority],
        help="high runs ahead of a normal or low backlog (default: normal)",
    )
    p.add_argument(
        "--option",
        dest="options",
        type=option,
        action="append",
        metavar="KEY=VALUE",
        help="a processor option (repeatable); VALUE is JSON or text",
    )
    p.add_argument("--client-id", help="with --request-id: a resubmit returns the same job")
    p.add_argument("--request-id")
    p.add_argument("--callback-url", help="POSTed the job's summary when it ends")
    p.add_argument(
        "--not-before",
        metavar="TIME",
        help="start no batch before this RFC 3339 time, e.g. 2026-12-08T02:00:00Z"
        " (at most 30 days ahead)",
    )
    p.add_argument("--watch", action="store_true", help="watch it until it ends")
    add_watch_options(p)
