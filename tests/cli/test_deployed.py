"""`fanout` against a deployed Fanout: every request carries a Google ID token for the
function's URL, minted from Application Default Credentials; the local stack's get none.

Nothing here can mint a real ID token, so `google.oauth2.id_token.fetch_id_token` is the one
thing replaced (the credentials-error test runs the real google-auth, with no credentials).
The deployed API is a real HTTP server on 127.0.0.2: an address of this machine that is not
one of the local stack's names (functions/urls.py LOCAL_HOSTS), as a deployed host is not.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import count
from typing import Any

import pytest
from pytest_mock import MockerFixture

from functions.cli import main as cli
from functions.jobs import BATCH_STATUSES, Job, JobStatus
from functions.serialize import job_json
from tests.cli.conftest import FANOUT

JOB_ID = "20261123-191300-000000-0a1b2c3d"


class FakeDeployment:
    """A real HTTP server posing as a deployed function: it records each request's path and
    Authorization header, answers GET /jobs/{id} (and its batches) with a finished job and
    POST / with an accepted submission."""

    def __init__(self, host: str = "127.0.0.2") -> None:
        self.seen: list[tuple[str, str | None]] = []
        job = Job(
            job_id=JOB_ID,
            source="noop",
            collection="docs",
            created_at=datetime(2026, 11, 23, 19, 13, tzinfo=UTC),
            status=JobStatus.COMPLETED,
            total_batches=1,
            completed_batches=1,
        )
        self.job = job_json(job) | {"batches": {s.value: 0 for s in BATCH_STATUSES}}
        deployment = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: Any, status: int = 200) -> None:
                deployment.seen.append((self.path, self.headers.get("Authorization")))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == f"/jobs/{JOB_ID}":
                    self._answer(deployment.job)
                elif self.path.startswith(f"/jobs/{JOB_ID}/batches"):
                    self._answer({"batches": [], "next_cursor": None, "total": 0})
                else:
                    self._answer({"error": "JobNotFound", "message": "not found"}, 404)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                deployment.request = json.loads(self.rfile.read(length))
                self._answer({"job_id": JOB_ID, "status": "pending", "total_batches": 1}, 202)

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        self.request: dict[str, Any] = {}
        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[FakeDeployment]:
    deployment = FakeDeployment()
    yield deployment
    deployment.close()


@pytest.fixture
def ingest() -> Iterator[FakeDeployment]:
    deployment = FakeDeployment()
    yield deployment
    deployment.close()


@pytest.fixture
def minted(mocker: MockerFixture) -> list[str]:
    """ID tokens come from a stand-in for `fetch_id_token`: each call mints a new token
    naming its audience; the list holds them in order."""
    tokens: list[str] = []
    serial = count(1)

    def fetch_id_token(request: Any, audience: str) -> str:
        tokens.append(f"token-{next(serial)}-for-{audience}")
        return tokens[-1]

    mocker.patch("google.oauth2.id_token.fetch_id_token", side_effect=fetch_id_token)
    return tokens


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No target from the environment unless a test sets one; `cli.main` turns SIGTERM
    and SIGHUP into Ctrl-C for its process: pytest gets its own handlers back."""
    for name in ("FANOUT_API_URL", "FANOUT_INGEST_URL"):
        monkeypatch.delenv(name, raising=False)
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for number, handler in saved.items():
        signal.signal(number, handler)


def test_a_deployed_api_gets_an_id_token_for_its_url(
    api: FakeDeployment, minted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every request of `show` to a deployed API carries `Authorization: Bearer` with a
    token whose audience is the API's URL origin; one token serves them all."""
    code = cli.main(["show", JOB_ID, "--api-url", api.url + "/", "--json"])

    assert code == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["job"]["job_id"] == JOB_ID
    assert minted == [f"token-1-for-{api.url}"]
    assert [auth for _, auth in api.seen] == [f"Bearer {minted[0]}"] * 2
    assert [path.split("?")[0] for path, _ in api.seen] == [
        f"/jobs/{JOB_ID}",
        f"/jobs/{JOB_ID}/batches",
    ]


def test_submit_to_a_deployment_sends_each_function_its_own_token(
    api: FakeDeployment,
    ingest: FakeDeployment,
    minted: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The URLs come from FANOUT_API_URL and FANOUT_INGEST_URL. Ingest and the jobs API
    are separate functions, each with its own audience; a deployed location is sent as
    given (a path means nothing to the cloud)."""
    monkeypatch.setenv("FANOUT_API_URL", api.url)
    monkeypatch.setenv("FANOUT_INGEST_URL", ingest.url)

    request = ["--source", "documents", "--collection", "c", "--location", "gs://b/docs"]
    code = cli.main(["submit", *request, "--watch", "--json"])

    assert code == 0, capsys.readouterr().err
    assert ingest.request["location"] == "gs://b/docs"
    assert ingest.seen == [("/", f"Bearer token-1-for-{ingest.url}")]
    assert {auth for _, auth in api.seen} == {f"Bearer token-2-for-{api.url}"}
    assert json.loads(capsys.readouterr().out)["jobs"][0]["status"] == "completed"


def test_local_urls_get_no_token(mocker: MockerFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """The local stack (localhost, 127.0.0.1) is called without a token, and without
    asking Google for one."""
    mocker.patch(
        "google.oauth2.id_token.fetch_id_token",
        side_effect=AssertionError("no token for the local stack"),
    )
    local = FakeDeployment(host="127.0.0.1")
    try:
        code = cli.main(["watch", JOB_ID, "--api-url", local.url.replace("127.0.0.1", "localhost")])
        code_ip = cli.main(["watch", JOB_ID, "--api-url", local.url])
    finally:
        local.close()

    assert (code, code_ip) == (0, 0), capsys.readouterr().err
    assert local.seen and all(auth is None for _, auth in local.seen)


def test_submit_to_a_deployment_without_its_ingest_url_is_a_usage_error(
    api: FakeDeployment, minted: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(
        ["submit", "--api-url", api.url, "--source", "noop", "--collection", "c", "--items", "a"]
    )

    err = capsys.readouterr().err
    assert code == 2
    assert err == (
        f"error: submitting to {api.url} needs the ingest function's URL: pass --ingest-url "
        "or set FANOUT_INGEST_URL\n"
    )
    assert api.seen == [] and minted == []


def test_missing_credentials_are_one_clear_line(api: FakeDeployment) -> None:
    """Without usable Application Default Credentials the real google-auth refuses; the
    command prints one line naming the API and the reason, sends nothing, exits 1."""
    result = subprocess.run(
        [str(FANOUT), "show", JOB_ID, "--api-url", api.url],
        env={"PATH": "/usr/bin:/bin", "GOOGLE_APPLICATION_CREDENTIALS": "/no/such/key.json"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: no Google ID token for {api.url}: ")
    assert "GOOGLE_APPLICATION_CREDENTIALS path is either not found or invalid" in line
    assert api.seen == []
