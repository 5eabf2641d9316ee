"""The local stack supervises its processes as Cloud Run would: one that dies is started
again (same port, same settings), and one that keeps dying stops the whole stack with an
error naming it."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from functions.errors import ProcessCrashLoop
from functions.local.emulators import free_port_block
from functions.local.stack import FUNCTIONS, LocalStack
from functions.local.supervisor import RestartPolicy
from tests.e2e.conftest import StackFactory, client_for, wait_for, wait_terminal
from tests.e2e.test_cli import _alive, _kill_strays, _stack_pids, _start_dev, _wait_up

LABELS = "logging.googleapis.com/labels"
BATCHES = 300


def _quick_restarts() -> RestartPolicy:
    """The default crash-loop rule (a fifth death within 60 s) with delays of 0.05 s, 0.1 s,
    ... instead of 0.5 s, 1 s, ...: the delays themselves are `fanout dev`'s test's (below),
    and at full length they kept each crash-loop test waiting 7.5 s."""
    return RestartPolicy(first_delay=0.05)


def _finalized_lines(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (stack.logs / "fanout.jsonl").read_text().splitlines()]
    return [
        line
        for line in lines
        if line.get("event") == "job_finalized" and line[LABELS].get("job_id") == job_id
    ]


def _recorded_pids(stack: LocalStack) -> set[int]:
    return {entry["pid"] for entry in json.loads(stack.pids.path.read_text())}


@pytest.mark.parametrize("name", ["run_batch", "dispatcher"])
def test_a_killed_process_is_restarted_and_the_job_completes_exactly(
    make_stack: StackFactory, name: str
) -> None:
    """SIGKILL of the worker (or the dispatcher) in the middle of a 300-batch job, and
    nothing else: the stack starts it again, recorded in its pid file, and the job
    completes with every batch counted once and one job_finalized line."""
    stack = make_stack()
    client = client_for(stack)
    job_id = client.submit(
        {
            "source": "noop",
            "collection": "docs",
            "items": [f"doc-{i}" for i in range(BATCHES)],
            "batch_size": 1,
            "options": {"delay_ms": 20},
        }
    )["job_id"]
    before = wait_for(
        lambda: (j := client.job(job_id))["completed_batches"] >= 20 and j,
        what="the job to be under way",
    )
    assert before["completed_batches"] < BATCHES - 50, "the job ended too soon to kill mid-run"
    killed = stack.processes[name].pid

    stack.kill(name)

    job = wait_terminal(client, job_id, timeout=180)
    assert job["status"] == "completed", job
    assert (job["completed_batches"], job["failed_batches"]) == (BATCHES, 0)
    assert job["stats"]["processed"] == BATCHES
    assert len(_finalized_lines(stack, job_id)) == 1
    assert stack.supervisor is not None and stack.supervisor.restarts[name] == 1
    restarted = stack.processes[name]
    assert restarted.pid != killed and restarted.poll() is None
    assert restarted.pid in _recorded_pids(stack)
    if name == "dispatcher":
        assert "redelivering" in (stack.logs / "dispatcher.log").read_text()


def _assert_nothing_left(stack: LocalStack) -> None:
    assert all(process.poll() is not None for process in stack.processes.values())
    assert not {pid for pid in _stack_pids(stack.state_dir) if _alive(pid)}
    assert not stack.pids.path.exists()


def test_a_dispatcher_that_keeps_dying_stops_the_stack(make_stack: StackFactory) -> None:
    """A dispatcher that exits at once every time (an unusable setting) is restarted with
    backoff until its fifth exit within a minute, which stops the stack with an error
    naming it, its exit status and its log file; no process of the stack is left."""
    stack = make_stack(
        process_env={"dispatcher": {"FANOUT_STORE": "bogus"}}, restart_policy=_quick_restarts
    )

    with pytest.raises(ProcessCrashLoop) as caught:
        stack.wait(timeout=60)

    log_file = stack.logs / "dispatcher.log"
    assert caught.value.message == (
        "dispatcher died 5 times within 60 s (last: exited with status 2); stopped the local "
        f"stack. See {log_file}"
    )
    assert "FANOUT_STORE must be" in log_file.read_text()
    _assert_nothing_left(stack)


def test_a_function_that_dies_before_serving_again_stops_the_stack(
    make_stack: StackFactory,
) -> None:
    """A worker that came up, was killed, and from then on dies before it listens (its
    settings broke, as in a bad redeploy) is a crash loop too: the stack stops."""
    process_env: dict[str, dict[str, str]] = {"run_batch": {}}
    stack = make_stack(process_env=process_env, restart_policy=_quick_restarts)
    # Every (re)start reads the config's process_env: from now on, Python cannot start.
    process_env["run_batch"]["PYTHONHOME"] = str(stack.state_dir / "no-such-python")

    stack.kill("run_batch")

    with pytest.raises(ProcessCrashLoop) as caught:
        stack.wait(timeout=60)
    assert caught.value.message == (
        "run_batch died 5 times within 60 s (last: exited with status 1); stopped the local "
        f"stack. See {stack.logs / 'run_batch.log'}"
    )
    _assert_nothing_left(stack)


def _run_batch_leader(state: Path) -> int | None:
    for pid in _stack_pids(state):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"run_batch" in command and os.getpgid(pid) == pid and _alive(pid):
                return pid
        except OSError:
            continue
    return None


def _wait_printed(output: Path, text: str) -> None:
    wait_for(lambda: text in output.read_text(), what=f"{text!r} on the console")


def test_dev_shows_restarts_and_exits_with_the_crash_loop_error(tmp_path: Path) -> None:
    """`fanout dev` says when it restarts a process, why, and after how long; when the
    worker is killed a fifth time within a minute it stops, exits 2 with the error (no
    traceback), and leaves no process behind. A `kill -9` of the group leader only (as a
    user would) is enough: the supervisor ends the rest of the group."""
    state, output = tmp_path / "state", tmp_path / "dev.out"
    dev = _start_dev(state, free_port_block(len(FUNCTIONS)), output)
    try:
        _wait_up(dev, output)
        killed: set[int] = set()
        for restart in range(1, 6):
            leader = wait_for(
                lambda: (pid := _run_batch_leader(state)) not in killed and pid,
                what="the worker to be up",
            )
            if restart > 1:
                _wait_printed(
                    output, f"run_batch is up again (pid {leader}, restart {restart - 1})"
                )
            os.kill(leader, signal.SIGKILL)
            killed.add(leader)
        assert dev.wait(timeout=60) == 2, output.read_text()
        out = output.read_text()
        for restart, delay in enumerate(["0.5", "1", "2", "4"], start=1):
            assert (
                f"run_batch exited with signal SIGKILL; restarting in {delay} s "
                f"(restart {restart})" in out
            ), out
        log_file = state.resolve() / "logs" / "run_batch.log"
        assert (
            "error: run_batch died 5 times within 60 s (last: exited with signal SIGKILL); "
            f"stopped the local stack. See {log_file}" in out
        ), out
        assert "Traceback" not in out
        assert not {pid for pid in _stack_pids(state) if _alive(pid)}
    finally:
        if dev.poll() is None:
            os.kill(dev.pid, signal.SIGKILL)
        _kill_strays(state)
