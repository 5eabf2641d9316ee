"""The deployed shape, run whole (`make run CLOUD=emulated`): Google's Firestore and Pub/Sub
emulators, the Cloud Tasks emulator delivering to run_batch over HTTP, the Cloud Storage
emulator as the source, cleanup_jobs on a schedule, and each function started with the
environment infra/ gives it.

One stack serves the module; each test has its own collection, prefix and request ids.
Two settings compress time, and neither is one infra/ sets: leases of 3 s (so a killed
attempt's batch is free again quickly) and a sweep every second. A third turns on the
`noop` source (FANOUT_ENABLE_NOOP), which deployed functions refuse: the tests drive the
machinery with noop jobs, whose items cost nothing. The Cloud Tasks emulator
retries without backoff, so here it retries until run_batch answers, as a backing-off
queue would ride out the worker's restart.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from functions.cli.client import ApiError, FanoutClient
from functions.local.emulated import (
    EMULATOR_HOSTS,
    SAMPLES_BUCKET,
    VARIABLES,
)
from functions.local.emulators import ROOT, free_port_block
from functions.local.pubsub import IngestTopic
from functions.local.stack import FUNCTIONS, LocalStack, StackConfig
from functions.local.terraform_env import function_environments
from tests.e2e.conftest import all_batches, client_for, print_logs, wait_for, wait_terminal
from tests.support.reports import failed

LABELS = "logging.googleapis.com/labels"
TRACE = "logging.googleapis.com/trace"
# Settings the tests add to infra/'s environment; infra/ sets none of them.
TEST_ENV = {
    "FANOUT_LEASE_SECONDS": "3",
    "FANOUT_PROGRESS_INTERVAL_SECONDS": "0.2",
    "FANOUT_ENABLE_NOOP": "true",
}
FANOUT = ROOT / ".venv" / "bin" / "fanout"


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalStack]:
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("emulated"),
        port_base=free_port_block(len(FUNCTIONS)),
        cloud="emulated",
        env=TEST_ENV,
        sweep_interval=1.0,
    )
    started = LocalStack(config).start()
    yield started
    started.stop()
    if request.session.testsfailed:
        print_logs(started)


@pytest.fixture(autouse=True)
def _logs_on_failure(stack: LocalStack, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if failed(request.node):
        print_logs(stack)


def _topic(stack: LocalStack) -> IngestTopic:
    assert stack.cloud is not None and stack.cloud.topic is not None
    return stack.cloud.topic


def _log_lines(stack: LocalStack) -> list[dict[str, Any]]:
    text = (stack.logs / "fanout.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def _job_lines(stack: LocalStack, job_id: str) -> list[dict[str, Any]]:
    return [line for line in _log_lines(stack) if line[LABELS].get("job_id") == job_id]


def _jobs_for(client: FanoutClient, client_id: str, request_id: str) -> list[dict[str, Any]]:
    return [j for j in client.jobs(client_id=client_id)["jobs"] if j["request_id"] == request_id]


def _upload(stack: LocalStack, documents: dict[str, str]) -> str:
    """A fresh prefix of the samples bucket holding `documents`; returns its gs:// URI."""
    assert stack.cloud is not None
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    bucket = stack.cloud.storage_client().bucket(SAMPLES_BUCKET)
    for name, text in documents.items():
        bucket.blob(f"{prefix}/{name}").upload_from_string(text.encode(), "text/markdown")
    return f"gs://{SAMPLES_BUCKET}/{prefix}/"


def _process_env(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if "=" in entry)


def test_every_function_runs_with_exactly_the_environment_infra_gives_it(
    stack: LocalStack,
) -> None:
    """Each running function's FANOUT_* and emulator variables are exactly infra/'s for that
    function (evaluated by Terraform), the emulators' hosts, the named stand-ins and the
    tests' settings (TEST_ENV), which infra/ does not set: no other variable differs."""
    assert stack.cloud is not None
    infra = function_environments(VARIABLES, stack.url)
    assert set(infra) == set(FUNCTIONS)
    for target in FUNCTIONS:
        assert not set(TEST_ENV) & set(infra[target])
        running = _process_env(stack.processes[target].pid)
        ours = {k: v for k, v in running.items() if k.startswith("FANOUT_") or k in EMULATOR_HOSTS}
        expected = {
            **infra[target],
            **stack.cloud.hosts(),
            **stack.cloud.stand_ins(),
            **TEST_ENV,
        }
        assert ours == expected, target
        assert ours["FANOUT_STORE"] == "firestore" and ours["FANOUT_QUEUE"] == "cloud_tasks"
    assert "dispatcher" not in stack.processes  # Cloud Tasks delivers, not the local queue


