"""Opaque cursors round-trip and refuse anything they did not make."""

from __future__ import annotations

import pytest

from functions.errors import InvalidCursor
from functions.paging import decode_cursor, encode_cursor
from functions.store.job_cursor import decode_job_cursor


def test_cursor_round_trips_its_position() -> None:
    """A cursor decodes to the key it was made with, for its own listing only."""
    assert decode_cursor(encode_cursor("batches", 41), "batches", int) == 41
    job_id = "20261123-120000-000000-0123abcd"
    assert decode_job_cursor(encode_cursor("jobs", job_id)) == job_id
    with pytest.raises(InvalidCursor, match="does not belong"):
        decode_cursor(encode_cursor("jobs", job_id), "batches", int)


@pytest.mark.parametrize("cursor", ["%%%", "bm90IGpzb24", encode_cursor("batches", True)])
def test_malformed_cursors_raise_invalid_cursor(cursor: str) -> None:
    """Garbage, non-JSON and wrongly typed positions are InvalidCursor."""
    with pytest.raises(InvalidCursor):
        decode_cursor(cursor, "batches", int)
