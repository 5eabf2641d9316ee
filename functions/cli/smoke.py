"""`fanout smoke`: check a whole deployment (or a local stack) end to end, in one line per step.

    stage    write one small document with a phrase made for this run, at --stage
             (gs://BUCKET/PREFIX on an allowed bucket, or a directory inside the allowed roots)
    submit   POST it to ingest, as its own job (client fanout-smoke)
    finish   wait until the job has ended: completed, 1 batch, 1 document, nothing failed
    search   search the collection for the phrase: the document is the first hit
    logs     the job's logs link is a Logs Explorer query for this job, and the jobs API
             serves at least one of the job's lines
    cleanup  delete the job (then GET answers 404) and the staged document

Every step prints `PASS` or `FAIL`, and cleanup runs whatever failed before it. The staged
document always has the same name, so each run replaces the one document of the
`fanout-smoke` collection (re-ingesting a document replaces its chunks) rather than
adding to it. Exit 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import secrets
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.text import Text

from functions.cli.client import ApiError, FanoutClient
from functions.cli.output import console
from functions.cli.parsing import positive_seconds
from functions.cli.target import Target
from functions.ingestion.sources.gs_uri import parse_gs_uri

if TYPE_CHECKING:
    from functions.cli.parsing import Commands

COLLECTION = "fanout-smoke"
CLIENT_ID = "fanout-smoke"
DOCUMENT = "fanout-smoke.md"
LOGS_QUERY_URL = "https://console.cloud.google.com/logs/query;"
TERMINAL = {"completed", "failed", "cancelled"}
POLL_SECONDS = 1.0


class StepFailed(Exception):
    """A smoke step found the deployment not doing what it should; the message says what."""


@dataclass
class Stage:
    """Where the smoke document is written: a gs:// prefix or a local directory."""

    where: str
    storage_client: Callable[[], Any] = field(default=lambda: _storage_client())

    @property
    def location(self) -> str:
        """The location the job ingests: the prefix (or directory) holding the document."""
        return self.where.rstrip("/") + "/"

    @property
    def uri(self) -> str:
        return self.location + DOCUMENT if self.is_gcs else str(Path(self.where) / DOCUMENT)

    @property
    def is_gcs(self) -> bool:
        return self.where.startswith("gs://")

    def write(self, text: str) -> None:
        if self.is_gcs:
            self._blob().upload_from_string(text.encode(), content_type="text/markdown")
        else:
            Path(self.where).mkdir(parents=True, exist_ok=True)
            Path(self.uri).write_text(text, encoding="utf-8")

    def remove(self) -> None:
        if self.is_gcs:
            self._blob().delete()
        else:
            Path(self.uri).unlink()

    def _blob(self) -> Any:
        parsed = parse_gs_uri(self.location)
        return self.storage_client().bucket(parsed.bucket).blob(parsed.prefix + DOCUMENT)


def _storage_client() -> Any:
    """Application Default Credentials, or the emulator named by STORAGE_EMULATOR_HOST
    (the library reads it itself)."""
    from google.cloud import storage  # type: ignore[attr-defined]  # untyped package

    return storage.Client()


