"""The deployed shape on this machine: every production adapter, on Google's emulators.

    jobs         Google's Firestore emulator           (FANOUT_STORE=firestore)
    tasks        the Cloud Tasks emulator, delivering  (FANOUT_QUEUE=cloud_tasks)
                 each task to run_batch over HTTP
    trigger      Google's Pub/Sub emulator, pushing the ingest topic to ingest_pubsub
    sources      a Cloud Storage emulator (fake-gcs-server), with the samples bucket on
                 the allow-list (FANOUT_ALLOWED_BUCKETS)
    sweeper      cleanup_jobs called on a schedule by the stack, as Cloud Scheduler does

Each function gets exactly the environment `infra/` gives it (functions/local/
terraform_env.py), for an emulated project, plus the emulators' hosts and the stand-ins
below, each for a service that has no emulator here.
"""

from __future__ import annotations

import contextlib
import math
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any

from google.auth.credentials import AnonymousCredentials

from functions.config import Settings
from functions.errors import StartupError
from functions.local.emulators import (
    Emulator,
    google_firestore_available,
    start_fake_gcs,
    start_google_firestore,
    start_google_pubsub,
)
from functions.local.pubsub import IngestTopic
from functions.local.tasks_emulator import TasksEmulator, start_tasks_emulator
from functions.local.terraform_env import Environments, function_environments
from functions.queue.local import backoff

PROJECT = "fanout-local"
# The bucket a team would name in var.source_buckets: requests may ingest from it.
SAMPLES_BUCKET = "fanout-local-samples"
# terraform.tfvars of the emulated deployment; every other variable keeps its default.
VARIABLES: dict[str, Any] = {"project_id": PROJECT, "source_buckets": [SAMPLES_BUCKET]}
# Set on every function besides what infra/ sets, because the service has no emulator here.
# Each is a stand-in, never a change of behaviour the deployed code could not have.
STAND_IN_REASONS = {
    # Lance writes objects through Cloud Storage's XML API, which fake-gcs-server does not
    # serve, so collections live in a local directory instead of gs://.
    "FANOUT_LANCEDB_URI": "Lance needs the XML API, which the Cloud Storage emulator lacks",
    # Vertex AI has no emulator: the local model embeds instead.
    "FANOUT_EMBEDDER": "Vertex AI has no emulator",
    # Cloud Logging has no emulator: lines go to a file that jobs_api reads back.
    "FANOUT_LOG_DIR": "Cloud Logging has no emulator",
    # Secret Manager has no emulator: a random secret, as Terraform generates one.
    "FANOUT_CALLBACK_SECRET": "Secret Manager has no emulator",
}
# How often the Cloud Tasks emulator retries a failed task (its loop's pause).
TASKS_EMULATOR_RETRY_INTERVAL = timedelta(seconds=0.1)
# What tells each client library where its emulator is.
EMULATOR_HOSTS = ("FIRESTORE_EMULATOR_HOST", "STORAGE_EMULATOR_HOST", "FANOUT_TASKS_EMULATOR_HOST")


def tasks_emulator_retries(env: dict[str, str]) -> int:
    """Enough retries for the Cloud Tasks emulator to keep a task alive as long as the
    deployed queue does: the emulator cannot back off and retries every 0.1 s, so it gets
    as many retries as fit in the span of the queue's backoffs (about 4 minutes)."""
    dispatch = Settings.from_env(env).dispatch
    span = sum((backoff(n, dispatch) for n in range(1, dispatch.max_attempts)), timedelta())
    return math.ceil(span / TASKS_EMULATOR_RETRY_INTERVAL)


