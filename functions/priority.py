"""A job's priority class: which queue its batches wait in (docs/ingestion.md, "Priority")."""

from __future__ import annotations

from enum import StrEnum

from functions.named_values import parse_named


class Priority(StrEnum):
    """In the cloud each class is a Cloud Tasks queue of its own (infra/queue.tf); locally
    the dispatcher shares its slots between the classes in the same proportions."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


def parse_priority(value: str) -> Priority:
    """The `Priority` named by `value`; `InvalidArgument` naming the allowed values otherwise."""
    return parse_named(Priority, value, "priority")
