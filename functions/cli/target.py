"""Which Fanout a command talks to: the local stack by default, or a deployed one named by
--api-url / --ingest-url (or FANOUT_API_URL / FANOUT_INGEST_URL). Requests to a deployed
API carry a Google ID token (auth.py); the local stack's take none."""

from __future__ import annotations

import argparse
import urllib.parse
from dataclasses import dataclass
from functools import cached_property

from functions.cli.auth import IdTokens, is_local
from functions.cli.client import FanoutClient
from functions.cli.errors import UsageError
from functions.config import DEFAULT_API_URL, DEFAULT_INGEST_URL, CliSettings
from functions.local.stack import FUNCTIONS


def add_target_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        help=f"the jobs API (default FANOUT_API_URL, else the local stack's {DEFAULT_API_URL})",
    )
    parser.add_argument(
        "--ingest-url",
        help="the ingest function (default FANOUT_INGEST_URL; for a local API, the same "
        "stack's ingest port)",
    )


@dataclass(frozen=True)
class Target:
    """The jobs API's base URL and the ingest function's (None: a deployed API whose ingest
    URL was not given, which only `submit` needs)."""

    api_url: str
    ingest_url: str | None

    @classmethod
    def from_args(cls, args: argparse.Namespace, settings: CliSettings | None = None) -> Target:
        """Flags first, then the environment, then the local stack."""
        settings = settings if settings is not None else CliSettings.from_env()
        api = _checked("--api-url", args.api_url or settings.api_url or DEFAULT_API_URL)
        ingest = args.ingest_url or settings.ingest_url
        if ingest is None and is_local(api):
            ingest = _local_ingest_for(api)
        return cls(api, _checked("--ingest-url", ingest) if ingest else None)

    @property
    def local(self) -> bool:
        return is_local(self.api_url)

    @cached_property
    def client(self) -> FanoutClient:
        """Built on first use; a deployed API's ID tokens are minted on the first request."""
        tokens = IdTokens()
        return FanoutClient(
            self.ingest_url or self.api_url, self.api_url, headers_for=tokens.headers_for
        )

    def require_ingest(self) -> str:
        if self.ingest_url is None:
            raise UsageError(
                f"submitting to {self.api_url} needs the ingest function's URL: pass "
                "--ingest-url or set FANOUT_INGEST_URL"
            )
        return self.ingest_url

    def job_url(self, job_id: str) -> str:
        return f"{self.api_url}/jobs/{urllib.parse.quote(job_id, safe='')}"

    def page_url(self, job_id: str) -> str:
        """The job's web page (functions/web, under /ui)."""
        return f"{self.api_url}/ui/jobs/{urllib.parse.quote(job_id, safe='')}"


def _checked(flag: str, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{flag} must be an http(s) URL, got {url!r}")
    return url.rstrip("/")


def _local_ingest_for(api_url: str) -> str:
    """The ingest URL of the local stack whose jobs API is `api_url`: same host, and the
    stack's port layout (functions/local/stack.py, `make dev PORT_BASE=...`)."""
    parts = urllib.parse.urlsplit(api_url)
    if parts.port is None:
        return DEFAULT_INGEST_URL
    port = parts.port - FUNCTIONS["jobs_api"] + FUNCTIONS["ingest"]
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{parts.scheme}://{host}:{port}"
