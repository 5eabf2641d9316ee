"""The planner's pure parts: page sizes, task names and bodies (functions/planner.py)."""

from __future__ import annotations

import json

import pytest

from functions.errors import InvalidArgument
from functions.planner import (
    PAGE_BATCHES,
    PAGE_ITEMS,
    PlanTask,
    page_batches,
    parse_plan_task,
    plan_task_body,
)


@pytest.mark.parametrize(
    ("batch_size", "batches"),
    [(1, PAGE_BATCHES), (80, PAGE_BATCHES), (100, PAGE_ITEMS // 100), (1000, 20)],
)
def test_a_page_holds_at_most_its_items_and_its_batches(batch_size: int, batches: int) -> None:
    """A page holds at most one commit's batches and PAGE_ITEMS items (one batch at least)."""
    assert page_batches(batch_size) == batches
    assert page_batches(batch_size) * batch_size <= max(PAGE_ITEMS, batch_size)


def test_a_planner_task_body_round_trips_and_a_batch_task_is_not_one() -> None:
    """run_batch tells a planner task from a batch task by its body."""
    body = json.loads(plan_task_body("j", 3, "https://worker/"))
    assert parse_plan_task(body) == PlanTask("j", 3, "https://worker/")
    assert parse_plan_task({"plan": "j", "page": 0}) == PlanTask("j", 0, None)
    assert parse_plan_task({"batch_id": "b"}) is None


@pytest.mark.parametrize(
    "body",
    [
        {"plan": "j"},
        {"plan": 5, "page": 0},
        {"plan": "j", "page": True},
        {"plan": "j", "page": -1},
        {"plan": "j", "page": 0, "worker_url": 7},
    ],
)
def test_a_malformed_planner_task_is_refused(body: dict[str, object]) -> None:
    """A malformed planner task body is a typed InvalidArgument, not a crash."""
    with pytest.raises(InvalidArgument, match="planner task"):
        parse_plan_task(body)
