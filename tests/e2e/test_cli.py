"""The command line a newcomer uses: `make run` and `make dev` call these."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from functions.cli.client import ApiError, FanoutClient
from functions.local.emulators import ROOT, free_port_block
from functions.local.stack import FUNCTIONS, LocalStack
from tests.e2e.conftest import RAW_REPR, StackFactory, client_for, wait_for, wait_terminal


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


# What people should never read: a Python repr ({'a': 1}, ['x'], <Foo object at 0x..>,
# Foo(a=1)) or a count of one in the plural.
ONE_IN_PLURAL = re.compile(
    r"(?<![\w.])1 (?:batches|files|items|documents|chunks|rows|fragments|processes)\b"
)


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
    assert "make dev brings it back" in out
    assert not strays
    # Neither the summary nor the stack's log lines show a raw repr or "1 batches".
    messages = [
        json.loads(line)["message"]
        for line in (state / "logs" / "fanout.jsonl").read_text().splitlines()
    ]
    for text in (out, *messages):
        assert not RAW_REPR.search(text), text
        assert not ONE_IN_PLURAL.search(text), text
    # A failed item is named once: its error does not repeat its path.
    oversized = next(line for line in out.splitlines() if "byte limit" in line)
    assert "oversized" not in oversized and "/" not in oversized, oversized


def test_dev_prints_the_stacks_lines_as_they_are_written(tmp_path: Path) -> None:
    """While `fanout dev` runs, each line the stack's processes log is printed as it is
    written, with its job or batch id and event: a job submitted to it shows up from its
    submission to its end."""
    state, output, port_base = tmp_path / "state", tmp_path / "dev.out", free_port_block(5)
    dev = _start_dev(state, port_base, output)
    try:
        _wait_up(dev, output)
        client = _client_at(port_base)
        request = {"source": "noop", "collection": "docs", "items": ["a", "b"], "batch_size": 1}
        job_id = client.submit(request)["job_id"]

        def shown(needle: str, event: str) -> bool:
            lines = output.read_text().splitlines()
            return any(needle in line and event in line for line in lines)

        # The batch that counts first may log its line after the other one finalized the
        # job: wait for both lines, in whatever order they come.
        wait_for(
            lambda: shown(job_id, "job_finalized") and shown(f"{job_id}_0001", "batch_completed"),
            timeout=60,
            what="the job's last lines on the dev console",
        )
        assert shown(job_id, "submitted")
        assert shown(f"{job_id}_0000", "batch_completed")
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 130, output.read_text()
    finally:
        if dev.poll() is None:
            os.kill(dev.pid, signal.SIGKILL)
        _kill_strays(state)


def test_dev_ingests_folders_of_your_own_named_by_allow_and_the_environment(
    tmp_path: Path,
) -> None:
    """`fanout dev --allow DIR` (what `make dev ROOTS=DIR` runs) and FANOUT_ALLOWED_ROOTS
    both add a folder outside the repository to the sample roots: a documents job from
    each completes, and a folder named by neither is refused with a 400 that names the
    setting."""
    notes, papers, other = (tmp_path / name for name in ("notes", "papers", "other"))
    for folder in (notes, papers, other):
        folder.mkdir()
        (folder / "readme.md").write_text(f"# {folder.name}\n\nWhat {folder.name} holds.\n")
    state, output, port_base = tmp_path / "state", tmp_path / "dev.out", free_port_block(5)
    with output.open("w") as out:
        dev = subprocess.Popen(
            _cli("dev", state, port_base, "--allow", str(notes)),
            cwd=ROOT,
            env={**os.environ, "FANOUT_ALLOWED_ROOTS": str(papers)},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _wait_up(dev, output)
        client = _client_at(port_base)
        for folder in (notes, papers):
            request = {"source": "documents", "collection": "mine", "location": str(folder)}
            job = wait_terminal(client, client.submit(request)["job_id"])
            assert (job["status"], job["stats"]["documents"]) == ("completed", 1), job
        with pytest.raises(ApiError) as refused:
            client.submit({"source": "documents", "collection": "mine", "location": str(other)})
        assert refused.value.status == 400
        assert "FANOUT_ALLOWED_ROOTS" in refused.value.body["message"]
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 130, output.read_text()
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


def _reaper_pid(state_dir: Path) -> int:
    """The stack's reaper (functions/local/reaper.py), known by its command line."""
    wanted = [b"functions.local.reaper", str(state_dir.resolve() / "stack.pids").encode()]
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and all(
                word in (entry / "cmdline").read_bytes().split(b"\0") for word in wanted
            ):
                return int(entry.name)
        except OSError:
            continue
    raise AssertionError(f"no reaper for {state_dir}")


