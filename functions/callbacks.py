"""Job callbacks: one POST of the finished job's summary to the caller's URL."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import stamina

from functions.errors import InvalidArgument
from functions.jobs import Job
from functions.observability.trace import TRACEPARENT, traceparent
from functions.serialize import job_json
from functions.urls import check_callback_url


class _RetryableStatus(Exception):
    """A 5xx or 429 answer: the receiver may accept a later attempt."""


class CallbackSender:
    """Sends callbacks with a short timeout and a few retries on transient failures."""

    def __init__(self, *, allow_local_http: bool, timeout: float = 10.0, attempts: int = 3) -> None:
        self.allow_local_http = allow_local_http
        self.timeout = timeout
        self.attempts = attempts

    def send(self, job: Job) -> str:
        """Deliver `job`'s summary; returns the delivery status to record on the job."""
        assert job.callback_url is not None
        try:
            # Checked again at send time: the name may resolve elsewhere than at submit.
            check_callback_url(job.callback_url, allow_local_http=self.allow_local_http)
        except InvalidArgument as error:
            return f"refused: {error.message}"
        body = json.dumps({"job": job_json(job)}).encode()
        # The receiver's own logs join the job's trace.
        headers = {TRACEPARENT: traceparent(job.trace_id)} if job.trace_id else {}
        try:
            status = self._post(job.callback_url, body, headers)
        except (urllib.error.URLError, TimeoutError, _RetryableStatus) as error:
            return f"failed: {error}"
        return f"delivered: HTTP {status}" if 200 <= status < 300 else f"rejected: HTTP {status}"

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        for attempt in stamina.retry_context(
            on=(urllib.error.URLError, TimeoutError, _RetryableStatus),
            attempts=self.attempts,
            wait_initial=0.5,
            wait_max=5.0,
        ):
            with attempt:
                request = urllib.request.Request(
                    url,
                    data=body,
                    method="POST",
                    headers={
                        "Content-Type": "application/json",
                        "User-Agent": "fanout",
                        **headers,
                    },
                )
                try:
                    with urllib.request.urlopen(request, timeout=self.timeout) as response:
                        return int(response.status)
                except urllib.error.HTTPError as error:
                    if error.code >= 500 or error.code == 429:
                        raise _RetryableStatus(f"HTTP {error.code}") from None
                    return int(error.code)
        raise AssertionError("unreachable: stamina re-raises after the last attempt")
