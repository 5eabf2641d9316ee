"""JSON views of jobs and batches, for the API, the callbacks and the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from functions.jobs import Batch, Job


def jsonable(value: Any) -> Any:
    """`value` with datetimes as ISO 8601 strings (UTC as "Z", like the API's models),
    recursively."""
    if isinstance(value, datetime):
        text = value.isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def job_json(job: Job) -> dict[str, Any]:
    data: dict[str, Any] = jsonable(job.to_dict())
    duration = job.duration()
    data["duration_seconds"] = None if duration is None else round(duration.total_seconds(), 3)
    return data


def batch_json(batch: Batch, *, items: bool = False) -> dict[str, Any]:
    """A batch; its item list only on request (it can be long)."""
    data: dict[str, Any] = jsonable(batch.to_dict())
    data["item_count"] = len(batch.items)
    if not items:
        del data["items"]
    return data
