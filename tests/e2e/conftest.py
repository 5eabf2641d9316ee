"""End-to-end fixtures: real local stacks (functions-framework processes, the dispatcher,
SQLite or a Firestore emulator), driven over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import pytest

from functions.cli.client import FanoutClient
from functions.local.emulators import free_port_block
from functions.local.stack import FUNCTIONS, LocalStack, StackConfig
from functions.local.supervisor import RestartPolicy
from tests.support.background_stops import stop_in_background
from tests.support.reports import failed

# Fast retries and short leases, so recovery paths finish in seconds.
FAST_ENV = {
    "FANOUT_LEASE_SECONDS": "3",
    "FANOUT_PROGRESS_INTERVAL_SECONDS": "0.2",
    "FANOUT_MIN_BACKOFF_SECONDS": "0.05",
    "FANOUT_MAX_BACKOFF_SECONDS": "0.5",
    "FANOUT_MAX_ATTEMPTS": "100",
    "FANOUT_ENQUEUE_GRACE_SECONDS": "0.5",
}
TERMINAL = {"completed", "failed", "cancelled"}
# The functions a test's stack starts unless it asks for more: those a job goes through.
# A test that sweeps (stack.sweep()) or pushes Pub/Sub messages names the sweeper or
# ingest_pubsub too; each function left out is one Python process less to start and stop.
JOB_FUNCTIONS = ("ingest", "run_batch", "jobs_api")
SWEPT = (*JOB_FUNCTIONS, "cleanup_jobs")


StackFactory = Callable[..., LocalStack]


@pytest.fixture
def make_stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[StackFactory]:
    stacks: list[LocalStack] = []

    def make(
        *,
        store: Literal["sqlite", "firestore"] = "sqlite",
        env: Mapping[str, str] | None = None,
        process_env: Mapping[str, Mapping[str, str]] | None = None,
        supervise: bool = True,  # False: a process the test kills stays down
        functions: tuple[str, ...] = JOB_FUNCTIONS,
        restart_policy: Callable[[], RestartPolicy] = RestartPolicy,
    ) -> LocalStack:
        config = StackConfig(
            state_dir=tmp_path / f"stack{len(stacks)}",
            port_base=free_port_block(len(FUNCTIONS)),
            store=store,
            # One emulator for the session, a project of its own per stack.
            firestore_emulator=(
                request.getfixturevalue("firestore_emulator").host if store == "firestore" else None
            ),
            env={**FAST_ENV, **(env or {})},
            process_env=process_env or {},
            supervise=supervise,
            functions=functions,
            restart_policy=restart_policy,
        )
        stack = LocalStack(config)
        stacks.append(stack)
        return stack.start()

    yield make
    if failed(request.node):
        for stack in stacks:
            stack.stop()
            print_logs(stack)
    else:
        for stack in stacks:
            stop_in_background(stack)


def shared_stack(
    factory: pytest.TempPathFactory,
    name: str,
    env: Mapping[str, str] = FAST_ENV,
    functions: tuple[str, ...] = JOB_FUNCTIONS,
) -> LocalStack:
    """A started stack on free ports for tests that share one (module or package scope):
    the caller stops it."""
    config = StackConfig(
        state_dir=factory.mktemp(name),
        port_base=free_port_block(len(FUNCTIONS)),
        env=env,
        functions=functions,
    )
    return LocalStack(config).start()


def print_logs(stack: LocalStack, tail: int = 40) -> None:
    """Show the tail of every process log of a stack whose test failed (CI keeps no files)."""
    for log in sorted([*stack.logs.glob("*.log"), *stack.logs.glob("*.jsonl")]):
        lines = log.read_text(errors="replace").splitlines()[-tail:]
        print(f"----- {log.name} (last {len(lines)} lines) -----", *lines, sep="\n")


def client_for(stack: LocalStack) -> FanoutClient:
    return FanoutClient(stack.url("ingest"), stack.url("jobs_api"))


# What a Python repr looks like in text meant for people: a dict, a list, an object.
RAW_REPR = re.compile(r"\{'|\['|<[\w.]+ object at 0x|\b[A-Z]\w+\(\w+=")


def wait_for(predicate: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    """Poll an observable condition of the running stack until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # polling external processes' state; the deadline bounds it
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_terminal(client: FanoutClient, job_id: str, timeout: float = 90) -> dict[str, Any]:
    job: dict[str, Any] = wait_for(
        lambda: (j := client.job(job_id))["status"] in TERMINAL and j,
        timeout=timeout,
        what=f"job {job_id} to end",
    )
    return job


def all_batches(client: FanoutClient, job_id: str) -> list[dict[str, Any]]:
    batches: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        page = client.batches(job_id, limit="200", **({"cursor": cursor} if cursor else {}))
        batches.extend(page["batches"])
        cursor = page["next_cursor"]
        if cursor is None:
            return batches


class CallbackReceiver:
    """A real HTTP endpoint that records the callbacks it receives."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver.arrived:
                    receiver.received.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callback"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def callbacks() -> Iterator[CallbackReceiver]:
    receiver = CallbackReceiver()
    yield receiver
    receiver.close()
