"""Reading one job's lines from the local stack's shared log file, as the real handler
writes it: the job's lines only, filtered and paged like Cloud Logging, without reading the
whole file."""

from __future__ import annotations

import base64
import json
import logging
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from functions.errors import InvalidArgument
from functions.observability.events import Event
from functions.observability.lines import LogLine, LogPage
from functions.observability.local_logs import read_job_logs
from functions.paging import encode_cursor
from tests.observability.conftest import LogFile, LogFiles

JOB = "job-1"
# Its id starts with JOB's: a prefix match must not take its lines for JOB's.
LONGER = "job-10"
OTHER = "job-2"
B1, B2 = f"{JOB}_0001", f"{JOB}_0002"


@pytest.fixture
def since() -> datetime:
    """The start of the job's range: before any line the test writes in real time."""
    return datetime.now(UTC) - timedelta(minutes=1)


def read(log: LogFile, since: datetime, job: str = JOB, **filters: Any) -> LogPage:
    return read_job_logs(log.dir, job, since=since, **filters)


def messages(lines: list[LogLine]) -> list[str]:
    return [line.message.splitlines()[0] for line in lines]


def all_pages(log: LogFile, since: datetime, **filters: Any) -> list[LogPage]:
    pages = [read(log, since, **filters)]
    while pages[-1].next_cursor is not None:
        assert len(pages) < 1000, "pagination does not end"
        pages.append(read(log, since, cursor=pages[-1].next_cursor, **filters))
    return pages


def write_job(log: LogFile) -> None:
    """JOB's lines among other jobs' lines, lines with no job, and a line that is no JSON."""
    log.line("submitted", job=JOB, event=Event.SUBMITTED)
    log.line("other job submitted", job=OTHER, event=Event.SUBMITTED)
    log.line("longer id submitted", job=LONGER, event=Event.SUBMITTED)
    log.line("claimed b1", job=JOB, batch=B1, event=Event.BATCH_CLAIMED)
    log.line("no job here")
    log.line("reading b1", job=JOB, batch=B1, level=logging.DEBUG)
    log.raw(b'not json "job_id": "job-1"\n')
    log.line("slow b1", job=JOB, batch=B1, level=logging.WARNING)
    # Another job's line whose payload (not its labels) names JOB.
    log.line("swept", job=OTHER, event=Event.SWEPT, job_id=JOB)
    log.line("claimed b2", job=JOB, batch=B2, event=Event.BATCH_CLAIMED)
    log.error("b1 crashed", job=JOB, batch=B1)
    log.line(
        "b1 failed",
        job=JOB,
        batch=B1,
        event=Event.BATCH_FAILED,
        level=logging.WARNING,
        failed_items={"x.pdf": "bad"},
    )
    log.line("claimed longer", job=LONGER, batch=f"{LONGER}_0001", event=Event.BATCH_CLAIMED)
    log.line("b2 done", job=JOB, batch=B2, event=Event.BATCH_COMPLETED)
    log.line("finalized", job=JOB, event=Event.JOB_FINALIZED)


ALL = [
    "submitted",
    "claimed b1",
    "reading b1",
    "slow b1",
    "claimed b2",
    "b1 crashed",
    "b1 failed",
    "b2 done",
    "finalized",
]


def test_a_page_holds_only_the_jobs_lines_in_file_order(log_file: LogFile, since: datetime) -> None:
    """Exactly the lines labelled with the job, in the order written: not other jobs' (not
    one whose id starts with the job's, not one naming the job in its payload), not lines
    with no job, not lines that are not JSON."""
    write_job(log_file)
    page = read(log_file, since)
    assert messages(page.lines) == ALL
    assert page.next_cursor is None and page.resume_cursor is not None
    assert all(line.labels["job_id"] == JOB for line in page.lines)
    crashed = page.lines[ALL.index("b1 crashed")]
    assert crashed.severity == "ERROR" and "ZeroDivisionError" in crashed.message
    failed = page.lines[ALL.index("b1 failed")]
    assert failed.event == "batch_failed" and failed.fields == {"failed_items": {"x.pdf": "bad"}}
    assert failed.labels["batch_id"] == B1 and failed.time.endswith("Z")
    assert messages(read(log_file, since, job=LONGER).lines) == [
        "longer id submitted",
        "claimed longer",
    ]


