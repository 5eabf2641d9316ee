"""`fanout submit`, `list`, `show`, `cancel`, `retry`, `delete`, `search` and `logs` on a
live local stack: what they print, their --json and their exit codes."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
from pathlib import Path

from tests.cli.conftest import FANOUT, Fanout
from tests.e2e.conftest import wait_for

UNKNOWN_JOB = "20990101-000000-000000-ffffffff"


def test_submit_from_flags_sends_the_request_and_resubmits_idempotently(
    fanout: Fanout, tmp_path: Path
) -> None:
    """Flags make the ingest request (items, batch size, processor options typed from JSON,
    client and request id); the command prints the new job and how to watch it. The same
    client and request id again return the same job, here as one JSON document."""
    flags = ["--source", "noop", "--collection", "flags", "--items", "a", "b", "c"]
    passing = fanout.stack.state_dir / "fails none.txt"  # inside the allowed roots
    passing.write_text("")
    flags += ["--batch-size", "2", "--option", "delay_ms=5"]
    flags += ["--option", f"fail_items_file={passing}"]
    flags += ["--client-id", "cli-flags", "--request-id", "req-1"]

    first = fanout.run("submit", *flags)
    again = fanout.run("submit", *flags, "--json")

    assert first.code == 0, first.stderr
    job_id = first.stdout.split("submitted job ", 1)[1].split()[0]
    assert f"submitted job {job_id} (2 batches)" in first.stdout
    assert f"fanout watch {job_id}" in first.stdout
    assert again.code == 0, again.stderr
    assert again.json()["job_id"] == job_id and again.json()["created"] is False
    request = fanout.ended(job_id)["request"]
    assert request["item_count"] == 3
    assert request["batch_size"] == 2
    assert request["options"] == {"delay_ms": 5, "fail_items_file": str(passing)}
    assert (request["client_id"], request["request_id"]) == ("cli-flags", "req-1")


def test_submit_a_request_file_with_overrides_and_watch_it(fanout: Fanout, tmp_path: Path) -> None:
    """`--file request.json` is the request body; a flag given with it overrides its field.
    `--watch` follows the job to its end and exits 0 when it completed; with --json the one
    document holds the submission and the final job. `--file -` reads stdin."""
    body = {"source": "noop", "collection": "from-file", "items": ["x", "y", "z", "w"]}
    request = tmp_path / "request.json"
    request.write_text(json.dumps(body | {"batch_size": 1}))

    watched = fanout.run("submit", "--file", str(request), "--batch-size", "2", "--watch", "--json")
    human = fanout.run("submit", "--file", "-", "--watch", stdin=json.dumps(body))

    assert watched.code == 0, watched.stderr
    document = watched.json()
    assert document["submitted"]["total_batches"] == 2
    [job] = document["jobs"]
    assert job["job_id"] == document["submitted"]["job_id"]
    assert (job["status"], job["collection"], job["completed_batches"]) == (
        "completed",
        "from-file",
        2,
    )
    assert human.code == 0, human.stderr
    job_id = human.stdout.split("submitted job ", 1)[1].split()[0]
    assert f"submitted job {job_id} (1 batch)" in human.stdout  # not "1 batches"
    assert f"{job_id} completed: 1/1 batches, 0 failed; 4 items in" in human.stdout


def test_bad_submit_usage_is_one_line_exit_2_and_submits_nothing(
    fanout: Fanout, tmp_path: Path
) -> None:
    """A request missing its source, a request file that is not JSON, an option that is
    not key=value: each a usage error (exit 2), and no job is created."""
    before = fanout.client.jobs()["total"]
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")

    missing = fanout.run("submit", "--collection", "c", "--items", "a")
    not_json = fanout.run("submit", "--file", str(broken))
    bad_option = fanout.run(
        "submit", "--source", "noop", "--collection", "c", "--items", "a", "--option", "novalue"
    )

    assert missing.code == 2
    assert "the request needs --source" in missing.one_error_line()
    assert not_json.code == 2
    assert f"the request file {broken} is not valid JSON" in not_json.one_error_line()
    assert bad_option.code == 2 and "an option is key=value, got 'novalue'" in bad_option.stderr
    assert fanout.client.jobs()["total"] == before


def test_a_request_the_api_refuses_names_the_field_and_exits_1(fanout: Fanout) -> None:
    """The API's 400 becomes one line with its message and the field it names."""
    result = fanout.run("submit", "--source", "noop", "--collection", "no spaces!", "--items", "a")

    assert result.code == 1
    line = result.one_error_line()
    assert "HTTP 400: invalid request" in line and "collection:" in line


