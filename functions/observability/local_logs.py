"""A job's lines from the local stack's log file, paged the way Cloud Logging pages them.

Every process of the local stack appends to one file (`LOCAL_LOG_FILE`), so a job's lines lie
among other jobs' and the file only grows. A page must cost about the same whether the file
holds one job or a month of them, so nothing here reads the whole file:
- a first page starts at `since` (the job's creation less a margin), found by binary search
  over byte offsets on the `time` each line starts with. Lines from several processes are in
  time order only to within milliseconds, which the margin covers;
- the scan reads forward in chunks and looks for the job's label with `bytes.find`, so only
  the lines that hold it are decoded;
- a call reads at most `budget` bytes; past it the page is returned short, with a cursor, as
  Cloud Logging does when a query scans much and matches little;
- a cursor is the byte offset where the scan stopped, tied to the file by its inode and first
  line, so a cursor into a file since deleted, rotated or truncated is refused, not misread.

A line is the job's when its `job_id` label is the job's id: the same filter as the Cloud
Logging query (`links.LogsQuery`), so both backends page the same lines.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from functions.errors import InvalidCursor
from functions.observability.lines import (
    DEFAULT_LOG_PAGE,
    LABELS,
    LOCAL_LOG_FILE,
    LogLine,
    LogPage,
    check_log_limit,
)
from functions.observability.severity import SEVERITIES, parse_severity, severity_rank
from functions.paging import decode_cursor, encode_cursor

CHUNK = 1 << 20
# Bytes one call may read. Cloud Logging also ends a page early on a long scan; here it bounds
# a page's time (a chunk is searched at memory speed; decoding is for matching lines only).
SCAN_BUDGET = 32 << 20
# The binary search stops once the range left is this small; a line-by-line skip does the rest.
_SEARCH_WINDOW = 64 << 10
_PROBE = 4 << 10
# `FanoutLogHandler` starts every line with its time, always in this one format, so times
# compare as bytes: {"time": "2026-11-23T19:13:49.457741Z", ...
_TIME_PREFIX = b'{"time": "'
_TIME_START = len(_TIME_PREFIX)
_TIME_END = _TIME_START + len("2026-11-23T19:13:49.457741Z")
# The file's first bytes (up to its first newline) identify it along with its inode: a file
# deleted and made again may get the same inode, never the same first line (its time).
_HEAD_BYTES = 256
_CURSOR_KIND = "logs"
_POSITION = re.compile(r"^(\d{1,18}):(\d{1,20}):([0-9a-f]{12})?$")


def read_job_logs(
    log_dir: Path,
    job_id: str,
    *,
    since: datetime,
    until: datetime | None = None,
    batch_id: str | None = None,
    severity: str | None = None,
    event: str | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LOG_PAGE,
    budget: int = SCAN_BUDGET,
) -> LogPage:
    """One page of `job_id`'s lines in `log_dir`, oldest first.

    Without a cursor the page starts at the first line at or after `since`; with one, where
    the page that gave it stopped (`since` is then unused). Lines written after `until` (a
    finished job's end, plus a margin) are left out, and the scan ends where they begin, or
    at the end of the file: `next_cursor` is then None. `resume_cursor` is where the scan
    stopped, always: a follower asks with it later and gets only the lines written since. A
    missing file is an empty page: the stack has logged nothing yet.
    """
    check_log_limit(limit)
    want = _Filter.build(
        job_id,
        batch_id=batch_id,
        severity=parse_severity(severity) if severity else None,
        event=event,
        until=_time_key(until) if until is not None else None,
    )
    position = _decode(cursor) if cursor is not None else None
    try:
        file = (log_dir / LOCAL_LOG_FILE).open("rb", buffering=0)
    except FileNotFoundError:
        if position is not None and position.offset > 0:
            raise InvalidCursor(f"cursor {_named(cursor)} is into a log file now gone") from None
        return LogPage([], None, _encode(_FileId(0, None), 0))
    with file:
        fd = file.fileno()
        size = os.fstat(fd).st_size
        file_id = _FileId.of(fd)
        if position is None:
            start, skip_before = _search(fd, size, _time_key(since)), _time_key(since)
        else:
            start, skip_before = position.check(fd, file_id, size, cursor or ""), None
        scan = _scan(
            fd,
            start,
            want,
            limit=limit,
            budget=max(budget, 1),
            skip_before=skip_before,
        )
        if file_id.head is None:  # the file was empty: its first line may have come since
            file_id = _FileId.of(fd)
    stop = _encode(file_id, scan.stop)
    return LogPage(scan.lines, next_cursor=None if scan.at_end else stop, resume_cursor=stop)


# -- matching ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Filter:
    """The page's filter: byte checks that rule most lines out undecoded, then the exact
    check on the decoded line (a byte check can also match inside a payload field)."""

    job_id: str
    batch_id: str | None
    min_rank: int
    event: str | None
    until: bytes | None
    # Searched for in the chunk: a line without it cannot match.
    needle: bytes
    # Every one of these must be in the line.
    also: tuple[bytes, ...]
    # One of these must be in the line (the severities at or above the minimum).
    severities: tuple[bytes, ...]

    @classmethod
    def build(
        cls,
        job_id: str,
        *,
        batch_id: str | None,
        severity: str | None,
        event: str | None,
        until: bytes | None,
    ) -> _Filter:
        # As the handler writes them: json.dumps with ensure_ascii=False, ": " after keys.
        job = _field(b"job_id", job_id)
        batch = _field(b"batch_id", batch_id) if batch_id is not None else None
        also = [job] if batch else []
        if event is not None:
            also.append(_field(b"event", event))
        min_rank = severity_rank(severity) if severity else 0
        severities = (
            tuple(_field(b"severity", name) for name in SEVERITIES[min_rank:]) if min_rank else ()
        )
        return cls(
            job_id=job_id,
            batch_id=batch_id,
            min_rank=min_rank,
            event=event,
            until=until,
            needle=batch or job,  # a batch's label is the rarer of the two
            also=tuple(also),
            severities=severities,
        )

    def accepts(self, raw: bytes) -> LogLine | None:
        if not all(part in raw for part in self.also):
            return None
        if self.severities and not any(name in raw for name in self.severities):
            return None
        if self.until is not None and (moment := _time_at(raw, 0)) and moment > self.until:
            return None
        try:
            line = json.loads(raw)
        except ValueError:  # not JSON, or not UTF-8: not a line the handler wrote
            return None
        if not isinstance(line, dict):
            return None
        labels = line.get(LABELS)
        if not isinstance(labels, dict) or labels.get("job_id") != self.job_id:
            return None
        if self.batch_id is not None and labels.get("batch_id") != self.batch_id:
            return None
        if self.event is not None and line.get("event") != self.event:
            return None
        if severity_rank(str(line.get("severity") or "DEFAULT")) < self.min_rank:
            return None
        return LogLine.from_structured(line)


def _field(key: bytes, value: str) -> bytes:
    return b'"' + key + b'": ' + json.dumps(value, ensure_ascii=False).encode()


# -- scanning ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Scan:
    lines: list[LogLine]
    # Where the next page (or a follower) starts: always the start of a line.
    stop: int
    # The scan reached the end of the file (or of the job's time range).
    at_end: bool


def _scan(
    fd: int,
    start: int,
    want: _Filter,
    *,
    limit: int,
    budget: int,
    skip_before: bytes | None,
) -> _Scan:
    """Matching lines from `start`, in chunks; only complete lines are read, so a line that
    a writer is still appending is left for a later call."""
    lines: list[LogLine] = []
    pos = start  # the file offset of buf[0], always the start of a line
    buf = b""
    read = 0
    last_end = start
    size = min(CHUNK, budget)
    while True:
        data = os.pread(fd, size, pos + len(buf))
        read += len(data)
        buf += data
        at_eof = len(data) < size
        end = buf.rfind(b"\n") + 1  # buf[:end] holds complete lines
        i = 0
        if skip_before is not None:
            i = _skip_older(buf, end, skip_before)
            if i < end:
                skip_before = None
        elif want.until and (first := _time_at(buf, 0)) is not None and first > want.until:
            return _Scan(lines, pos, at_end=True)  # past the job's end: nothing more to find
        while (hit := buf.find(want.needle, i, end)) >= 0:
            line_start = buf.rfind(b"\n", 0, hit) + 1
            i = buf.index(b"\n", hit, end) + 1
            line = want.accepts(buf[line_start:i])
            if line is None:
                continue
            if len(lines) == limit:  # a match past the page: there is a next page
                return _Scan(lines, last_end, at_end=False)
            lines.append(line)
            last_end = pos + i
        if len(lines) == limit:
            # No match after the page's last line, up to the end of what is read: the end of
            # the file, or not known yet.
            return _Scan(lines, pos + end, at_end=True) if at_eof else _Scan(lines, last_end, False)
        pos += end
        buf = buf[end:]
        if at_eof:
            return _Scan(lines, pos, at_end=True)
        if read >= budget and pos > start:  # out of budget, with progress made
            return _Scan(lines, pos, at_end=False)


def _time_at(buf: bytes, i: int) -> bytes | None:
    """The time of the line starting at buf[i], as bytes; None if it does not start with one."""
    if buf.startswith(_TIME_PREFIX, i) and buf[i + _TIME_END : i + _TIME_END + 1] == b'"':
        return buf[i + _TIME_START : i + _TIME_END]
    return None


def _skip_older(buf: bytes, end: int, since: bytes) -> int:
    """The offset in buf of the first complete line at or after `since`; `end` if none."""
    i = 0
    while i < end:
        moment = _time_at(buf, i)
        if moment is not None and moment >= since:
            return i
        i = buf.index(b"\n", i) + 1
    return end


def _search(fd: int, size: int, since: bytes) -> int:
    """A line start before the first line at or after `since`, and near it: every line
    before it is older (to within the lines' disorder, which the caller's margin covers)."""
    lo, hi = 0, size
    while hi - lo > _SEARCH_WINDOW:
        mid = (lo + hi) // 2
        start = _next_line_start(fd, mid, hi)
        moment = _time_at(os.pread(fd, _TIME_END + 1, start), 0) if start is not None else None
        if start is not None and moment is not None and moment < since:
            lo = start
        else:  # newer, or no timed line in [mid, hi): the answer is before mid or near hi
            hi = mid
    return lo


def _next_line_start(fd: int, offset: int, stop: int) -> int | None:
    """The first line start at or after `offset` (> 0) and before `stop`, if any."""
    at = offset - 1
    while at < stop:
        block = os.pread(fd, _PROBE, at)
        if not block:
            return None
        newline = block.find(b"\n")
        if newline >= 0:
            start = at + newline + 1
            return start if start < stop else None
        at += len(block)
    return None


def _time_key(moment: datetime) -> bytes:
    """`moment` as the handler writes times (naive means UTC)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z").encode()


# -- cursors -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _FileId:
    inode: int
    # A digest of the first line; None while the file is empty (or missing).
    head: str | None

    @classmethod
    def of(cls, fd: int) -> _FileId:
        first = os.pread(fd, _HEAD_BYTES, 0)
        if not first:
            return cls(os.fstat(fd).st_ino, None)
        newline = first.find(b"\n")
        head = first[: newline + 1] if newline >= 0 else first
        return cls(os.fstat(fd).st_ino, hashlib.blake2b(head, digest_size=6).hexdigest())


@dataclass(frozen=True, slots=True)
class _Position:
    offset: int
    file_id: _FileId

    def check(self, fd: int, file_id: _FileId, size: int, cursor: str) -> int:
        """The offset to read from; InvalidCursor unless it is a line start of this file.
        Offset 0 fits any file: the start of a file is always a line start."""
        if self.offset == 0:
            return 0
        if self.file_id != file_id:
            raise InvalidCursor(
                f"cursor {_named(cursor)} is into another log file: it was deleted or rotated"
            )
        if self.offset > size:
            raise InvalidCursor(f"cursor {_named(cursor)} points past the end of the log file")
        if os.pread(fd, 1, self.offset - 1) != b"\n":
            raise InvalidCursor(f"cursor {_named(cursor)} does not point at the start of a line")
        return self.offset


def _encode(file_id: _FileId, offset: int) -> str:
    return encode_cursor(_CURSOR_KIND, f"{offset}:{file_id.inode}:{file_id.head or ''}")


def _decode(cursor: str) -> _Position:
    """InvalidCursor (naming it) unless `cursor` is one `_encode` could have made."""
    try:
        value: str = decode_cursor(cursor, _CURSOR_KIND, str)
    except InvalidCursor:
        raise InvalidCursor(f"cursor {_named(cursor)} is not a cursor of these logs") from None
    match = _POSITION.match(value)
    if match is None:
        raise InvalidCursor(f"cursor {_named(cursor)} has no valid position")
    offset, inode, head = int(match[1]), int(match[2]), match[3]
    if offset > 0 and head is None:
        raise InvalidCursor(f"cursor {_named(cursor)} has no valid position")
    return _Position(offset, _FileId(inode, head))


def _named(cursor: str | None) -> str:
    text = cursor or ""
    return repr(text if len(text) <= 100 else text[:100] + "...")
