"""The argparse pieces the commands share: the registry they add themselves to, the options
every API command takes (--api-url, --ingest-url, --json), and value checks that make a bad
value a usage error (exit 2) before anything is sent."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, TypeAlias

from functions.cli.output import add_json_option
from functions.cli.target import add_target_options

if TYPE_CHECKING:
    # What `ArgumentParser.add_subparsers` returns; each command module registers on it.
    # (Generic for type checkers only: subscripting it at run time fails.)
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def api_options() -> list[argparse.ArgumentParser]:
    """Parent parsers of every command that talks to an API: where, and --json."""
    shared = argparse.ArgumentParser(add_help=False)
    add_target_options(shared)
    add_json_option(shared)
    return [shared]


def positive_int(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, got {value!r}")
    return int(value)


def positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {value!r}")
    return seconds
