"""The noop source: off unless turned on, and its fail_items_file read safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from functions.config import Settings
from functions.errors import InvalidArgument, ItemFailed
from functions.ingest_request import IngestRequest
from functions.processors import BatchContext, get_processor


def _request(**options: object) -> IngestRequest:
    return IngestRequest(source="noop", collection="c", items=["a", "b"], options=options)


def test_noop_is_refused_unless_the_setting_turns_it_on(tmp_path: Path) -> None:
    """A deployed function (FANOUT_ENABLE_NOOP unset) refuses noop, naming the setting."""
    off = Settings.from_env({})
    with pytest.raises(InvalidArgument, match="FANOUT_ENABLE_NOOP"):
        get_processor("noop", off).check_request(_request())
    on = Settings.from_env({"FANOUT_ENABLE_NOOP": "true"})
    get_processor("noop", on).check_request(_request())


def test_a_fail_file_that_became_a_fifo_fails_items_by_name_without_blocking(
    tmp_path: Path,
) -> None:
    """A fail_items_file swapped for a FIFO after submit fails each item saying why; the
    batch neither blocks on the FIFO nor raises anything but ItemFailed."""
    settings = Settings(allowed_roots=(tmp_path,))
    path = tmp_path / "fail.txt"
    path.write_text("b\n")
    processor = get_processor("noop", settings)
    processor.check_request(_request(fail_items_file=str(path)))
    path.unlink()
    os.mkfifo(path)
    context = BatchContext("j", "j-0", "c", {"fail_items_file": str(path)})
    work = processor.open_batch(context)
    for item in ("a", "b"):
        with pytest.raises(ItemFailed, match="not a regular file"):
            work.process(item)


def test_the_fail_file_lists_the_items_that_fail(tmp_path: Path) -> None:
    """Items named in a fail_items_file inside the roots fail; the others pass."""
    settings = Settings(allowed_roots=(tmp_path,))
    path = tmp_path / "fail.txt"
    path.write_text("b\n")
    work = get_processor("noop", settings).open_batch(
        BatchContext("j", "j-0", "c", {"fail_items_file": str(path)})
    )
    assert work.process("a").processed == 1
    with pytest.raises(ItemFailed, match="'b' is listed"):
        work.process("b")