def test_batch_severity_and_event_filters(log_file: LogFile, since: datetime) -> None:
    """batch_id keeps the batch's lines, severity is a minimum (any case), event matches the
    payload's event; filters combine."""
    write_job(log_file)
    assert messages(read(log_file, since, batch_id=B1).lines) == [
        "claimed b1",
        "reading b1",
        "slow b1",
        "b1 crashed",
        "b1 failed",
    ]
    assert messages(read(log_file, since, severity="warning").lines) == [
        "slow b1",
        "b1 crashed",
        "b1 failed",
    ]
    assert messages(read(log_file, since, severity="ERROR").lines) == ["b1 crashed"]
    assert messages(read(log_file, since, severity="DEFAULT").lines) == ALL
    assert messages(read(log_file, since, event="batch_claimed").lines) == [
        "claimed b1",
        "claimed b2",
    ]
    assert messages(read(log_file, since, batch_id=B2, event="batch_claimed").lines) == [
        "claimed b2"
    ]
    assert messages(read(log_file, since, batch_id=B1, severity="WARNING").lines) == [
        "slow b1",
        "b1 crashed",
        "b1 failed",
    ]
    assert read(log_file, since, batch_id=f"{OTHER}_0001").lines == []
    with pytest.raises(InvalidArgument, match="unknown severity 'LOUD'"):
        read(log_file, since, severity="LOUD")


@pytest.mark.parametrize("limit", [1, 2, 4, 9])
def test_pages_return_every_line_once_in_order(
    log_file: LogFile, since: datetime, limit: int
) -> None:
    """Following next_cursor gives every line exactly once, in order; a page is full until
    the last, and the last page (even a full one) says there is no next page."""
    write_job(log_file)
    pages = all_pages(log_file, since, limit=limit)
    assert [messages(page.lines) for page in pages] == [
        ALL[i : i + limit] for i in range(0, len(ALL), limit)
    ]
    filtered = all_pages(log_file, since, limit=2, batch_id=B1)
    assert [m for page in filtered for m in messages(page.lines)] == messages(
        read(log_file, since, batch_id=B1).lines
    )


def test_resume_cursor_gives_only_lines_written_since(log_file: LogFile, since: datetime) -> None:
    """A follower asking again with resume_cursor gets the job's new lines, once each."""
    write_job(log_file)
    first = read(log_file, since)
    log_file.line("late one", job=JOB, event=Event.CALLBACK_SENT)
    log_file.line("not ours", job=OTHER)
    log_file.line("late two", job=JOB, batch=B2, level=logging.ERROR)
    second = read(log_file, since, cursor=first.resume_cursor)
    assert messages(second.lines) == ["late one", "late two"]
    third = read(log_file, since, cursor=second.resume_cursor)
    assert third.lines == [] and third.next_cursor is None
    assert third.resume_cursor == second.resume_cursor


def test_a_line_being_written_is_returned_once_complete(
    log_files: LogFiles, since: datetime
) -> None:
    """A partial last line (a writer mid-append) is not returned; the follower gets it, once,
    when it is complete."""
    log = log_files("logs")
    log.line("before", job=JOB)
    scratch = log_files("scratch")
    scratch.line("arriving", job=JOB, batch=B1)
    whole = scratch.path.read_bytes()
    log.raw(whole[:100])
    page = read(log, since)
    assert messages(page.lines) == ["before"] and page.next_cursor is None
    log.raw(whole[100:])
    completed = read(log, since, cursor=page.resume_cursor)
    assert messages(completed.lines) == ["arriving"]
    assert read(log, since, cursor=completed.resume_cursor).lines == []


def test_first_page_starts_at_since_without_reading_the_earlier_file(
    log_file: LogFile, since: datetime
) -> None:
    """Lines before `since` (here the job's own, from an hour earlier) are left out, and the
    start is found without scanning them: with a budget far smaller than the earlier part
    of the file, the first page still holds the new lines and is complete."""
    log_file.at = since - timedelta(hours=1)
    for i in range(2000):
        log_file.line(f"old {i}", job=(JOB, OTHER)[i % 2], batch=B1)
        log_file.at += timedelta(milliseconds=1)
    log_file.at = None
    for i in range(5):
        log_file.line(f"new {i}", job=JOB, batch=B1)
        log_file.line(f"other new {i}", job=OTHER)
    budget = 64 << 10
    assert log_file.path.stat().st_size > 10 * budget
    page = read(log_file, since, budget=budget)
    assert messages(page.lines) == [f"new {i}" for i in range(5)]
    assert page.next_cursor is None
    assert read(log_file, datetime.now(UTC) + timedelta(minutes=1), budget=budget).lines == []
    old = read(log_file, since - timedelta(hours=2), limit=3)
    assert messages(old.lines) == ["old 0", "old 2", "old 4"]


