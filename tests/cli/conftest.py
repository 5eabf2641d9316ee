"""The `fanout` command as a user runs it: the console script installed in the venv, in a
process of its own, against one real local stack shared by the package's tests (each test
keeps to its own jobs, by client id or job id, so they do not interfere)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.cli.client import FanoutClient
from functions.local.emulators import ROOT
from functions.local.stack import LocalStack
from tests.e2e.conftest import client_for, print_logs, shared_stack, wait_terminal

# The console script `pyproject.toml` declares, next to the interpreter running the tests.
FANOUT = Path(sys.executable).with_name("fanout")


@dataclass(frozen=True)
class Ran:
    """One finished `fanout` run."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout as exactly one JSON document (json.loads refuses anything around it)."""
        return json.loads(self.stdout)

    def one_error_line(self) -> str:
        """The command failed the way every command must: nothing on stdout, one line on
        stderr, no traceback. Returns that line."""
        assert "Traceback" not in self.stdout + self.stderr, self.stderr
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), self.stderr
        assert self.stdout == "", self.stdout
        return lines[0]


class Fanout:
    """Runs `fanout` against the stack; the target comes from FANOUT_API_URL and
    FANOUT_INGEST_URL, as a user of a deployed API would set them."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("FANOUT_")} | {
            "FANOUT_API_URL": stack.url("jobs_api"),
            "FANOUT_INGEST_URL": stack.url("ingest"),
        }

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, stdin: str | None = None
    ) -> Ran:
        result = subprocess.run(
            [str(FANOUT), *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        return Ran(result.returncode, result.stdout, result.stderr)

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """A `fanout` process left running (watch), its stdout and stderr piped."""
        return subprocess.Popen(
            [str(FANOUT), *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    @property
    def client(self) -> FanoutClient:
        return client_for(self.stack)

    def noop_job(
        self,
        items: int,
        *,
        batch_size: int = 1,
        delay_ms: int = 0,
        fail_file: Path | None = None,
        client_id: str | None = None,
        request_id: str | None = None,
    ) -> str:
        """Submits a noop job straight to the API (the command is not what is tested)."""
        options: dict[str, Any] = {"delay_ms": delay_ms}
        if fail_file is not None:
            options["fail_items_file"] = str(fail_file)
        request: dict[str, Any] = {
            "source": "noop",
            "collection": "cli",
            "items": [f"doc-{i}" for i in range(items)],
            "batch_size": batch_size,
            "options": options,
        }
        if client_id is not None:
            request |= {"client_id": client_id, "request_id": request_id or f"r{items}"}
        job_id: str = self.client.submit(request)["job_id"]
        return job_id

    def ended(self, job_id: str) -> dict[str, Any]:
        return wait_terminal(self.client, job_id)


@pytest.fixture(scope="package")
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[LocalStack]:
    """`make_stack`'s stack (tests/e2e/conftest.py), started once for the package."""
    failures = request.session.testsfailed
    stack = shared_stack(tmp_path_factory, "cli-stack")
    yield stack
    stack.stop()
    if request.session.testsfailed > failures:
        print_logs(stack)


@pytest.fixture
def fanout(stack: LocalStack) -> Fanout:
    return Fanout(stack)
