"""The trace a job joins: W3C `traceparent` first, then `X-Cloud-Trace-Context`; anything
malformed is ignored (a new trace is started by the caller), never an error."""

from __future__ import annotations

import re

import pytest

from functions.observability.trace import new_trace_id, trace_id_from, traceparent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    "headers",
    [
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01"},
        {"traceparent": f"00-{TRACE.upper()}-00f067aa0ba902b7-00"},
        {"X-Cloud-Trace-Context": f"{TRACE}/12345;o=1"},
        {"X-Cloud-Trace-Context": TRACE},
        # traceparent wins over the older header
        {"traceparent": f"00-{TRACE}-00f067aa0ba902b7-01", "X-Cloud-Trace-Context": "f" * 32},
        # a malformed traceparent falls back to the older header
        {"traceparent": "garbage", "X-Cloud-Trace-Context": f"{TRACE}/1"},
    ],
)
def test_the_incoming_trace_is_taken(headers: dict[str, str]) -> None:
    assert trace_id_from(headers) == TRACE


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"traceparent": "garbage"},
        {"traceparent": f"ff-{TRACE}-00f067aa0ba902b7-01"},  # version ff is invalid
        {"traceparent": f"00-{'0' * 32}-00f067aa0ba902b7-01"},  # all-zero trace id
        {"traceparent": f"00-{TRACE}-{'0' * 16}-01"},  # all-zero span id
        {"traceparent": f"00-{TRACE[:-1]}-00f067aa0ba902b7-01"},  # short trace id
        {"X-Cloud-Trace-Context": "not-a-trace/1;o=1"},
        {"X-Cloud-Trace-Context": "0" * 32},
    ],
)
def test_a_malformed_trace_is_ignored(headers: dict[str, str]) -> None:
    assert trace_id_from(headers) is None


def test_each_task_gets_a_fresh_span_of_the_jobs_trace() -> None:
    """Same trace, new span each time, sampled; and new traces are valid W3C ids."""
    first, second = traceparent(TRACE), traceparent(TRACE)
    pattern = f"00-{TRACE}-[0-9a-f]{{16}}-01"
    assert re.fullmatch(pattern, first) and re.fullmatch(pattern, second)
    assert first != second
    assert trace_id_from({"traceparent": traceparent(new_trace_id())}) is not None
