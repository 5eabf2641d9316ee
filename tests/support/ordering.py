"""The order test files run in: the suites that start stacks, emulators and browsers first,
the quick in-process ones last.

Under `--dist loadfile` each file runs whole on one worker, and a worker takes the next file
when it is free. With the long files first, the short ones fill in at the end and the
workers finish together. (xdist's own reordering, most tests first, sent the long files
last, and one worker ran the last of them while the others idled: `make test` passes
`--no-loadscope-reorder`.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

# Top-level test folders, from the most seconds per file to the least (`--junitxml` of a
# whole run, December 2026: e2e 38 s per file, browser 35, cli 13, web 10, contract 6, ...).
LONGEST_FIRST = (
    "e2e",
    "browser",
    "cli",
    "web",
    "contract",
    "ingestion",
    "infra",
    "queue",
    "observability",
    "callbacks",
    "service",
    "unit",
)
TESTS = Path(__file__).resolve().parents[1]


def _rank(item: pytest.Item) -> int:
    try:
        folder = item.path.relative_to(TESTS).parts[0]
    except ValueError:
        return len(LONGEST_FIRST)
    return LONGEST_FIRST.index(folder) if folder in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A stable sort: each file's tests stay together and in their own order.
    items.sort(key=_rank)
