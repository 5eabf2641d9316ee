"""What a cleanup_jobs call asks for: a dry run only when it clearly says so, and a clear
error for anything it cannot mean (a misspelt dry run must never run a real cleanup)."""

from __future__ import annotations

from typing import Any

import pydantic
import pytest

from functions.cleanup_request import CleanupRequest
from functions.errors import InvalidArgument


@pytest.mark.parametrize(
    ("query", "body", "dry_run"),
    [
        ({}, None, False),  # Cloud Scheduler: no query, no body
        ({}, {}, False),
        ({"dry_run": ["true"]}, None, True),
        ({"dry_run": ["1"]}, None, True),
        ({"dry_run": ["false"]}, None, False),
        ({}, {"dry_run": True}, True),
        ({}, {"dry_run": False}, False),
        ({"dry_run": ["true"]}, {"dry_run": True}, True),
        ({"dry_run": ["true"]}, {}, True),
    ],
)
def test_what_a_call_asks_for(
    query: dict[str, list[str]], body: dict[str, Any] | None, dry_run: bool
) -> None:
    assert CleanupRequest.parse(query, body).dry_run is dry_run


@pytest.mark.parametrize(
    ("query", "body", "field"),
    [
        ({"dry_run": ["maybe"]}, None, "dry_run"),
        ({"dry_run": [""]}, None, "dry_run"),
        ({"dryrun": ["true"]}, None, "dryrun"),
        ({}, {"dry_run": "true"}, "dry_run"),  # the body takes a JSON boolean
        ({}, {"dry_run": 1}, "dry_run"),
        ({}, {"dry_run": True, "force": True}, "force"),
    ],
)
def test_bad_values_name_their_field(
    query: dict[str, list[str]], body: dict[str, Any] | None, field: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as raised:
        CleanupRequest.parse(query, body)
    assert [".".join(map(str, e["loc"])) for e in raised.value.errors()] == [field]


def test_a_repeated_or_contradicted_dry_run_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="'dry_run' is given 2 times"):
        CleanupRequest.parse({"dry_run": ["true", "false"]}, None)
    with pytest.raises(InvalidArgument, match="dry_run is True in the query and False in the"):
        CleanupRequest.parse({"dry_run": ["true"]}, {"dry_run": False})