def test_a_published_ingestion_runs_through_cloud_tasks_once_with_exact_counts(
    stack: LocalStack,
) -> None:
    """An ingestion published twice on the ingest topic (the same client and request id)
    gives one job. Its 3 batches are delivered by the Cloud Tasks emulator, it completes
    with exact counts and one finalization, a search finds a phrase of one document, and
    every line of the job carries its labels and its one trace."""
    client = client_for(stack)
    documents = {
        f"note-{i}.md": f"# Note {i}\n\nThe lighthouse keeper {i} logs the tide at dawn.\n"
        for i in range(5)
    }
    documents["note-5.md"] = "# Rare\n\nA quokka named Pemberton guards the emulated cloud.\n"
    location = _upload(stack, documents)
    request_id = uuid.uuid4().hex
    request = {
        "source": "documents",
        "collection": "emulated-docs",
        "location": location,
        "batch_size": 2,
        "client_id": "e2e-emulated",
        "request_id": request_id,
    }
    topic = _topic(stack)
    topic.publish(request)
    topic.publish(request)

    [found] = wait_for(lambda: _jobs_for(client, "e2e-emulated", request_id), what="the job")
    job = wait_terminal(client, found["job_id"])
    job_id = job["job_id"]
    assert job["status"] == "completed", job
    assert (job["total_batches"], job["completed_batches"], job["failed_batches"]) == (3, 3, 0)
    assert (job["stats"]["documents"], job["stats"]["failed"]) == (6, 0)
    submitted = wait_for(
        lambda: (
            [line for line in _job_lines(stack, job_id) if line.get("event") == "submitted"][1:]
            and [line for line in _job_lines(stack, job_id) if line.get("event") == "submitted"]
        ),
        what="both deliveries to be handled",
    )
    assert sorted(line["created"] for line in submitted) == [False, True]
    assert len(_jobs_for(client, "e2e-emulated", request_id)) == 1

    batches = all_batches(client, job_id)
    delivered = (stack.logs / "cloud-tasks.log").read_text()
    assert all(batch["batch_id"] in delivered for batch in batches)

    hits = client.search("emulated-docs", "quokka named Pemberton")["hits"]
    assert hits[0]["uri"] == location + "note-5.md"

    lines = _job_lines(stack, job_id)
    assert [line["event"] for line in lines if line.get("event") == "job_finalized"] == [
        "job_finalized"
    ]
    assert {line[TRACE] for line in lines} == {f"projects/fanout-local/traces/{job['trace_id']}"}
    assert {"ingest_pubsub", "run_batch"} <= {line[LABELS]["function"] for line in lines}
    for line in lines:
        assert {"time", "severity", "message"} <= line.keys(), line
        assert line[LABELS]["job_id"] == job_id and line[LABELS]["function"], line
        if line.get("event", "").startswith("batch_"):
            assert line[LABELS]["batch_id"].startswith(job_id), line


def test_run_batch_killed_mid_job_the_job_still_completes(stack: LocalStack) -> None:
    """SIGKILL run_batch while a batch runs: the stack starts it again (as Cloud Run starts
    a new instance), Cloud Tasks redelivers, and the job completes with exact counts."""
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "emulated-noop",
            "items": [f"item-{i}" for i in range(20)],
            "batch_size": 2,
            "options": {"delay_ms": 150},
        }
    )
    job_id = accepted["job_id"]
    wait_for(lambda: client.job(job_id)["batches"]["running"] > 0, what="a running batch")
    killed = stack.processes["run_batch"].pid
    stack.kill("run_batch")
    job = wait_terminal(client, job_id)
    assert job["status"] == "completed"
    assert (job["completed_batches"], job["stats"]["processed"]) == (10, 20)
    assert stack.processes["run_batch"].pid != killed
    assert max(batch["attempts"] for batch in all_batches(client, job_id)) >= 2


