"""The stack's pid file ends what a killed CLI left, and never a process that merely reuses
a recorded pid."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from functions.local.pidfile import PidFile


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process group leader standing in for a stack member."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
    )
    yield process
    process.kill()
    process.wait()


def test_a_recorded_group_still_running_is_ended(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pids = PidFile(tmp_path / "stack.pids")
    pids.record(sleeper.pid)
    assert pids.end_leftovers() == 1
    assert sleeper.wait(timeout=10) != 0
    assert not pids.path.exists()


def test_a_pid_reused_by_another_process_is_left_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    pids = PidFile(tmp_path / "stack.pids")
    pids.record(sleeper.pid)
    [entry] = json.loads(pids.path.read_text())
    entry["started"] -= 1  # the recorded process started earlier: this one reuses its pid
    pids.path.write_text(json.dumps([entry]))
    assert pids.end_leftovers() == 0
    assert sleeper.poll() is None


def test_a_missing_or_corrupt_file_means_no_leftovers(tmp_path: Path) -> None:
    pids = PidFile(tmp_path / "stack.pids")
    assert pids.end_leftovers() == 0
    for corrupt in ("{not json", "5", '{"pid": 1}', '[{"pid": 1}]'):
        pids.path.write_text(corrupt)
        assert pids.end_leftovers() == 0
