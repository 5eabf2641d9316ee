"""`fanout` (also `python -m functions.cli`): run the local stack, and submit, watch and
manage jobs on it or on a deployed Fanout.

run       start the local stack, ingest the sample corpus with live progress, print the
          result and a search over it, stop everything (what `make run` does)
dev       start the local stack and keep it up, printing its log lines (what `make dev` does)
submit    start an ingestion from flags or --file request.json; --watch follows it
watch     live progress bars of one or several jobs until they end
list      jobs, newest first, filtered by --status/--source/--client, a page at a time
          (alias: jobs)
show      a job: its stats, its failed batches with their errors, its links
cancel    cancel a job
retry     run a failed job's failed batches again
delete    delete an ended job
search    search a collection (hybrid: vector + full text), one hit per document
logs      a job's log lines (local stack or Cloud Logging), or --follow them
smoke     check a deployment end to end: submit a tiny ingestion, wait, search it, check
          its logs link, delete what it made; one PASS/FAIL line per step

The API commands talk to the local stack unless --api-url/--ingest-url (or FANOUT_API_URL /
FANOUT_INGEST_URL) name a deployed one; there every request carries a Google ID token from
Application Default Credentials. Each takes --json: one JSON document on stdout.

Exit codes: 0 done; 1 an API or runtime error (one `error:` line on stderr), or a watched
job failed; 2 bad usage, or a watched job was cancelled; 130 Ctrl-C (SIGINT), 143 `kill`
(SIGTERM), 129 a closed terminal (SIGHUP), as functions/cli/termination.py explains; 141 the
reader of stdout went away (`fanout watch J | head -1`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from functions.cli import jobs, local, logs, search, smoke, submit, termination, watch
from functions.cli.client import ApiError, ApiUnreachable
from functions.cli.errors import UsageError
from functions.cli.output import print_error, print_note
from functions.cli.parsing import api_options
from functions.errors import (
    ConfigError,
    FanoutError,
    InvalidArgument,
    ProcessCrashLoop,
    StartupError,
)

EXIT_ERROR, EXIT_USAGE, EXIT_CLOSED_PIPE = 1, 2, 141
# Errors of what was asked for, not of what happened: exit 2, like argparse's. A local
# stack that cannot start (a port in use, a crash loop) exits 2 as `make run` documents.
_USAGE_ERRORS: tuple[type[FanoutError], ...] = (
    UsageError,
    InvalidArgument,
    ConfigError,
    StartupError,
    ProcessCrashLoop,
)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="fanout",
        description=__doc__.split("\n\n", 1)[0].replace("\n", " ") if __doc__ else None,
    )
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")
    local.register(commands)
    shared = api_options()
    for module in (submit, watch, jobs, search, logs, smoke):
        module.register(commands, shared)
    return main


def describe(error: BaseException) -> tuple[str, int] | None:
    """The one line and exit code for an error the command expects; None for a bug, which
    keeps its traceback."""
    if isinstance(error, ApiUnreachable):
        if error.refused:
            return f"no Fanout API at {error.origin}; start one with `make dev`", EXIT_ERROR
        return str(error), EXIT_ERROR
    if isinstance(error, ApiError):
        return str(error), EXIT_ERROR
    if isinstance(error, _USAGE_ERRORS):
        return str(error), EXIT_USAGE
    if isinstance(error, FanoutError):
        return error.message, EXIT_ERROR
    return None


def _silence_stdout() -> None:
    """Python flushes stdout once more at exit; with the reader gone that would print a
    second complaint, so stdout goes to /dev/null from here."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass  # stdout is no real file (captured by a test): nothing will flush it


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # `kill` and a closing terminal stop the command as Ctrl-C does: `run` and `dev` start
    # children in their own sessions, which nothing else would stop.
    termination.install()
    try:
        code: int = args.handler(args)
        return code
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_CLOSED_PIPE
    except KeyboardInterrupt as interrupt:
        with contextlib.suppress(OSError):  # a closed terminal (SIGHUP) takes no more lines
            print_note("stopped")
        return termination.exit_code(interrupt)
    except Exception as error:
        described = describe(error)
        if described is None:
            raise
        message, code = described
        print_error(message)
        return code


if __name__ == "__main__":
    sys.exit(main())
