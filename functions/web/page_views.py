"""What the page templates show, built from jobs and batches: rows, links, the pager."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from functions.config import Settings
from functions.jobs import BATCH_STATUSES, Batch, Job, JobStatus
from functions.observability.links import logs_url
from functions.service import TaskCheck
from functions.store.protocol import DEFAULT_PAGE_SIZE, Page
from functions.web.page_models import BatchPageQuery, JobPageQuery
from functions.web.paging import Pager, decode_trail

STATUSES: tuple[str, ...] = tuple(status.value for status in JobStatus)
# A job's batches are never scheduled: its page counts and filters these.
BATCH_STATUS_NAMES: tuple[str, ...] = tuple(status.value for status in BATCH_STATUSES)

Params = Mapping[str, str | Sequence[str]]


def ui_path(*parts: str) -> str:
    """/ui/<parts>, each part quoted as one path segment."""
    return "/ui/" + "/".join(urllib.parse.quote(part, safe="") for part in parts)


def with_query(path: str, params: Params) -> str:
    query = urllib.parse.urlencode(
        [(k, v) for k, values in params.items() for v in _as_list(values)]
    )
    return f"{path}?{query}" if query else path


def _as_list(values: str | Sequence[str]) -> Sequence[str]:
    return [values] if isinstance(values, str) else values


def pager_for(page: Page[Any], query: JobPageQuery | BatchPageQuery) -> Pager:
    return Pager(
        cursor=query.cursor,
        trail=decode_trail(query.back),
        next_cursor=page.next_cursor,
        shown=len(page.items),
        total=page.total,
        limit=query.limit,
    )


@dataclass(frozen=True)
class PagerLinks:
    """The pager's neighbours as URLs of the same filters."""

    pager: Pager
    first: str | None
    prev: str | None
    next: str | None

    @classmethod
    def build(cls, pager: Pager, path: str, filters: Params) -> PagerLinks:
        def link(params: dict[str, str] | None) -> str | None:
            return None if params is None else with_query(path, {**filters, **params})

        return cls(
            pager=pager,
            first=link(pager.first_params),
            prev=link(pager.prev_params),
            next=link(pager.next_params),
        )


def job_filters(query: JobPageQuery) -> dict[str, str | list[str]]:
    """The list's filters as query parameters (the page stays out: links set it)."""
    filters: dict[str, str | list[str]] = {}
    if query.status:
        filters["status"] = [s.value for s in query.status]
    if query.source:
        filters["source"] = query.source
    if query.client_id:
        filters["client_id"] = query.client_id
    if query.priority:
        filters["priority"] = query.priority.value
    if query.limit != DEFAULT_PAGE_SIZE:
        filters["limit"] = str(query.limit)
    return filters


def batch_filters(query: BatchPageQuery) -> dict[str, str]:
    filters: dict[str, str] = {}
    if query.status:
        filters["status"] = query.status.value
    if query.limit != DEFAULT_PAGE_SIZE:
        filters["limit"] = str(query.limit)
    return filters


def batch_page_params(query: BatchPageQuery) -> dict[str, str]:
    """Everything that names the page of batches shown: the live region reloads the same."""
    params = batch_filters(query)
    if query.cursor:
        params["cursor"] = query.cursor
    if query.back:
        params["back"] = query.back
    return params


@dataclass(frozen=True)
class BatchRow:
    """One line of a job's batches table."""

    batch: Batch
    logs_url: str
    failed_items: list[tuple[str, str]]
    # A pending batch's task as the queue tells it (dropped: the sweeper re-dispatches it).
    task: TaskCheck | None = None

    @classmethod
    def build(
        cls, batch: Batch, job: Job, settings: Settings, task: TaskCheck | None = None
    ) -> BatchRow:
        details = batch.error_details or {}
        failed = details.get("failed_items") or {}
        items = [(str(item), str(error)) for item, error in dict(failed).items()]
        return cls(
            batch=batch, logs_url=logs_url(job, settings, batch), failed_items=items, task=task
        )


@dataclass(frozen=True)
class RequestFacts:
    """What the job was asked to do, from the request it keeps."""

    item_count: int | None
    location: str | None
    batch_size: int | None
    options: str | None

    @classmethod
    def of(cls, job: Job) -> RequestFacts:
        asked = job.request
        options = asked.get("options") or None
        return cls(
            item_count=_int_or_none(asked.get("item_count")),
            location=asked.get("location"),
            batch_size=_int_or_none(asked.get("batch_size")),
            options=json.dumps(options, sort_keys=True) if options else None,
        )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def percent(job: Job) -> int:
    return int(job.progress * 100)
