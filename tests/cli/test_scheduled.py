"""A job that starts later, through `fanout`: `submit --not-before` says when it starts,
`list`, `show` and `watch` show it scheduled and when it starts ("starts in 1 h"), and
watching it ends when it is cancelled before its start."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.cli.conftest import Fanout


def test_a_scheduled_job_says_when_it_starts_everywhere(fanout: Fanout) -> None:
    """Two hours ahead less 30 s: every view rounds down to "starts in 1 h" (a start just
    under two hours ahead would round to the second, and read "2 h" on a fast machine)."""
    start = (datetime.now(UTC) + timedelta(hours=2, seconds=-30)).replace(microsecond=0)
    stamp = start.isoformat().replace("+00:00", "Z")
    flags = ["--source", "noop", "--collection", "later", "--items", "a", "b"]

    submitted = fanout.run("submit", *flags, "--not-before", stamp)

    assert submitted.code == 0, submitted.stderr
    job_id = submitted.stdout.split("submitted job ", 1)[1].split()[0]
    assert "  scheduled: starts in 1 h" in submitted.stdout
    listed = fanout.run("list", "--status", "scheduled")
    assert listed.code == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if job_id in line]
    assert "scheduled (starts in 1 h)" in row
    shown = fanout.run("show", job_id)
    assert "scheduled" in shown.stdout
    assert f"{stamp} (starts in 1 h)" in shown.stdout
    as_json = fanout.run("show", job_id, "--json").json()["job"]
    assert (as_json["status"], as_json["not_before"]) == ("scheduled", stamp)

    watcher = fanout.start("watch", job_id, "--interval", "0.1")
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()
        fanout.client.cancel(job_id)
        out, err = watcher.communicate(timeout=30)
    finally:
        if watcher.poll() is None:
            watcher.kill()
    assert first.startswith(job_id) and "scheduled" in first and "starts in 1 h" in first
    assert watcher.returncode == 2, err
    assert f"{job_id} cancelled: 0/1 batches" in out