@dataclass
class EmulatedCloud:
    """Google's emulators standing in for the cloud services of one Fanout deployment.

    `start()` starts them (and `stop()` ends whatever was started, also when a later one
    fails to start); `environment(entry_point)` is a function's environment."""

    state_dir: Path
    url_of: Callable[[str], str]
    # Negative: the Cloud Tasks emulator retries a task until it succeeds.
    tasks_retries: int | None = None
    emulators: list[Emulator] = field(default_factory=list)
    tasks: TasksEmulator | None = None
    topic: IngestTopic | None = None
    callback_secret: str = field(default_factory=lambda: secrets.token_urlsafe(36))

    @cached_property
    def infra_environments(self) -> Environments:
        """Each function's environment as infra/ sets it for this deployment."""
        return function_environments(VARIABLES, self.url_of)

    @property
    def logs(self) -> Path:
        return self.state_dir / "logs"

    def start(self) -> EmulatedCloud:
        """Start Firestore, Cloud Tasks (with infra/'s queue), Pub/Sub and Cloud Storage
        (with the samples bucket). `StartupError` naming the emulator that is missing or
        did not start; the ones already started are stopped."""
        self.logs.mkdir(parents=True, exist_ok=True)
        env = self.infra_environments["ingest"]
        try:
            if not google_firestore_available():
                raise StartupError(
                    "Google's Firestore emulator is not installed: "
                    "gcloud components install cloud-firestore-emulator"
                )
            self.emulators.append(_named("Firestore emulator", start_google_firestore, self.logs))
            retries = (
                tasks_emulator_retries(env) if self.tasks_retries is None else self.tasks_retries
            )
            self.tasks = _named(
                "Cloud Tasks emulator",
                lambda logs: start_tasks_emulator(
                    logs,
                    project=env["FANOUT_TASKS_PROJECT"],
                    location=env["FANOUT_TASKS_LOCATION"],
                    queue=env["FANOUT_TASKS_QUEUE"],
                    class_queues=(env["FANOUT_TASKS_QUEUE_HIGH"], env["FANOUT_TASKS_QUEUE_LOW"]),
                    max_retries=retries,
                ),
                self.logs,
            )
            self.emulators.append(self.tasks.emulator)
            pubsub = _named(
                "Pub/Sub emulator", lambda logs: start_google_pubsub(logs, PROJECT), self.logs
            )
            self.emulators.append(pubsub)
            self.topic = IngestTopic(pubsub.host, PROJECT)
            self.emulators.append(_named("Cloud Storage emulator", start_fake_gcs, self.logs))
            self.storage_client().create_bucket(SAMPLES_BUCKET)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def pids(self) -> list[int]:
        return [emulator.process.pid for emulator in self.emulators]

    def _host(self, name: str) -> str:
        [emulator] = [e for e in self.emulators if e.name == name]
        return emulator.host

    @property
    def storage_url(self) -> str:
        return f"http://{self._host('fake-gcs')}"

    def hosts(self) -> dict[str, str]:
        """Where each client library finds its emulator."""
        assert self.tasks is not None, "start() first"
        return {
            "FIRESTORE_EMULATOR_HOST": self._host("firestore-google"),
            "STORAGE_EMULATOR_HOST": self.storage_url,
            "FANOUT_TASKS_EMULATOR_HOST": self.tasks.host,
        }

    def stand_ins(self) -> dict[str, str]:
        values = {
            "FANOUT_LANCEDB_URI": str(self.state_dir / "lancedb"),
            "FANOUT_EMBEDDER": "local",
            "FANOUT_LOG_DIR": str(self.logs),
            "FANOUT_CALLBACK_SECRET": self.callback_secret,
        }
        assert values.keys() == STAND_IN_REASONS.keys()
        return values

    def environment(self, entry_point: str) -> dict[str, str]:
        """A function's FANOUT_* and emulator variables: infra/'s, the emulators' hosts,
        the stand-ins."""
        return {**self.infra_environments[entry_point], **self.hosts(), **self.stand_ins()}

    def connect_trigger(self, push_endpoint: str) -> None:
        """Create the ingest topic and its push subscription to ingest_pubsub (once it
        listens: the emulator starts pushing at once)."""
        assert self.topic is not None, "start() first"
        self.topic.create(push_endpoint)

    def storage_client(self) -> Any:
        """A google-cloud-storage client on the emulator (anonymous, as on the emulator's
        side nothing checks credentials)."""
        from google.cloud import storage  # type: ignore[attr-defined]  # untyped package

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": self.storage_url},
        )

    def upload(self, directory: Path, prefix: str) -> str:
        """Upload the files under `directory` to the samples bucket under `prefix`, leaving
        out hidden ones as the local source does; returns the gs:// location of the copy."""
        bucket = self.storage_client().bucket(SAMPLES_BUCKET)
        for path in sorted(directory.rglob("*")):
            name = path.relative_to(directory).as_posix()
            if path.is_file() and not any(part.startswith(".") for part in name.split("/")):
                bucket.blob(f"{prefix}/{name}").upload_from_filename(str(path))
        return f"gs://{SAMPLES_BUCKET}/{prefix}/"

    def stop(self) -> None:
        """Stop every emulator started, last first; safe to call twice."""
        if self.topic is not None:
            with contextlib.suppress(Exception):  # its emulator may be gone already
                self.topic.close()
        while self.emulators:
            self.emulators.pop().stop()


def _named(name: str, start: Callable[[Path], Any], logs: Path) -> Any:
    """Start one emulator; a `StartupError` says which one failed."""
    try:
        return start(logs)
    except StartupError as error:
        raise StartupError(f"{name} did not start: {error}") from None
