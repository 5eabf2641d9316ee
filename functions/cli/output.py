"""Where the commands print. People get rich text on stdout; scripts (`--json`) get exactly
one JSON document on stdout; errors are one line on stderr."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from rich.console import Console, RenderableType
from rich.text import Text

from functions import humanize
from functions.humanize import relative_time, start_time

UNBOUNDED = 10_000  # columns: wider than any table


class _Stdout(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (`fanout watch J | head -1`). Rich would exit 1 here, which
        reads as "a job failed"; instead nothing more is printed and the command ends with
        `BrokenPipeError`, which `main` turns into a silent exit 141, as SIGPIPE would."""
        self.quiet = True
        raise BrokenPipeError


# soft_wrap: never break URLs, paths and error lines across lines (a pipe is 80 wide).
console: Console = _Stdout(soft_wrap=True)
errors = Console(stderr=True, soft_wrap=True, highlight=False)


def print_table(table: RenderableType) -> None:
    """On a terminal a table fits the screen; into a pipe or a file (80 columns to rich) it
    keeps its natural width, so no value is cut for a reader that has no screen."""
    if console.is_terminal:
        console.print(table)
        return
    natural = console.measure(table, options=console.options.update_width(UNBOUNDED)).maximum
    Console(file=console.file, width=max(console.width, natural)).print(table)


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one JSON document for scripts, nothing else"
    )


def print_json(document: Any) -> None:
    """The command's one JSON document, plain (no colour even on a terminal)."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()


def print_error(message: str) -> None:
    """One line on stderr; the message is shown as text, never read as markup."""
    errors.print(Text.assemble(("error:", "bold red"), " ", message))


def print_note(message: str) -> None:
    """One plain line on stderr (a Ctrl-C acknowledgement): not part of the output."""
    errors.print(Text(message))


def parse_time(value: Any) -> datetime | None:
    """An API timestamp (ISO 8601) as an aware datetime; None if absent or malformed."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def ago(value: Any, now: datetime | None = None) -> str:
    """How long ago an API timestamp was (`5 min ago`); an empty string when there is no
    time."""
    moment = parse_time(value)
    return "" if moment is None else relative_time(moment, now or datetime.now(UTC))


def starts(value: Any, now: datetime | None = None) -> str:
    """When a scheduled job starts, from its API `not_before` (`starts in 2 h`); an empty
    string when there is no time."""
    moment = parse_time(value)
    return "" if moment is None else start_time(moment, now or datetime.now(UTC))


def duration(seconds: float | None) -> str:
    """Seconds as people read them (`3 min 5 s`); a dash when unknown."""
    return humanize.duration(None if seconds is None else timedelta(seconds=seconds))