def test_list_filters_by_status_source_and_client_and_pages(fanout: Fanout, tmp_path: Path) -> None:
    """`list` shows a client's jobs newest first, filtered by status (repeatable or a comma
    list) and source; a page ends with the command for the next one, which continues where
    it stopped until every job was shown once. `jobs` is the same command."""
    fail = fanout.stack.state_dir / "list-fail.txt"  # inside the allowed roots
    fail.write_text("doc-0\n")
    failing = {
        fanout.noop_job(1, fail_file=fail, client_id="lister", request_id=f"f{i}") for i in range(2)
    }
    passing = {fanout.noop_job(1, client_id="lister", request_id=f"p{i}") for i in range(3)}
    for job_id in failing | passing:
        fanout.ended(job_id)

    failed = fanout.run("list", "--client", "lister", "--status", "failed", "--json")
    both = fanout.run(
        "list",
        "--client",
        "lister",
        "--status",
        "failed,cancelled",
        "--status",
        "completed",
        "--json",
    )
    other_source = fanout.run("list", "--client", "lister", "--source", "documents", "--json")
    alias = fanout.run("jobs", "--client", "lister", "--json")

    assert failed.code == 0, failed.stderr
    assert {job["job_id"] for job in failed.json()["jobs"]} == failing
    assert {job["job_id"] for job in both.json()["jobs"]} == failing | passing
    assert other_source.json()["jobs"] == [] and other_source.json()["total"] == 0
    newest_first = [job["job_id"] for job in alias.json()["jobs"]]
    assert newest_first == sorted(failing | passing, reverse=True)

    shown: list[str] = []
    page = fanout.run("list", "--client", "lister", "--limit", "2")
    for _ in range(5):
        assert page.code == 0, page.stderr
        shown += [job for job in newest_first if job in page.stdout]
        if "next page:" not in page.stdout:
            break
        assert "2 of 5 jobs" in page.stdout
        command = shlex.split(page.stdout.split("next page: ", 1)[1].splitlines()[0])
        assert command[:2] == ["fanout", "list"] and "--client" in command
        page = fanout.run(*command[1:])
    assert "1 of 5 jobs" in page.stdout
    assert shown == newest_first


def test_priority_from_submit_to_list_show_and_watch(fanout: Fanout) -> None:
    """`submit --priority low` makes a low job; `list --priority` filters on it, `show`
    and `list` print it, `watch` tags the job's line; an unknown class is a usage error
    that submits nothing."""
    flags = ["--source", "noop", "--collection", "classes", "--items", "a"]
    flags += ["--client-id", "cli-priority"]
    low = fanout.run("submit", *flags, "--request-id", "low", "--priority", "low", "--json")
    normal = fanout.run("submit", *flags, "--request-id", "normal", "--json")
    low_id, normal_id = low.json()["job_id"], normal.json()["job_id"]
    fanout.ended(low_id)
    fanout.ended(normal_id)

    listed = fanout.run("list", "--client", "cli-priority", "--priority", "low", "--json")
    table = fanout.run("list", "--client", "cli-priority")
    shown = fanout.run("show", low_id)
    watched = fanout.run("watch", low_id, normal_id)
    unknown = fanout.run("submit", *flags, "--request-id", "x", "--priority", "urgent")

    assert [job["job_id"] for job in listed.json()["jobs"]] == [low_id]
    assert listed.json()["jobs"][0]["priority"] == "low"
    assert "priority" in table.stdout and "low" in table.stdout and "normal" in table.stdout
    rows = [line.replace("│", " ").split() for line in shown.stdout.splitlines()]
    assert ["priority", "low"] in rows, shown.stdout
    assert f"{low_id} [low]" in watched.stdout and f"{normal_id} [" not in watched.stdout
    assert unknown.code == 2 and "invalid choice: 'urgent'" in unknown.stderr
    assert fanout.run("list", "--client", "cli-priority", "--json").json()["total"] == 2


def test_list_of_an_unknown_status_is_a_usage_error(fanout: Fanout) -> None:
    result = fanout.run("list", "--status", "running,lost")

    assert result.code == 2
    assert "unknown status 'lost'" in result.stderr and "Traceback" not in result.stderr


def test_show_prints_the_job_its_failed_batches_and_links(fanout: Fanout, tmp_path: Path) -> None:
    """`show` of a failed job: its status and stats, each failed batch with its error and
    its failed items, and the links: status URL, logs, the job's web page."""
    fail = fanout.stack.state_dir / "show-fail.txt"  # inside the allowed roots
    fail.write_text("doc-3\n")
    job_id = fanout.noop_job(6, batch_size=2, fail_file=fail)
    fanout.ended(job_id)
    api = fanout.stack.url("jobs_api")

    human = fanout.run("show", job_id)
    document = fanout.run("show", job_id, "--json")

    assert human.code == 0, human.stderr
    out = human.stdout
    assert f"job {job_id}" in out and "failed" in out
    assert "2 completed, 1 failed of 3" in out and "processed 5, failed 1" in out
    assert "failed batches (1):" in out
    assert f"batch {job_id}_0001 (attempt 1): 1 of 2 items failed" in out
    assert f"doc-3: item 'doc-3' is listed in {fail}" in out
    assert f"{api}/jobs/{job_id}\n" in out
    assert f"{api}/jobs/{job_id}/logs" in out and f"{api}/ui/jobs/{job_id}" in out
    assert document.code == 0
    shown = document.json()
    assert shown["job"]["status"] == "failed" and shown["failed_batches"]["total"] == 1
    [batch] = shown["failed_batches"]["batches"]
    assert batch["error_details"]["failed_items"] == {"doc-3": f"item 'doc-3' is listed in {fail}"}
    assert shown["links"]["page"] == f"{api}/ui/jobs/{job_id}"