def test_a_stack_left_by_a_killed_cli_is_ended_by_the_next_one(tmp_path: Path) -> None:
    """SIGKILL of the CLI and of its reaper (as a machine's OOM killer might) leaves the
    stack running: nothing runs on SIGKILL. The next stack on the same state directory and
    ports ends those processes, says so once, and serves."""
    state, port_base = tmp_path / "state", free_port_block(5)
    first, second = tmp_path / "first.out", tmp_path / "second.out"
    dev = _start_dev(state, port_base, first)
    try:
        _wait_up(dev, first)
        left = _stack_pids(state)
        os.kill(_reaper_pid(state), signal.SIGKILL)
        dev.kill()
        dev.wait(timeout=30)
        assert {pid for pid in left if _alive(pid)} == left  # the processes outlive the CLI

        again = _start_dev(state, port_base, second)
        _wait_up(again, second)
        assert not {pid for pid in left if _alive(pid)}
        # Said once, in one wording: each recorded group (a function's or the dispatcher's)
        # counts once.
        said = [line for line in second.read_text().splitlines() if "earlier stack" in line]
        assert said == [
            f"Ended {len(FUNCTIONS) + 1} process groups left running by an earlier stack in "
            f"{state.resolve()}"
        ], second.read_text()
        assert _client_at(port_base).jobs()["total"] == 0
        again.send_signal(signal.SIGINT)
        assert again.wait(timeout=60) == 130
        assert not {pid for pid in _stack_pids(state) if _alive(pid)}
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


def _client_at(port_base: int) -> FanoutClient:
    """A client of the stack `fanout dev --port-base port_base` started."""
    return FanoutClient(
        f"http://127.0.0.1:{port_base + FUNCTIONS['ingest']}",
        f"http://127.0.0.1:{port_base + FUNCTIONS['jobs_api']}",
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
        result.stderr
    )
    assert "Traceback" not in result.stdout + result.stderr
    assert not {pid for pid in _stack_pids(tmp_path / "state") if _alive(pid)}


def _logs(stack: LocalStack, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "functions.cli",
            "logs",
            *more,
            "--api-url",
            stack.url("jobs_api"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _noop_job(stack: LocalStack, items: int, batch_size: int) -> str:
    request = {
        "source": "noop",
        "collection": "docs",
        "items": [f"doc-{i}" for i in range(items)],
        "batch_size": batch_size,
    }
    job_id: str = client_for(stack).submit(request)["job_id"]
    return job_id


def test_logs_prints_a_jobs_lines_from_the_local_stack(make_stack: StackFactory) -> None:
    """`fanout logs JOB` against the local stack prints that job's lines, oldest first, one
    per line with its batch id and event, and no other job's; `--batch N` keeps batch N's
    lines and `--event` one event's."""
    stack = make_stack()
    job_id, other = _noop_job(stack, 4, 2), _noop_job(stack, 2, 2)
    for job in (job_id, other):
        wait_terminal(client_for(stack), job)

    everything, batch, event = (
        _logs(stack, job_id),
        _logs(stack, job_id, "--batch", "1"),
        _logs(stack, job_id, "--event", "job_finalized"),
    )

    for result in (everything, batch, event):
        assert result.returncode == 0, result.stdout + result.stderr
    lines = everything.stdout.splitlines()
    assert other not in everything.stdout
    events = [next((e for e in line.split() if e in _EVENTS), None) for line in lines]
    assert events[0] == "submitted" and "job_finalized" in events
    assert any(f"{job_id}_0000" in line and "batch_completed" in line for line in lines)
    assert any(f"{job_id}_0001" in line and "batch_completed" in line for line in lines)
    batch_lines = batch.stdout.splitlines()
    assert batch_lines and all(f"{job_id}_0001" in line for line in batch_lines)
    [finalized] = event.stdout.splitlines()
    assert "job_finalized" in finalized and job_id in finalized


_EVENTS = {
    "submitted",
    "planned",
    "enqueued",
    "batch_claimed",
    "batch_completed",
    "batch_failed",
    "job_finalized",
}


def test_logs_follow_ends_with_the_job(make_stack: StackFactory) -> None:
    """`fanout logs JOB --follow`, started as the job is submitted, prints its lines as they
    are written and exits 0 by itself once the job has ended, its final event printed."""
    stack = make_stack()
    job_id = _noop_job(stack, 60, 2)

    result = _logs(stack, job_id, "--follow", "--interval", "0.1")

    assert result.returncode == 0, result.stdout + result.stderr
    assert client_for(stack).job(job_id)["status"] == "completed"
    lines = result.stdout.splitlines()
    assert sum("batch_completed" in line for line in lines) == 30
    assert sum("job_finalized" in line for line in lines) == 1


def test_logs_of_an_unknown_job_is_a_clear_error(make_stack: StackFactory) -> None:
    """An unknown job id is a one-line error on stderr and exit 1, like the other
    commands' API errors."""
    stack = make_stack()

    result = _logs(stack, "20990101-000000-000000-ffffffff")

    assert result.returncode == 1
    assert result.stderr.startswith("error: HTTP 404") and "not found" in result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
