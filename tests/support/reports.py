"""Test outcomes that fixtures can read at teardown (stored by `tests/conftest.py`)."""

from __future__ import annotations

import pytest

PHASE_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


def failed(item: pytest.Item) -> bool:
    """True when the test's setup or call failed."""
    return any(report.failed for report in item.stash.get(PHASE_REPORTS, {}).values())
