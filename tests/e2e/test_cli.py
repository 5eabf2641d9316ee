"""The command line a newcomer uses: `make run` and `make dev` call these."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from functions.emulators import ROOT, free_port_block
from functions.localstack import FUNCTIONS
from tests.e2e.conftest import wait_for

SAMPLE_FILES = len(list((ROOT / "samples" / "corpus").glob("*.md")))


def _stack_pids(state_dir: Path) -> set[int]:
    """Processes started for this stack, recognised by the SQLite path in their env."""
    marker = f"FANOUT_SQLITE_PATH={state_dir.resolve() / 'fanout.sqlite3'}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.split(") ", 1)[1][0] != "Z"


def test_run_ingests_the_sample_corpus_and_stops_everything(tmp_path: Path) -> None:
    """`fanout run` starts the stack, runs the sample job to completion, prints the
    result, exits 0 and leaves no process behind."""
    state = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "functions.cli",
            "run",
            "--state-dir",
            str(state),
            "--port-base",
            str(free_port_block(len(FUNCTIONS))),
            "--delay-ms",
            "0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    strays = {pid for pid in _stack_pids(state) if _alive(pid)}
    _kill_strays(state)
    assert result.returncode == 0, result.stdout + result.stderr
    batches = (SAMPLE_FILES + 1) // 2
    assert f"{batches} of {batches} batches completed" in result.stdout
    assert "Where to look next" in result.stdout
    assert not strays


@pytest.mark.parametrize(
    "stop",
    [signal.SIGINT, signal.SIGTERM, signal.SIGHUP],
    ids=["ctrl-c", "kill", "terminal-closed"],
)
def test_stopping_dev_leaves_no_stray_process(tmp_path: Path, stop: signal.Signals) -> None:
    """`fanout dev` keeps the stack up until Ctrl-C (SIGINT), `kill` (SIGTERM) or a closed
    terminal (SIGHUP), which stops every process it started: the five functions and the
    dispatcher."""
    state = tmp_path / "state"
    output = tmp_path / "dev.out"
    with output.open("w") as out:
        dev = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions.cli",
                "dev",
                "--state-dir",
                str(state),
                "--port-base",
                str(free_port_block(len(FUNCTIONS))),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        wait_for(
            lambda: "Ctrl-C stops everything" in output.read_text() or dev.poll() is not None,
            timeout=90,
            what="the stack to come up",
        )
        assert dev.poll() is None, output.read_text()
        started = _stack_pids(state)
        assert len(started) >= len(FUNCTIONS) + 1
        dev.send_signal(stop)
        assert dev.wait(timeout=60) == 130, output.read_text()
        assert not {pid for pid in started if _alive(pid)}
    finally:
        if dev.poll() is None:
            os.kill(dev.pid, signal.SIGKILL)
        _kill_strays(state)


def _kill_strays(state_dir: Path) -> None:
    """After a failed test, end what the CLI left behind, so it holds no port later."""
    for pid in _stack_pids(state_dir):
        try:
            os.killpg(pid, signal.SIGKILL)  # each child leads its own process group
        except OSError:
            continue