def test_a_gs_manifest_is_planned_by_planner_tasks_through_cloud_tasks(
    stack: LocalStack,
) -> None:
    """`items_from` a manifest in the bucket: the submit plans nothing, planner tasks go
    through the Cloud Tasks emulator to run_batch, pages land in Firestore, and the job
    ends exact with its planning counts."""
    lines = [f"item-{i}" for i in range(20_500)]
    manifest = _upload(stack, {"manifest.txt": "".join(f"{line}\n" for line in lines)})
    client = client_for(stack)
    accepted = client.submit(
        {
            "source": "noop",
            "collection": "emulated-manifest",
            "items_from": f"{manifest}manifest.txt",
            "batch_size": 1000,
        }
    )
    assert accepted["planning"] is True and accepted["total_batches"] == 0
    job = wait_terminal(client, accepted["job_id"], timeout=120)
    assert (job["status"], job["planning"], job["plan_pages"]) == ("completed", False, 2)
    assert (job["total_batches"], job["completed_batches"], job["planned_items"]) == (
        21,
        21,
        len(lines),
    )
    assert job["stats"]["processed"] == len(lines)


def test_a_job_submitted_while_run_batch_is_down_completes_once_it_is_back(
    stack: LocalStack,
) -> None:
    """SIGKILL run_batch, then submit at once: its tasks meet a dead worker, and the queue
    keeps them (infra/'s retries span minutes) until the stack has started run_batch
    again; the job then completes with no one acting on it."""
    client = client_for(stack)
    killed = stack.processes["run_batch"].pid
    stack.kill("run_batch")
    accepted = client.submit(
        {"source": "noop", "collection": "emulated-outage", "items": ["a", "b", "c"]}
        | {"batch_size": 1}
    )
    job = wait_terminal(client, accepted["job_id"], timeout=60)
    assert (job["status"], job["completed_batches"]) == ("completed", 3)
    assert stack.processes["run_batch"].pid != killed


def test_high_and_low_jobs_run_through_their_own_queues(stack: LocalStack) -> None:
    """A high and a low job complete exactly through the Cloud Tasks emulator's queues of
    their classes (infra/'s names; a task for a queue the emulator lacks is refused, and
    its job would never end), each job saying its priority."""
    client = client_for(stack)
    jobs = {
        level: client.submit(
            {"source": "noop", "collection": "emulated-classes", "items": ["a", "b", "c"]}
            | {"batch_size": 1, "priority": level}
        )["job_id"]
        for level in ("high", "low")
    }
    for level, job_id in jobs.items():
        job = wait_terminal(client, job_id, timeout=60)
        assert (job["status"], job["completed_batches"], job["priority"]) == (
            "completed",
            3,
            level,
        )


