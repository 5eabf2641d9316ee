"""The command line a newcomer uses: `make run` and `make dev` call these."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from functions.emulators import ROOT, free_port_block
from functions.localstack import FUNCTIONS
from tests.e2e.conftest import wait_for


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
    """`fanout run` generates the sample corpus, ingests it for real on the stack, names
    the two files that fail on purpose with their errors, prints a search over the new
    collection, exits 0 and leaves no process behind."""
    state = tmp_path / "state"
    result = _run(state, free_port_block(len(FUNCTIONS)))
    strays = {pid for pid in _stack_pids(state) if _alive(pid)}
    _kill_strays(state)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "skipped 1" in out and "failed 2" in out
    assert "scanned-invoice.pdf: not a valid PDF" in out and "over the 33554432 byte limit" in out
    assert "search: how do I stop a job" in out
    assert "cancel" in out.split("search: how do I stop a job", 1)[1].lower()
    assert "Where to look next" in out
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
    state, output = tmp_path / "state", tmp_path / "dev.out"
    dev = _start_dev(state, free_port_block(len(FUNCTIONS)), output)
    try:
        _wait_up(dev, output)
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


def test_a_stack_left_by_a_killed_cli_is_ended_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL of the CLI leaves its stack running (nothing runs on SIGKILL). The next
    `fanout run` on the same state directory and ports ends those processes, says so, and
    runs its job."""
    state, output, port_base = tmp_path / "state", tmp_path / "dev.out", free_port_block(5)
    dev = _start_dev(state, port_base, output)
    try:
        _wait_up(dev, output)
        left = _stack_pids(state)
        dev.kill()
        dev.wait(timeout=30)
        assert {pid for pid in left if _alive(pid)} == left  # the processes outlive the CLI

        result = _run(state, port_base)

        assert result.returncode == 0, result.stdout + result.stderr
        assert "left running by an earlier stack" in result.stdout
        assert not {pid for pid in left | _stack_pids(state) if _alive(pid)}
    finally:
        _kill_strays(state)


def _cli(command: str, state: Path, port_base: int, *more: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "functions.cli",
        command,
        "--state-dir",
        str(state),
        "--port-base",
        str(port_base),
        *more,
    ]


def _run(state: Path, port_base: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        _cli("run", state, port_base),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _start_dev(state: Path, port_base: int, output: Path) -> subprocess.Popen[str]:
    with output.open("w") as out:
        return subprocess.Popen(
            _cli("dev", state, port_base),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )


def _wait_up(dev: subprocess.Popen[str], output: Path) -> None:
    wait_for(
        lambda: "Ctrl-C stops everything" in output.read_text() or dev.poll() is not None,
        timeout=90,
        what="the stack to come up",
    )
    assert dev.poll() is None, output.read_text()


def test_a_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    """When another program holds one of the stack's ports, `fanout run` says which port
    and exits 2, without a traceback and without leaving processes."""
    port_base = free_port_block(len(FUNCTIONS))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port_base + FUNCTIONS["jobs_api"]))
        squatter.listen()
        result = _run(tmp_path / "state", port_base)
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"port {port_base + FUNCTIONS['jobs_api']} (jobs_api) is already in use" in (
        result.stdout
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert not {pid for pid in _stack_pids(tmp_path / "state") if _alive(pid)}
