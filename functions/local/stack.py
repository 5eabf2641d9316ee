"""The local stack: every function under `functions-framework` on its own localhost port,
the task dispatcher, and (optionally) a Firestore emulator and a local scheduler.

With `cloud="emulated"` it is the deployed shape instead (functions/local/emulated.py): no
dispatcher, and every production adapter on Google's emulators, each function with the
environment infra/ gives it.

Each child runs in its own process group, and `stop()` ends the groups, so Ctrl-C (or a
failing test) leaves no stray process. The groups are also recorded in
`state_dir/stack.pids`, so a stack whose owner was killed with SIGKILL is ended by its
reaper (functions/local/reaper.py) or, failing that, by the next one started on the same
state directory. State lives in `state_dir` (default `.local/`).

A child that dies while the stack is up is started again, as Cloud Run would start a new
instance, and one that keeps dying stops the stack (functions/local/supervisor.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Self

from functions.errors import FanoutError, StartupError
from functions.local.emulators import (
    ROOT,
    Emulator,
    google_firestore_available,
    port_open,
    start_google_firestore,
    start_npm_firestore,
)
from functions.local.pidfile import PidFile
from functions.local.reaper import Reaper
from functions.local.signals import held_signals
from functions.local.supervisor import RestartPolicy, Supervisor

if TYPE_CHECKING:
    from functions.local.emulated import EmulatedCloud

log = logging.getLogger("fanout.localstack")

# Port offsets from `port_base`, one function per port (one target per process).
FUNCTIONS: dict[str, int] = {
    "ingest": 0,
    "run_batch": 1,
    "jobs_api": 2,
    "cleanup_jobs": 3,
    "ingest_pubsub": 4,
}
READY_SECONDS = 60
# Request threads per function process (the Functions Framework's THREADS, like Cloud Run's
# per-instance concurrency). Batch work is CPU-bound Python under one GIL: more threads
# than this only queue on it (measured with bench/e2e.py on 2 cores).
WORKER_THREADS = "4"
# How long the stack's processes get to exit after SIGTERM before SIGKILL: gunicorn (under
# functions-framework) finishes its requests in hand first. Hurried (a second Ctrl-C or
# `kill` while stopping): at most this long.
STOP_SECONDS = 10.0
HURRIED_STOP_SECONDS = 1.0


@dataclass(frozen=True)
class StackConfig:
    state_dir: Path = Path(".local")
    host: str = "127.0.0.1"
    port_base: int = 8081
    store: Literal["sqlite", "firestore"] = "sqlite"
    # store="firestore" on an emulator already running (host:port), in a project of the
    # stack's own, instead of starting one: tests share one emulator between many stacks.
    firestore_emulator: str | None = None
    # "local": SQLite (or a Firestore emulator) and the local dispatcher; "emulated": the
    # deployed shape on Google's emulators (`store` does not apply).
    cloud: Literal["local", "emulated"] = "local"
    # The emulated shape only: the Cloud Tasks emulator's retries (None: as infra/'s queue;
    # negative: until the task succeeds).
    tasks_retries: int | None = None
    # FANOUT_* settings for every process, and per process ("dispatcher" or a function).
    env: Mapping[str, str] = field(default_factory=dict)
    process_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # Call cleanup_jobs this often, as Cloud Scheduler does in the cloud; None: never.
    sweep_interval: float | None = None
    # Folders of the user's own that requests may ingest, besides the sample corpus and the
    # state directory (`fanout dev --allow`, `make dev ROOTS=`, FANOUT_ALLOWED_ROOTS).
    allowed_roots: tuple[Path, ...] = ()
    # Restart a process that dies, as Cloud Run would; off for tests that kill one on
    # purpose and restart it themselves.
    supervise: bool = True
    restart_policy: Callable[[], RestartPolicy] = RestartPolicy
    # The functions to start (the local shape only; the emulated one needs all five). Tests
    # start those they call: each function is a Python process to start and stop.
    functions: tuple[str, ...] = tuple(FUNCTIONS)

    def __post_init__(self) -> None:
        unknown = set(self.functions) - FUNCTIONS.keys()
        if unknown:
            raise ValueError(f"no such functions: {sorted(unknown)}")
        if self.cloud == "emulated" and set(self.functions) != FUNCTIONS.keys():
            raise ValueError("the emulated shape starts every function")


class LocalStack:
    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.state_dir = config.state_dir.resolve()
        self.logs = self.state_dir / "logs"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.emulator: Emulator | None = None
        self.cloud: EmulatedCloud | None = None
        self.secret = secrets.token_urlsafe(24)
        self._scheduler_stop = threading.Event()
        self._scheduler: threading.Thread | None = None
        self._env: dict[str, str] = {}
        self.pids = PidFile(self.state_dir / "stack.pids")
        self.leftovers_ended = 0
        self.supervisor: Supervisor | None = None
        self.failure: FanoutError | None = None  # why the stack stopped by itself
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._hurried = False
        self._reaper: Reaper | None = None

    # -- addresses ------------------------------------------------------------------------

    def port(self, target: str) -> int:
        return self.config.port_base + FUNCTIONS[target]

    def url(self, target: str) -> str:
        return f"http://{self.config.host}:{self.port(target)}"

    @property
    def sqlite_path(self) -> Path:
        return self.state_dir / "fanout.sqlite3"

    @property
    def emulated(self) -> bool:
        return self.config.cloud == "emulated"

    @property
    def process_names(self) -> list[str]:
        """Every process of the stack: the functions, and the local dispatcher unless Cloud
        Tasks (emulated) delivers the tasks."""
        return [*self.config.functions, *([] if self.emulated else ["dispatcher"])]

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        self.logs.mkdir(parents=True, exist_ok=True)
        # The owner reports these (the CLI prints one line); a log line too would say it twice.
        self.leftovers_ended = self.pids.end_leftovers()
        for target in self.config.functions:
            if port_open(f"{self.config.host}:{self.port(target)}"):
                raise StartupError(
                    f"port {self.port(target)} ({target}) is already in use; "
                    "choose another port base"
                )
        try:
            # From here on, however this process ends, what the stack starts ends with it.
            self._reaper = Reaper(self.pids.path, self.logs / "reaper.log")
            self._env = self._emulated_env() if self.emulated else self._base_env()
            for name in self.process_names:
                self.start_process(name)
            for target in self.config.functions:
                self._wait_ready(target)
            if self.cloud is not None:
                self.cloud.connect_trigger(self.url("ingest_pubsub") + "/")
        except BaseException:
            self.stop()
            raise
        if self.config.sweep_interval:
            self._scheduler = threading.Thread(
                target=self._schedule, daemon=True, name="local-scheduler"
            )
            self._scheduler.start()
        if self.config.supervise:
            self.supervisor = Supervisor(
                self.processes,
                restart=self.start_process,
                ready=self._ready,
                log_file=lambda name: self.logs / f"{name}.log",
                on_failure=self._fail,
                policy=self.config.restart_policy,
            )
            self.supervisor.start()
        return self

    def _base_env(self) -> dict[str, str]:
        env = {
            "FANOUT_CALLBACK_SECRET": secrets.token_urlsafe(32),  # unless the environment has one
            "FANOUT_ENABLE_NOOP": "true",  # off in deployed functions; tests and demos use it
            **os.environ,  # PATH and friends for the children
            "FANOUT_STORE": self.config.store,
            "FANOUT_QUEUE": "local",
            "FANOUT_SQLITE_PATH": str(self.sqlite_path),
            "FANOUT_WORKER_URL": self.url("run_batch") + "/",
            "FANOUT_API_URL": self.url("jobs_api"),
            "FANOUT_INGEST_URL": self.url("ingest"),
            "FANOUT_WORKER_SECRET": self.secret,
            "FANOUT_ALLOWED_ROOTS": os.pathsep.join(
                [str(ROOT / "samples"), str(self.state_dir)]
                + [str(root.expanduser().resolve()) for root in self.config.allowed_roots]
            ),
            "FANOUT_LANCEDB_URI": str(self.state_dir / "lancedb"),
            # Every process appends its structured lines to logs/fanout.jsonl: the jobs API
            # serves a job's lines from it and `make dev` prints them as they come.
            "FANOUT_LOG_DIR": str(self.logs),
            "PYTHONUNBUFFERED": "1",
            "THREADS": WORKER_THREADS,
        }
        if self.config.store == "firestore" and self.config.firestore_emulator:
            env["FIRESTORE_EMULATOR_HOST"] = self.config.firestore_emulator
            env["FANOUT_GCP_PROJECT"] = f"fanout-local-{secrets.token_hex(6)}"
        elif self.config.store == "firestore":
            start = start_google_firestore if google_firestore_available() else start_npm_firestore
            self.emulator = start(self.logs)
            self.pids.record(self.emulator.process.pid)
            env["FIRESTORE_EMULATOR_HOST"] = self.emulator.host
            env["FANOUT_GCP_PROJECT"] = "fanout-local"
        return env

    def _emulated_env(self) -> dict[str, str]:
        """What every process inherits in the emulated shape: this machine's environment
        without any FANOUT_* or emulator setting of ours, so that each function runs with
        infra/'s environment alone (`start_process` adds it)."""
        # Imported here: the Pub/Sub and Terraform readers cost every `fanout` command a
        # third of a second, and only this shape needs them.
        from functions.local.emulated import EMULATOR_HOSTS, EmulatedCloud

        self.cloud = EmulatedCloud(self.state_dir, self.url, self.config.tasks_retries)
        for pid in self.cloud.start().pids:
            self.pids.record(pid)
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("FANOUT_") and name not in EMULATOR_HOSTS
        }
        return {**inherited, "PYTHONUNBUFFERED": "1", "THREADS": WORKER_THREADS}

    def environment(self, name: str) -> dict[str, str]:
        """The environment process `name` starts with."""
        own = self.cloud.environment(name) if self.cloud is not None else {}
        return {**self._env, **own, **self.config.env, **self.config.process_env.get(name, {})}

    def command(self, name: str) -> list[str]:
        if name == "dispatcher":
            return [sys.executable, "-m", "functions.queue.dispatcher"]
        return [
            sys.executable,
            "-m",
            "functions_framework",
            "--target",
            name,
            "--source",
            str(ROOT / "main.py"),
            "--host",
            self.config.host,
            "--port",
            str(self.port(name)),
        ]

    def start_process(self, name: str) -> subprocess.Popen[bytes]:
        """Start (or restart) one process of the stack; with `supervise`, leave restarts
        to the supervisor."""
        env = self.environment(name)
        # A Ctrl-C meanwhile is raised once the process is kept and recorded, for stop().
        with held_signals(), (self.logs / f"{name}.log").open("ab") as out:
            self.processes[name] = subprocess.Popen(
                self.command(name),
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            self.pids.record(self.processes[name].pid)
        return self.processes[name]

    def _wait_ready(self, name: str) -> None:
        process = self.processes[name]
        if not self._ready(name, threading.Event(), kill_late=False):
            if process.poll() is not None:
                raise StartupError(
                    f"{name} exited with {process.returncode}; see {self.logs / (name + '.log')}"
                )
            raise StartupError(f"{name} not listening after {READY_SECONDS}s")

    def _ready(self, name: str, stop: threading.Event, *, kill_late: bool = True) -> bool:
        """Wait until a function listens (the dispatcher, which has no port, is up once
        started); False if it exits first, `stop` is set, or READY_SECONDS pass (then,
        with `kill_late`, its group is killed, so the supervisor counts it as dead)."""
        process = self.processes[name]
        if name not in FUNCTIONS:
            return process.poll() is None
        deadline = time.monotonic() + READY_SECONDS
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            if port_open(f"{self.config.host}:{self.port(name)}"):
                return True
            if stop.wait(0.05):  # polling a port that is not up yet
                return False
        if kill_late:
            log.warning("%s not listening after %ds; killing it", name, READY_SECONDS)
            with contextlib.suppress(OSError):  # it may have exited meanwhile
                os.killpg(process.pid, signal.SIGKILL)
        return False

    def wait_ready(self, name: str) -> None:
        """Block until a (re)started function accepts connections."""
        self._wait_ready(name)

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to one process group and reap it (crash tests use SIGKILL)."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, sig)
            process.wait(timeout=30)

    def wait(self, timeout: float | None = None) -> None:
        """Block while the stack runs (or `timeout` seconds); raise why it stopped by itself
        (a `ProcessCrashLoop`)."""
        self._stopped.wait(timeout)
        self.check()

    def check(self) -> None:
        """Raise why the stack stopped by itself, if it did."""
        if self.failure is not None:
            raise self.failure

    def _fail(self, error: FanoutError) -> None:
        self.failure = error
        self.stop()

    def hurry(self) -> None:
        """Cut the grace of the stop under way (or the next one) to HURRIED_STOP_SECONDS:
        what a second Ctrl-C or `kill` asks for. Called from a signal handler, so it only
        sets a flag (no lock, no exception)."""
        self._hurried = True

    def stop(self) -> None:
        """End every process the stack started (functions, dispatcher, emulators) and the
        groups they lead: SIGTERM to all groups at once, up to STOP_SECONDS for them to exit
        (HURRIED_STOP_SECONDS once `hurry` was called), then SIGKILL. Idempotent: a second
        call, from another thread or after a crash loop stopped the stack, waits for the
        first and does nothing more."""
        self._scheduler_stop.set()
        if self.supervisor is not None:
            self.supervisor.stop()  # first: no restart from here on
        with self._stop_lock:  # the supervisor (on a crash loop) and the owner may both stop
            if not self._stopped.is_set():
                self._end_processes()
        self._stopped.set()

    def _end_processes(self) -> None:
        leaders = dict(self.processes)
        if self.emulator is not None:
            leaders[self.emulator.name] = self.emulator.process
        if self.cloud is not None:
            leaders.update({emulator.name: emulator.process for emulator in self.cloud.emulators})
        # Only groups whose leader is not reaped yet (running, or dead and unnoticed): one
        # reaped earlier was killed whole then (supervisor, `kill`), and its number may
        # belong to another process by now.
        running = {name: leader for name, leader in leaders.items() if leader.returncode is None}
        for leader in running.values():
            _signal_group(leader, signal.SIGTERM)
        began = time.monotonic()
        while alive := [name for name, leader in running.items() if leader.poll() is None]:
            grace = HURRIED_STOP_SECONDS if self._hurried else STOP_SECONDS
            if time.monotonic() - began >= grace:
                # Asked for when hurried; a surprise (a process stuck) when not.
                level = logging.INFO if self._hurried else logging.WARNING
                log.log(level, "%s did not stop within %g s; killing", ", ".join(alive), grace)
                break
            time.sleep(0.05)  # polling the children's exit; the grace bounds it
        for leader in running.values():
            # Also the group of a leader that exited: what it started may outlive it.
            _signal_group(leader, signal.SIGKILL)
            leader.wait()
        # Each emulator has exited by now; this closes what the stack holds of them.
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        if self.cloud is not None:
            self.cloud.stop()
        self.pids.clear()
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the local Cloud Scheduler ----------------------------------------------------------

    def sweep(self) -> dict[str, int]:
        """Call cleanup_jobs once, as Cloud Scheduler would; returns its report."""
        request = urllib.request.Request(
            self.url("cleanup_jobs"),
            data=b"{}",
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            report: dict[str, int] = json.loads(response.read())
            return report

    def _schedule(self) -> None:
        interval = self.config.sweep_interval or 60.0
        while not self._scheduler_stop.wait(interval):
            try:
                self.sweep()
            except OSError as error:
                log.warning("local scheduler: cleanup_jobs failed: %s", error)


def _signal_group(leader: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):  # the whole group has exited
        os.killpg(leader.pid, sig)