def test_cancel_retry_and_delete(fanout: Fanout, tmp_path: Path) -> None:
    """`cancel` stops a running job (watching it then exits 2), `retry` runs a failed
    job's failed batches again (watching it then exits 0), `delete` removes an ended job
    without asking; each prints the new state, or with --json the API's answer."""
    fail = fanout.stack.state_dir / "retry-fail.txt"  # inside the allowed roots
    fail.write_text("doc-1\n")
    failed = fanout.noop_job(4, batch_size=2, fail_file=fail)
    assert fanout.ended(failed)["status"] == "failed"
    running = fanout.noop_job(40, batch_size=1, delay_ms=2000)

    cancelled = fanout.run("cancel", running, "--json")
    watch_cancelled = fanout.run("watch", running)
    fail.write_text("")
    retried = fanout.run("retry", failed)
    watch_retried = fanout.run("watch", failed, "--json")
    deleted = fanout.run("delete", failed)
    gone = fanout.run("show", failed)

    assert cancelled.code == 0 and cancelled.json()["status"] == "cancelled"
    assert watch_cancelled.code == 2
    assert f"{running} cancelled" in watch_cancelled.stdout
    assert retried.code == 0, retried.stderr
    assert f"job {failed} running: its failed batches run again (retry 1)" in retried.stdout
    assert watch_retried.code == 0
    assert [job["status"] for job in watch_retried.json()["jobs"]] == ["completed"]
    assert deleted.code == 0 and f"deleted job {failed}" in deleted.stdout
    assert gone.code == 1 and "not found" in gone.one_error_line()


def test_an_unknown_job_is_one_line_and_exit_1(fanout: Fanout) -> None:
    """Every command naming a job that does not exist prints the API's one-line message
    on stderr, no traceback, and exits 1."""
    for command in ("show", "watch", "cancel", "retry", "delete", "logs"):
        result = fanout.run(command, UNKNOWN_JOB)
        assert result.code == 1, (command, result.stderr)
        assert f"HTTP 404: job '{UNKNOWN_JOB}' not found" in result.one_error_line(), command


def test_no_stack_running_is_a_helpful_line() -> None:
    """With nothing listening at the API's URL the command says so and how to start one,
    in one line, and exits 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free once closed: nothing listens there

    result = subprocess.run(
        [str(FANOUT), "list", "--api-url", f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr == (
        f"error: no Fanout API at http://127.0.0.1:{port}; start one with `make dev`\n"
    )
    assert result.stdout == ""


def test_a_local_api_url_implies_its_stacks_ingest_url(fanout: Fanout) -> None:
    """`--api-url` of a local stack alone is enough to submit: the ingest URL is the same
    stack's, by its port layout."""
    env = {"FANOUT_INGEST_URL": ""}
    result = fanout.run(
        "submit",
        "--api-url",
        fanout.stack.url("jobs_api"),
        "--source",
        "noop",
        "--collection",
        "implied",
        "--items",
        "a",
        "--json",
        env=env,
    )

    assert result.code == 0, result.stderr
    assert fanout.ended(result.json()["job_id"])["collection"] == "implied"


def test_logs_json_is_one_document_of_the_jobs_lines(fanout: Fanout) -> None:
    job_id = fanout.noop_job(2, batch_size=1)
    fanout.ended(job_id)
    wait_for(
        lambda: any(
            line["event"] == "job_finalized" for line in fanout.client.logs(job_id)["lines"]
        ),
        what="the job's last line",
    )

    result = fanout.run("logs", job_id, "--json")

    assert result.code == 0, result.stderr
    document = result.json()
    assert document["job_id"] == job_id
    events = [line["event"] for line in document["lines"]]
    assert events[0] == "submitted" and events.count("batch_completed") == 2
    assert all(line["labels"]["job_id"] == job_id for line in document["lines"])


def test_search_of_an_unknown_collection_is_one_line(fanout: Fanout) -> None:
    result = fanout.run("search", "no-such-collection", "anything", "--json")

    assert result.code == 1
    assert "collection 'no-such-collection' not found" in result.one_error_line()
