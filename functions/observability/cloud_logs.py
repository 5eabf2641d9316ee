"""Reading a job's lines back from Cloud Logging, for `fanout logs` against a deployed stack.

The query is the same `LogsQuery` as the Logs Explorer link, sent as is. Entries are read
with the generated `LoggingServiceV2Client`, not `google.cloud.logging.Client.list_entries`:
the latter hides the API's page token behind a flat generator, and a page token is the
cursor `fanout logs` pages with.

Following a running job polls: Cloud Logging has no tail for this client, and entries can
become visible out of timestamp order (ingestion latency, clocks of different instances).
So each poll re-reads a window that reaches `LATE_ARRIVALS` back from the newest line seen
and drops the lines it already returned, by insert id.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from google.api_core.exceptions import GoogleAPICallError
from google.auth.exceptions import GoogleAuthError
from google.cloud.logging import ASCENDING
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.types import ListLogEntriesRequest, LogEntry

from functions.errors import CloudLogsError
from functions.observability.lines import (
    LABELS,
    MAX_LOG_PAGE,
    SOURCE_LOCATION,
    TRACE,
    LogLine,
    LogPage,
)
from functions.observability.links import LogsQuery

# How far back from the newest line a follower re-reads: entries arriving this late (or
# stamped this far behind another instance's clock) are still shown.
LATE_ARRIVALS = timedelta(minutes=2)


@dataclass(frozen=True, slots=True)
class CloudEntry:
    """A `LogLine` with what a follower needs to de-duplicate and window it."""

    insert_id: str
    timestamp: datetime
    line: LogLine


class CloudLogsReader:
    """Pages of one project's log entries, oldest first."""

    def __init__(self, project: str) -> None:
        self.project = project
        self._client: LoggingServiceV2Client | None = None

    def _logging(self) -> LoggingServiceV2Client:
        """Built at the first read: constructing it looks up credentials, which neither an
        import nor a CLI command that never reads Cloud Logging should do."""
        if self._client is None:
            try:
                self._client = LoggingServiceV2Client()
            except GoogleAuthError as error:
                raise CloudLogsError(f"cannot read Cloud Logging: {error}") from None
        return self._client

    def read(self, query: LogsQuery, *, page_token: str | None = None, limit: int = 100) -> LogPage:
        """One page of the entries matching exactly `query.filter`."""
        entries, next_token = self.read_entries(query, page_token=page_token, limit=limit)
        return LogPage([e.line for e in entries], next_cursor=next_token)

    def read_entries(
        self, query: LogsQuery, *, page_token: str | None = None, limit: int = 100
    ) -> tuple[list[CloudEntry], str | None]:
        """One page, with insert ids and timestamps; the token of the next page or None.
        A page can be empty and still have a next one (the API stops a search at a time
        limit), so callers page until the token is None."""
        request = ListLogEntriesRequest(
            resource_names=[f"projects/{self.project}"],
            filter=query.filter,
            order_by=ASCENDING,
            page_size=max(1, min(limit, MAX_LOG_PAGE)),
            page_token=page_token or "",
        )
        try:
            # The pager's first page is this request's answer; the next is ours to ask.
            response = next(iter(self._logging().list_log_entries(request=request).pages))
        except (GoogleAPICallError, GoogleAuthError) as error:
            raise CloudLogsError(f"cannot read Cloud Logging: {error}") from None
        entries = [to_cloud_entry(entry) for entry in response.entries]
        return entries, response.next_page_token or None

    def entries(self, query: LogsQuery, *, page_size: int = MAX_LOG_PAGE) -> Iterator[CloudEntry]:
        """Every entry matching `query`, page after page (the largest pages: the list
        method's quota counts requests, not entries)."""
        token: str | None = None
        while True:
            page, token = self.read_entries(query, page_token=token, limit=page_size)
            yield from page
            if token is None:
                return


@dataclass
class LogsFollower:
    """The lines of `query` not returned by an earlier `poll`, oldest first: the first poll
    returns everything so far, later ones what was written (or became visible) since."""

    reader: CloudLogsReader
    query: LogsQuery
    late: timedelta = LATE_ARRIVALS
    _seen: dict[str, datetime] = field(default_factory=dict)
    _newest: datetime | None = None

    def poll(self) -> list[LogLine]:
        start = self.query.start
        if self._newest is not None:
            start = max(start, self._newest - self.late)
        new: list[LogLine] = []
        for entry in self.reader.entries(replace(self.query, start=start)):
            if entry.insert_id in self._seen:
                continue
            self._seen[entry.insert_id] = entry.timestamp
            self._newest = max(self._newest or entry.timestamp, entry.timestamp)
            new.append(entry.line)
        # Entries before the next window's start are never read again; the filter's start
        # is whole seconds, hence the extra second.
        if self._newest is not None:
            horizon = self._newest - self.late - timedelta(seconds=1)
            self._seen = {key: at for key, at in self._seen.items() if at >= horizon}
        return new


def to_cloud_entry(entry: LogEntry) -> CloudEntry:
    """A `LogEntry` of the API as a `CloudEntry`, through its JSON form (the REST shape:
    camelCase keys, severity names, unset fields left out)."""
    resource: dict[str, Any] = LogEntry.to_dict(
        entry,
        use_integers_for_enums=False,
        preserving_proto_field_name=False,
        always_print_fields_with_no_presence=False,
    )
    timestamp = entry.timestamp if "timestamp" in entry else None
    line = line_from_resource(resource)
    return CloudEntry(
        # The API gives every entry an insert id; were one missing, an entry read twice
        # would still be recognised by its whole content.
        insert_id=resource.get("insertId") or json.dumps(resource, sort_keys=True),
        timestamp=timestamp.astimezone(UTC) if timestamp else datetime.now(UTC),
        line=line,
    )


def line_from_resource(resource: Mapping[str, Any]) -> LogLine:
    """A LogEntry in its REST (JSON) shape as a `LogLine`: the JSON payload as the local file
    has it, the entry's envelope (time, severity, labels, trace, source location) around it;
    a text payload is the message."""
    payload: dict[str, Any] = dict(_whole_numbers(resource.get("jsonPayload") or {}))
    if "textPayload" in resource:
        payload = {"message": str(resource["textPayload"])}
    location = resource.get("sourceLocation")
    if location and "line" in location:
        location = {**location, "line": int(location["line"])}
    structured = {
        **payload,
        "time": resource.get("timestamp", ""),
        "severity": resource.get("severity") or "DEFAULT",
        LABELS: resource.get("labels") or {},
        TRACE: resource.get("trace"),
        SOURCE_LOCATION: location,
    }
    return LogLine.from_structured(structured)


def _whole_numbers(value: Any) -> Any:
    """A JSON payload travels as a protobuf Struct, where every number is a double: give
    back the integers the service logged (counts, attempts), recursively."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _whole_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(item) for item in value]
    return value
