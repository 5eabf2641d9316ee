"""The pure job model: statuses, transitions, ids, planning, progress, serialisation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from functions.errors import BatchNotFound, InvalidArgument, InvalidTransition, JobNotFound
from functions.jobs import (
    TERMINAL,
    Batch,
    BatchOutcome,
    Job,
    JobStats,
    JobStatus,
    batch_id_for,
    check_job_id,
    check_transition,
    new_job_id,
    parse_batch_id,
    parse_status,
    plan_batches,
)

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_terminal_statuses_are_stable_except_retry_of_failed() -> None:
    """Completed and cancelled jobs never move; failed only back to running (retry)."""
    assert {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED} == TERMINAL
    for status in JobStatus:
        with pytest.raises(InvalidTransition):
            check_transition("job", JobStatus.COMPLETED, status)
        with pytest.raises(InvalidTransition):
            check_transition("job", JobStatus.CANCELLED, status)
    check_transition("job", JobStatus.FAILED, JobStatus.RUNNING)
    check_transition("batch", JobStatus.FAILED, JobStatus.PENDING)
    with pytest.raises(InvalidTransition, match="batch is pending; cannot move to completed"):
        check_transition("batch", JobStatus.PENDING, JobStatus.COMPLETED)


def test_parse_status_names_the_allowed_values() -> None:
    """An unknown status is an InvalidArgument listing what is allowed."""
    assert parse_status("running") is JobStatus.RUNNING
    with pytest.raises(InvalidArgument, match="expected one of: pending, scheduled, running"):
        parse_status("done")


def test_job_ids_sort_by_creation_time_and_batch_ids_round_trip() -> None:
    """Later jobs get larger ids; batch ids are {job_id}_{NNNN} and parse back."""
    early, late = new_job_id(T0), new_job_id(T0 + timedelta(microseconds=1))
    assert early < late
    assert check_job_id(early) == early
    assert batch_id_for(early, 7) == f"{early}_0007"
    assert parse_batch_id(f"{early}_0007") == (early, 7)
    assert parse_batch_id(f"{early}_12345") == (early, 12345)
    with pytest.raises(JobNotFound):
        check_job_id("a/b")
    with pytest.raises(BatchNotFound):
        parse_batch_id(f"{early}_7")


def test_plan_batches_splits_items_in_order() -> None:
    """Items split into consecutive batches of at most batch_size; 0 is refused."""
    batches = plan_batches("j", [str(i) for i in range(7)], 3, now=T0)
    assert [b.items for b in batches] == [("0", "1", "2"), ("3", "4", "5"), ("6",)]
    assert [b.batch_id for b in batches] == ["j_0000", "j_0001", "j_0002"]
    assert plan_batches("j", [], 3) == []
    with pytest.raises(InvalidArgument, match="batch_size must be at least 1"):
        plan_batches("j", ["a"], 0)


def test_progress_and_duration() -> None:
    """Progress is the share of terminal batches; duration runs from start to finish."""
    job = Job.new(source="s", collection="c", now=T0)
    assert job.progress == 0.0 and job.duration() is None
    running = Job.from_dict(
        {
            **job.to_dict(),
            "status": "running",
            "total_batches": 4,
            "completed_batches": 2,
            "failed_batches": 1,
            "started_at": T0,
        }
    )
    assert running.progress == 0.75
    assert running.duration(T0 + timedelta(seconds=9)) == timedelta(seconds=9)
    empty_done = Job.from_dict({**job.to_dict(), "status": "completed"})
    assert empty_done.progress == 1.0


def test_job_and_batch_round_trip_through_dicts() -> None:
    """to_dict/from_dict keep every field, including ISO strings read back as datetimes."""
    job = Job.new(
        source="s", collection="c", request={"a": [1]}, client_id="x", request_id="y", now=T0
    )
    assert Job.from_dict(job.to_dict()) == job
    as_text = {**job.to_dict(), "created_at": T0.isoformat()}
    assert Job.from_dict(as_text) == job
    batch = Batch(
        "j_0000", "j", 0, ("a",), T0, stats=JobStats(files=1), error_details={"item": "a"}
    )
    assert Batch.from_dict(batch.to_dict()) == batch


def test_client_and_request_id_go_together() -> None:
    """Idempotency needs both halves of the key."""
    with pytest.raises(InvalidArgument, match="client_id and request_id go together"):
        Job.new(source="s", collection="c", client_id="x")


def test_stats_add_and_subtract() -> None:
    """Stats sum field by field (retry subtracts what it re-opens)."""
    a, b = JobStats(1, 2, 3, 4, 5), JobStats(1, 1, 1, 1, 1)
    assert a + b == JobStats(2, 3, 4, 5, 6)
    assert (a + b) - b == a
    assert JobStats.total([a, b, b]) == JobStats(3, 4, 5, 6, 7)


def test_batch_outcome_must_be_terminal() -> None:
    """A batch ends completed, failed or cancelled; anything else is refused."""
    with pytest.raises(InvalidArgument):
        BatchOutcome(JobStatus.RUNNING)


def test_typed_errors_survive_pickling() -> None:
    """Errors cross process boundaries (worker pools) with their message and fields."""
    import pickle

    for error in (
        InvalidTransition("job", "completed", "cancelled"),
        JobNotFound("j"),
        BatchNotFound("b"),
        InvalidArgument("bad"),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.message == error.message


def test_plan_batches_closes_a_batch_before_its_bytes_pass_the_limit() -> None:
    """A giant file runs in a batch of its own; small files around it still share
    batches up to the item count."""
    sizes = [10, 10, 5_000, 10, 10, 10, 10]
    batches = plan_batches("j", list("abcdefg"), 3, now=T0, sizes=sizes, max_bytes=1_000)
    assert [b.items for b in batches] == [("a", "b"), ("c",), ("d", "e", "f"), ("g",)]
    assert [b.index for b in batches] == [0, 1, 2, 3]