@dataclass
class Smoke:
    """The steps against one deployment; `run()` prints a line per step."""

    client: FanoutClient
    stage: Stage
    timeout: float
    run_id: str = field(default_factory=lambda: secrets.token_hex(6))
    job: dict[str, Any] = field(default_factory=dict)
    staged: bool = False
    results: list[tuple[str, bool, str]] = field(default_factory=list)

    @property
    def phrase(self) -> str:
        return f"fanout smoke marker {self.run_id}"

    def run(self) -> bool:
        """Every step in order, stopping at the first failure; cleanup always runs."""
        steps: list[tuple[str, Callable[[], str]]] = [
            ("stage", self.write_document),
            ("submit", self.submit),
            ("finish", self.wait_for_job),
            ("search", self.search),
            ("logs", self.check_logs),
        ]
        try:
            for name, step in steps:
                if not self._step(name, step):
                    break
        finally:
            self._step("cleanup", self.cleanup)
        return all(passed for _, passed, _ in self.results)

    def _step(self, name: str, step: Callable[[], str]) -> bool:
        try:
            detail, passed = step(), True
        except _step_failures() as error:
            # Cloud Storage and credentials errors say what is wrong in their first line.
            detail, passed = str(error).splitlines()[0] if str(error) else repr(error), False
        self.results.append((name, passed, detail))
        mark = Text("PASS", style="green") if passed else Text("FAIL", style="bold red")
        console.print(Text.assemble(mark, f" {name:<8} {detail}"))
        return passed

    def write_document(self) -> str:
        self.stage.write(
            f"# Fanout smoke check\n\nThis document proves a deployment works: {self.phrase}.\n"
        )
        self.staged = True
        return self.stage.uri

    def submit(self) -> str:
        accepted = self.client.submit(
            {
                "source": "documents",
                "collection": COLLECTION,
                "location": self.stage.location,
                "batch_size": 1,
                "client_id": CLIENT_ID,
                "request_id": self.run_id,
            }
        )
        self.job = {"job_id": accepted["job_id"]}
        return f"job {accepted['job_id']}"

    def wait_for_job(self) -> str:
        deadline = time.monotonic() + self.timeout
        job = self.client.job(self.job["job_id"])
        while job["status"] not in TERMINAL:
            if time.monotonic() > deadline:
                raise StepFailed(f"still {job['status']} after {self.timeout:g} s")
            time.sleep(POLL_SECONDS)  # polling the API, as `fanout watch` does
            job = self.client.job(self.job["job_id"])
        self.job = job
        counts = (job["total_batches"], job["completed_batches"], job["stats"].get("documents"))
        if job["status"] != "completed" or counts != (1, 1, 1):
            raise StepFailed(
                f"{job['status']}: {job['completed_batches']}/{job['total_batches']} batches, "
                f"{job['stats'].get('documents')} documents; {job.get('error') or ''}".rstrip()
            )
        return f"completed in {job.get('duration_seconds')} s: 1 batch, 1 document"

    def search(self) -> str:
        hits = self.client.search(COLLECTION, self.phrase, k=3)["hits"]
        if not hits or self.phrase not in hits[0]["text"]:
            raise StepFailed(f"the phrase is not in the first hit ({len(hits)} hits)")
        return f"first hit: {hits[0]['uri']}"

    def check_logs(self) -> str:
        job_id = self.job["job_id"]
        url = self.job.get("logs_url") or ""
        query = urllib.parse.unquote(url)
        if not url.startswith(LOGS_QUERY_URL) or f'labels.job_id="{job_id}"' not in query:
            raise StepFailed(f"the logs link is not a query for this job: {url or 'none'}")
        deadline = time.monotonic() + self.timeout
        while not (lines := self.client.logs(job_id, limit=5)["lines"]):
            if time.monotonic() > deadline:  # Cloud Logging takes seconds to show a line
                raise StepFailed(f"no log line of the job after {self.timeout:g} s")
            time.sleep(POLL_SECONDS)
        return f"{url[:60]}..., and its lines are served ({lines[0].get('event') or 'line'})"

    def cleanup(self) -> str:
        done = []
        if self.job.get("status") in TERMINAL:
            self.client.delete(self.job["job_id"])
            try:
                self.client.job(self.job["job_id"])
            except ApiError as error:
                if error.status != 404:
                    raise
            else:
                raise StepFailed(f"job {self.job['job_id']} is still there after DELETE")
            done.append(f"job {self.job['job_id']}")
        elif self.job:
            self.client.cancel(self.job["job_id"])
            done.append(f"cancelled job {self.job['job_id']} (it had not ended)")
        if self.staged:
            self.stage.remove()
            done.append(self.stage.uri)
        return "deleted " + ", ".join(done) if done else "nothing to delete"


def cmd_smoke(args: argparse.Namespace) -> int:
    target = Target.from_args(args)
    target.require_ingest()
    console.print(f"Smoke check of {target.api_url} (ingest {target.ingest_url})")
    passed = Smoke(target.client, Stage(args.stage), args.timeout).run()
    console.print("smoke check passed" if passed else "smoke check FAILED")
    return 0 if passed else 1


def register(commands: Commands, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "smoke",
        parents=list(parents),
        help="check a deployment end to end: submit, finish, search, logs, cleanup",
    )
    p.set_defaults(handler=cmd_smoke)
    p.add_argument(
        "--stage",
        required=True,
        help="where to write the smoke document: gs://BUCKET/PREFIX (a bucket the deployment "
        "may read) or a directory inside its allowed roots",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=600.0,
        help="seconds to wait for the job, and then for its log lines (default 600)",
    )


def _step_failures() -> tuple[type[Exception], ...]:
    """What a failed step raises. The Google libraries are imported here: every `fanout`
    command imports this module, and only a smoke check needs them."""
    from google.api_core.exceptions import GoogleAPICallError
    from google.auth.exceptions import GoogleAuthError

    return (StepFailed, ApiError, OSError, GoogleAPICallError, GoogleAuthError)
