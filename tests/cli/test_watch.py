"""`fanout watch JOB...` on a live local stack: progress bars on a terminal, lines into a
pipe, an exit code that says how the jobs ended, a closed pipe and Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest
from rich.console import Console

from functions.cli.views import job_table, jobs_table, stage
from functions.cli.watch import batches_done, running_progress, time_left
from tests.cli.conftest import FANOUT, Fanout
from tests.e2e.conftest import wait_for, wait_terminal

TERMINAL = {"completed", "failed", "cancelled"}
# On a terminal rich draws bars; TTY_COMPATIBLE makes it take a pipe for one (rich's switch).
AS_TERMINAL = {"TTY_COMPATIBLE": "1", "COLUMNS": "200"}


def test_watch_of_two_jobs_where_one_fails_exits_1(fanout: Fanout) -> None:
    """Two jobs watched together until both end, one failing: exit 1. Into a pipe a line per
    change of either job (batches done and failed, items per second, ETA), then how each
    ended and where to see why the failed one failed; on a terminal a live bar per job.
    With --json, the final jobs."""
    fail = fanout.stack.state_dir / "watch-fail.txt"  # inside the allowed roots
    fail.write_text("doc-2\n")
    good = fanout.noop_job(12, batch_size=1, delay_ms=150)
    bad = fanout.noop_job(6, batch_size=2, delay_ms=150, fail_file=fail)

    lines = fanout.start("watch", good, bad, "--interval", "0.1")
    bars = fanout.start("watch", good, bad, "--interval", "0.1", env=AS_TERMINAL)
    lines_out, lines_err = lines.communicate(timeout=120)
    bars_out, bars_err = bars.communicate(timeout=120)
    final = fanout.run("watch", bad, good, "--json")

    assert lines.returncode == 1, lines_err
    progress = [line for line in lines_out.splitlines() if "ETA" in line]
    assert {line.split()[0] for line in progress} == {good, bad}
    assert all("batches," in line and "failed," in line and "items/s" in line for line in progress)
    assert f"{good} completed 12/12 batches, 0 failed," in lines_out
    assert f"{good} completed: 12/12 batches, 0 failed; 12 items in" in lines_out
    assert f"{bad} failed: 3/3 batches, 1 failed; 6 items in" in lines_out
    assert f"its failed batches: fanout show {bad}" in lines_out
    assert lines_err == ""
    assert bars.returncode == 1, bars_err
    assert "\x1b[" in bars_out and "━" in bars_out  # drawn in place, with bars
    assert "12/12 batches, 0 failed" in bars_out and "ETA done" in bars_out
    assert final.code == 1
    assert [(j["job_id"], j["status"]) for j in final.json()["jobs"]] == [
        (bad, "failed"),
        (good, "completed"),
    ]


def test_watch_of_a_cancelled_job_exits_2(fanout: Fanout) -> None:
    job_id = fanout.noop_job(30, batch_size=1, delay_ms=500)
    fanout.client.cancel(job_id)

    result = fanout.run("watch", job_id, "--json")

    assert result.code == 2
    assert [job["status"] for job in result.json()["jobs"]] == ["cancelled"]


def test_a_closed_pipe_ends_the_watch_quietly(fanout: Fanout) -> None:
    """`fanout watch J | head -1`: head prints the first progress line and exits; the
    watch ends at its next line, while the job still runs, with no traceback or complaint
    (exit 141, as for SIGPIPE, which `set -o pipefail` reports)."""
    job_id = fanout.noop_job(64, batch_size=1, delay_ms=2000)
    try:
        pipeline = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{FANOUT} watch {job_id} --interval 0.1 | head -1"],
            env=fanout.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        still = fanout.client.job(job_id)["status"]
    finally:
        fanout.client.cancel(job_id)

    assert pipeline.returncode == 141, pipeline.stderr
    assert pipeline.stdout.startswith(job_id) and "batches" in pipeline.stdout
    assert len(pipeline.stdout.splitlines()) == 1
    assert pipeline.stderr == ""
    assert still not in TERMINAL


def test_ctrl_c_stops_the_watch_not_the_job(fanout: Fanout) -> None:
    """Ctrl-C while watching prints one line saying the job goes on and exits 130, without
    a traceback; the job is still running."""
    job_id = fanout.noop_job(64, batch_size=1, delay_ms=2000)
    watcher = fanout.start("watch", job_id, "--interval", "0.1")
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().startswith(job_id)  # it is watching
        watcher.send_signal(signal.SIGINT)
        out, err = watcher.communicate(timeout=30)
        status = fanout.client.job(job_id)["status"]
    finally:
        if watcher.poll() is None:
            watcher.kill()
        fanout.client.cancel(job_id)

    assert watcher.returncode == 130
    assert err == "stopped watching; the jobs go on (fanout cancel JOB stops one)\n"
    assert "Traceback" not in out
    assert status not in TERMINAL


def test_the_time_left_counts_the_running_batches_stored_progress(fanout: Fanout) -> None:
    """Before any batch ends, the time left is already known from the progress the running
    batches stored (batches end in waves, so ended batches alone would say nothing yet)."""
    job_id = fanout.noop_job(40, batch_size=20, delay_ms=150)  # 2 batches of 3 s each

    def stored_but_none_ended() -> tuple[dict[str, Any], float] | None:
        job = fanout.client.job(job_id)
        running = running_progress(fanout.client, job)
        return (job, running) if running > 0 and batches_done(job) == 0 else None

    job, running = wait_for(stored_but_none_ended, timeout=60, what="stored progress")
    assert time_left(job, 0.0) is None  # what the ended batches alone can tell
    left = time_left(job, running)
    assert left is not None
    done = running / job["total_batches"]
    assert left == pytest.approx(job["duration_seconds"] * (1 - done) / done)
    wait_terminal(fanout.client, job_id)


def test_the_time_left_is_the_pace_of_the_work_stored_so_far() -> None:
    """2 of 20 batches ended and 4 half-way after 100 s: 4 batches' worth in 100 s, so 16
    more take 400 s."""
    job = {"total_batches": 20, "completed_batches": 1, "failed_batches": 1}
    assert time_left(job | {"duration_seconds": 100.0}, 2.0) == pytest.approx(400.0)
    assert time_left(job | {"duration_seconds": None}, 2.0) is None
    assert (
        time_left(
            job | {"duration_seconds": 100.0, "completed_batches": 0, "failed_batches": 0}, 0.0
        )
        is None
    )


def test_submit_items_from_a_manifest_then_watch_it_plan_and_end(fanout: Fanout) -> None:
    """`--items-from` sends a manifest; the submit says it is planned page by page, and
    watching it (one line per change, as in a pipe) shows the planning stage, with the
    batches planned so far, before the job's end."""
    manifest = fanout.stack.state_dir / "cli-manifest.txt"  # inside the allowed roots
    manifest.write_text("".join(f"doc-{i}\n" for i in range(45_000)))
    submitted = fanout.run(
        "submit", "--source", "noop", "--collection", "cli-manifest",
        "--items-from", str(manifest), "--batch-size", "500",
    )  # fmt: skip
    assert submitted.code == 0, submitted.stderr
    assert "(planning: its items are read page by page)" in submitted.stdout
    job_id = submitted.stdout.split("submitted job ", 1)[1].split()[0]
    watched = fanout.run("watch", job_id, "--interval", "0.05")
    assert watched.code == 0, watched.stderr
    assert f"{job_id} completed: 90/90 batches" in watched.stdout
    shown = fanout.run("show", job_id)
    assert "90 completed, 0 failed of 90" in shown.stdout and "planning" not in shown.stdout


def test_a_planning_job_shows_planning_as_its_stage() -> None:
    """What `show` and `list` print for a running job whose manifest is still being read."""
    job = {
        "job_id": "20260101-000000-000000-0a1b2c3d", "status": "running", "planning": True,
        "planned_items": 40_000, "plan_pages": 2, "total_batches": 40, "completed_batches": 3,
        "failed_batches": 0, "source": "noop", "collection": "c",
    }  # fmt: skip
    console = Console(width=200, record=True)
    console.print(job_table(job), jobs_table([job]))
    text = console.export_text()
    assert "planning: 40,000 items in 40 batches so far (2 pages)" in text
    assert "│ planning " in text and "running" not in text
    assert stage(job | {"planning": False}) == "running"
