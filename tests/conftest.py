"""Options shared by every suite."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.support.reports import PHASE_REPORTS

# The Cloud Storage and Firestore emulator fixtures serve several suites;
# `starts` prints how many stacks and emulators the run started; `background_stops` waits
# for the stacks passing tests left stopping; `ordering` runs the longest suites first.
pytest_plugins = [
    "tests.support.gcs",
    "tests.support.firestore",
    "tests.support.starts",
    "tests.support.background_stops",
    "tests.support.ordering",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--firestore",
        choices=("auto", "npm", "google", "both", "none"),
        default="auto",
        help="Firestore emulators the contract suite runs against. auto: the npm one, plus "
        "Google's when gcloud and its Firestore emulator are installed.",
    )


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can tell at teardown whether
    the test failed (the e2e stacks then print their processes' logs)."""
    report = yield
    item.stash.setdefault(PHASE_REPORTS, {})[report.when] = report
    return report
