"""A small client for Fanout's HTTP API (ingest and jobs_api), used by the CLI, the
benchmarks and the end-to-end tests."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The extra headers one request to a URL carries (a deployed API's ID token).
HeadersFor = Callable[[str], Mapping[str, str]]


@dataclass(frozen=True)
class ApiError(Exception):
    """An HTTP error answer from Fanout, with its JSON body."""

    status: int
    body: Mapping[str, Any]

    def __str__(self) -> str:
        message = f"HTTP {self.status}: {self.body.get('message', self.body)}"
        problems = self.body.get("problems")
        if isinstance(problems, list) and problems:
            # A validation error names each field: one line still, for the CLI.
            message += " (" + "; ".join(_problem(p) for p in problems) + ")"
        return message


def _problem(problem: Any) -> str:
    if isinstance(problem, Mapping):
        return f"{problem.get('field')}: {problem.get('problem')}"
    return str(problem)


class ApiUnreachable(ConnectionError):
    """No answer from a Fanout URL: nothing listens there (no stack running), or the
    network failed. A `ConnectionError`, so callers catching `OSError` still see it."""

    def __init__(self, url: str, reason: object) -> None:
        parts = urllib.parse.urlsplit(url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.refused = isinstance(reason, ConnectionRefusedError)
        self.reason = reason
        super().__init__(f"cannot reach {self.origin}: {reason}")


def call(
    method: str,
    url: str,
    body: Any = None,
    *,
    raw: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, Any]:
    """One HTTP call; returns (status, decoded JSON, or text, or None). Raises `ApiError`
    on 4xx/5xx."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, _decode(response.read())
    except urllib.error.HTTPError as error:
        payload = error.read()
        try:
            decoded = json.loads(payload) if payload else {}
        except ValueError:
            decoded = {"message": payload.decode(errors="replace")}
        if not isinstance(decoded, Mapping):
            decoded = {"message": str(decoded)}
        raise ApiError(error.code, decoded) from None


def _decode(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


def _quote(segment: str) -> str:
    """One path segment: a job id with a '/' or '..' in it stays inside its route."""
    return urllib.parse.quote(segment, safe="")


def _query(params: Mapping[str, str | None]) -> str:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    return f"?{query}" if query else ""


class FanoutClient:
    """Typed calls to ingest (`submit`) and jobs_api (the rest). `headers_for`, when given,
    adds headers per request URL (the CLI's ID tokens for a deployed API)."""

    def __init__(
        self, ingest_url: str, api_url: str, *, headers_for: HeadersFor | None = None
    ) -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.api_url = api_url.rstrip("/")
        self.headers_for = headers_for

    def _call(self, method: str, url: str, body: Any = None) -> Any:
        headers = self.headers_for(url) if self.headers_for is not None else None
        try:
            _, answer = call(method, url, body, headers=headers)
        except urllib.error.URLError as error:  # not an HTTPError: `call` raised ApiError
            raise ApiUnreachable(url, error.reason) from None
        except (TimeoutError, ConnectionError) as error:
            raise ApiUnreachable(url, error) from None
        return answer

    def submit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        return dict(self._call("POST", self.ingest_url + "/", request))

    def job(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("GET", f"{self.api_url}/jobs/{_quote(job_id)}"))

    def jobs(self, **params: str) -> dict[str, Any]:
        """One page of jobs, newest first: `status` (comma list), `source`, `client_id`,
        `limit`, `cursor`."""
        return dict(self._call("GET", f"{self.api_url}/jobs" + _query(params)))

    def batches(self, job_id: str, **params: str) -> dict[str, Any]:
        """One page of a job's batches: `status`, `limit`, `cursor`."""
        url = f"{self.api_url}/jobs/{_quote(job_id)}/batches" + _query(params)
        return dict(self._call("GET", url))

    def logs(
        self,
        job_id: str,
        *,
        batch_id: str | None = None,
        severity: str | None = None,
        event: str | None = None,
        cursor: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """One page of a job's log lines; pass `next_cursor` back for the next page, or
        `resume_cursor` later for the lines written since."""
        params = {
            "batch_id": batch_id,
            "severity": severity,
            "event": event,
            "cursor": cursor,
            "limit": None if limit is None else str(limit),
        }
        return dict(
            self._call("GET", f"{self.api_url}/jobs/{_quote(job_id)}/logs" + _query(params))
        )

    def cancel(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"{self.api_url}/jobs/{_quote(job_id)}/cancel"))

    def retry(self, job_id: str) -> dict[str, Any]:
        return dict(self._call("POST", f"{self.api_url}/jobs/{_quote(job_id)}/retry"))

    def search(
        self, collection: str, query: str, k: int = 5, *, by: str = "document"
    ) -> dict[str, Any]:
        # `by` only when not the default: an API from before it refuses unknown parameters.
        params = _query({"q": query, "k": str(k), **({"by": by} if by != "document" else {})})
        return dict(
            self._call("GET", f"{self.api_url}/collections/{_quote(collection)}/search{params}")
        )

    def delete(self, job_id: str) -> None:
        self._call("DELETE", f"{self.api_url}/jobs/{_quote(job_id)}")
