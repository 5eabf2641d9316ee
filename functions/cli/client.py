"""A small client for Fanout's HTTP API (ingest and jobs_api), used by the CLI."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ApiError(Exception):
    """An HTTP error answer from Fanout, with its JSON body."""

    status: int
    body: Mapping[str, Any]

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body.get('message', self.body)}"


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
        raise ApiError(error.code, decoded) from None


def _decode(payload: bytes) -> Any:
    if not payload:
        return None
    try:
        return json.loads(payload)
    except ValueError:
        return payload.decode(errors="replace")


class FanoutClient:
    def __init__(self, ingest_url: str, api_url: str) -> None:
        self.ingest_url = ingest_url.rstrip("/")
        self.api_url = api_url.rstrip("/")

    def submit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        _, body = call("POST", self.ingest_url + "/", request)
        return dict(body)

    def job(self, job_id: str) -> dict[str, Any]:
        _, body = call("GET", f"{self.api_url}/jobs/{job_id}")
        return dict(body)

    def jobs(self, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        _, body = call("GET", f"{self.api_url}/jobs" + (f"?{query}" if query else ""))
        return dict(body)

    def batches(self, job_id: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        _, body = call(
            "GET", f"{self.api_url}/jobs/{job_id}/batches" + (f"?{query}" if query else "")
        )
        return dict(body)

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
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        name = urllib.parse.quote(job_id, safe="")
        _, body = call("GET", f"{self.api_url}/jobs/{name}/logs" + (f"?{query}" if query else ""))
        return dict(body)

    def cancel(self, job_id: str) -> dict[str, Any]:
        _, body = call("POST", f"{self.api_url}/jobs/{job_id}/cancel")
        return dict(body)

    def retry(self, job_id: str) -> dict[str, Any]:
        _, body = call("POST", f"{self.api_url}/jobs/{job_id}/retry")
        return dict(body)

    def search(self, collection: str, query: str, k: int = 5) -> dict[str, Any]:
        params = urllib.parse.urlencode({"q": query, "k": str(k)})
        name = urllib.parse.quote(collection, safe="")
        _, body = call("GET", f"{self.api_url}/collections/{name}/search?{params}")
        return dict(body)

    def delete(self, job_id: str) -> None:
        call("DELETE", f"{self.api_url}/jobs/{job_id}")