def _smoke(stack: LocalStack, stage: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`fanout smoke` against the stack, staging at `stage` on its Cloud Storage emulator:
    the finished process, and its PASS/FAIL lines."""
    assert stack.cloud is not None
    result = subprocess.run(
        [
            *(str(FANOUT), "smoke", "--api-url", stack.url("jobs_api")),
            *("--ingest-url", stack.url("ingest"), "--stage", stage, "--timeout", "120"),
        ],
        env={**os.environ, "STORAGE_EMULATOR_HOST": stack.cloud.storage_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result, [line for line in result.stdout.splitlines() if line[:4] in ("PASS", "FAIL")]


def test_the_smoke_check_passes_against_the_emulated_shape(stack: LocalStack) -> None:
    """`fanout smoke` against the emulated deployment passes every step, one line each,
    and leaves neither its job nor its staged document behind."""
    assert stack.cloud is not None
    result, lines = _smoke(stack, f"gs://{SAMPLES_BUCKET}/fanout-smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [line.split()[:2] for line in lines] == [
        ["PASS", step] for step in ("stage", "submit", "finish", "search", "logs", "cleanup")
    ]
    client = client_for(stack)
    assert client.jobs(client_id="fanout-smoke")["jobs"] == []
    bucket = stack.cloud.storage_client().bucket(SAMPLES_BUCKET)
    assert list(bucket.list_blobs(prefix="fanout-smoke/")) == []


def test_a_smoke_check_that_cannot_stage_fails_in_one_line_and_exits_1(
    stack: LocalStack,
) -> None:
    """`fanout smoke` with a --stage bucket that does not exist says FAIL at the stage
    step, with Cloud Storage's reason and no traceback, skips to cleanup, and exits 1."""
    result, lines = _smoke(stack, "gs://no-such-bucket-here/smoke")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert [line.split()[:2] for line in lines] == [["FAIL", "stage"], ["PASS", "cleanup"]]
    assert "404" in lines[0]


def test_a_bad_message_is_acknowledged_once_logged_with_its_id_and_creates_nothing(
    stack: LocalStack,
) -> None:
    """A message that is not JSON, and one that is not a valid request, are each handled
    once (no redelivery, nothing dead-lettered), logged with their message id, and create
    no job; a good message published after them is ingested."""
    client = client_for(stack)
    topic = _topic(stack)
    before = client.jobs()["total"]
    not_json = topic.publish(b"{not json")
    invalid = topic.publish({"source": "documents", "collection": "x"})  # no items/location
    request_id = uuid.uuid4().hex
    topic.publish(
        {
            "source": "noop",
            "collection": "emulated-after",
            "items": ["a"],
            "client_id": "e2e-bad",
            "request_id": request_id,
        }
    )
    [job] = wait_for(lambda: _jobs_for(client, "e2e-bad", request_id), what="the good job")
    wait_terminal(client, job["job_id"])

    def refusals(message_id: str) -> list[dict[str, Any]]:
        return [
            line
            for line in _log_lines(stack)
            if line.get("message_id") == message_id and line[LABELS]["function"] == "ingest_pubsub"
        ]

    for message_id in (not_json, invalid):
        [line] = wait_for(functools.partial(refusals, message_id), what=f"{message_id}'s line")
        assert line["severity"] == "ERROR" and message_id in line["message"], line
    assert client.jobs()["total"] == before + 1
    assert topic.dead_letters() == []
    assert [len(refusals(m)) for m in (not_json, invalid)] == [1, 1]


def test_a_gs_location_outside_the_allow_list_is_refused_naming_the_bucket(
    stack: LocalStack,
) -> None:
    """Submitting from a bucket infra/ does not allow is a 400 that names the bucket, and
    creates no job."""
    client = client_for(stack)
    before = client.jobs()["total"]
    with pytest.raises(ApiError) as refused:
        client.submit(
            {"source": "documents", "collection": "nope", "location": "gs://elsewhere/docs/"}
        )
    assert refused.value.status == 400
    assert "'elsewhere' is not allowed" in refused.value.body["message"]
    assert client.jobs()["total"] == before


def test_a_missing_emulator_stops_the_command_naming_it_and_ends_what_it_started(
    tmp_path: Path,
) -> None:
    """With Google's Pub/Sub emulator unable to start, `fanout run --cloud emulated` exits 2
    with one line naming it, and the emulators it had started (Firestore's) are gone."""
    real_gcloud = Path(
        subprocess.run(
            ["sh", "-c", "command -v gcloud"], capture_output=True, text=True, check=True
        ).stdout.strip()
    ).resolve()
    # A Cloud SDK whose gcloud starts every emulator but Pub/Sub's, and records the pids.
    sdk = tmp_path / "sdk"
    shims = sdk / "bin"
    shims.mkdir(parents=True)
    (sdk / "platform").symlink_to(real_gcloud.parents[1] / "platform")
    started = tmp_path / "started.pids"
    gcloud = shims / "gcloud"
    gcloud.write_text(
        "#!/bin/sh\n"
        'case "$*" in *"emulators pubsub"*) echo "no pubsub here" >&2; exit 1;; esac\n'
        f'echo $$ >> "{started}"\n'
        f'exec "{real_gcloud}" "$@"\n'
    )
    gcloud.chmod(0o755)
    env = {**os.environ, "PATH": f"{shims}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "functions.cli",
            "run",
            "--cloud",
            "emulated",
            "--state-dir",
            str(tmp_path / "state"),
            "--port-base",
            str(free_port_block(len(FUNCTIONS))),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Pub/Sub emulator did not start" in error
    pids = [int(pid) for pid in started.read_text().split()]
    assert pids, "the Firestore emulator was started first"
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()]