def test_scan_budget_gives_short_pages_that_together_hold_every_line(
    log_file: LogFile, since: datetime
) -> None:
    """With the job's lines far apart, a call stops once it has read its budget and returns
    what it found with a next_cursor (as Cloud Logging does); the pages together hold every
    line once, in order."""
    for i in range(10):
        log_file.line(f"ours {i}", job=JOB)
        for j in range(40):
            log_file.line(f"theirs {i}.{j}", job=OTHER, batch=f"{OTHER}_{j:04d}")
    expected = [f"ours {i}" for i in range(10)]
    assert messages(read(log_file, since, limit=100).lines) == expected
    pages = all_pages(log_file, since, limit=100, budget=16 << 10)
    assert [m for page in pages for m in messages(page.lines)] == expected
    assert len(pages) > 2
    assert all(len(page.lines) < 100 for page in pages)


def _forged(cursor: str, change: Any) -> str:
    """`cursor` with its position altered, as someone editing one would."""
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    offset, inode, head = data["a"].split(":")
    data["a"] = ":".join(change(int(offset), int(inode), head))
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_bad_cursors_are_refused_naming_the_cursor(log_files: LogFiles, since: datetime) -> None:
    """Garbage, another listing's cursor, a forged offset (mid-line, past the end, another
    inode), a cursor into another file, a truncated, recreated or deleted file: each is
    InvalidArgument (400) naming the cursor, never a misread."""
    log = log_files("logs")
    write_job(log)
    end = read(log, since).resume_cursor
    assert end is not None
    other = log_files("other")
    other.line("elsewhere", job=JOB)
    elsewhere = read(other, since).resume_cursor
    assert elsewhere is not None
    bad = [
        "garbage",
        "%%%",
        encode_cursor("jobs", "20261123-120000-000000-0123abcd"),
        encode_cursor("logs", "12:x:y"),
        _forged(end, lambda o, i, h: (str(o - 5), str(i), h)),
        _forged(end, lambda o, i, h: (str(o + 1000), str(i), h)),
        _forged(end, lambda o, i, h: (str(o), str(i + 1), h)),
        elsewhere,
    ]
    for cursor in bad:
        with pytest.raises(InvalidArgument, match="cursor") as refused:
            read(log, since, cursor=cursor)
        assert cursor[:40] in refused.value.message and refused.value.http_status == 400
    # The file truncated (past the cursor), then deleted and written again, then gone.
    size = log.path.stat().st_size
    os.truncate(log.path, size - len(log.path.read_bytes().splitlines(keepends=True)[-1]))
    with pytest.raises(InvalidArgument, match="past the end"):
        read(log, since, cursor=end)
    log.path.unlink()
    log_files("logs").line("a new file", job=JOB)  # a new writer makes the file again
    with pytest.raises(InvalidArgument, match="another log file"):
        read(log, since, cursor=end)
    log.path.unlink()
    with pytest.raises(InvalidArgument, match="gone"):
        read(log, since, cursor=end)


@pytest.mark.parametrize("limit", [0, -1, 1001])
def test_limit_out_of_range_is_refused(log_file: LogFile, since: datetime, limit: int) -> None:
    """A page holds 1 to 1,000 lines, as in Cloud Logging."""
    write_job(log_file)
    with pytest.raises(InvalidArgument, match="limit"):
        read(log_file, since, limit=limit)
    assert len(read(log_file, since, limit=1000).lines) == len(ALL)


def test_missing_file_is_an_empty_page_to_follow(tmp_path: Path, since: datetime) -> None:
    """No log file (nothing logged yet) is an empty page, not an error; its resume_cursor
    gets the job's lines once the file exists."""
    log = LogFile(tmp_path / "not-yet")
    empty = read(log, since)
    assert empty.lines == [] and empty.next_cursor is None and empty.resume_cursor
    log.line("first", job=JOB)
    assert messages(read(log, since, cursor=empty.resume_cursor).lines) == ["first"]


def test_until_leaves_out_lines_after_the_jobs_end(log_file: LogFile, since: datetime) -> None:
    """Lines written after `until` (a finished job's end plus a margin) are left out, as the
    Logs Explorer link's time range leaves them out, and the page is complete."""
    log_file.line("during", job=JOB)
    end = datetime.now(UTC)
    log_file.at = end + timedelta(minutes=30)
    log_file.line("much later", job=JOB)
    page = read(log_file, since, until=end + timedelta(minutes=10))
    assert messages(page.lines) == ["during"] and page.next_cursor is None
