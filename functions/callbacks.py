"""Job callbacks: a signed POST of the finished job's summary to the caller's URL.

One `send` checks the URL, resolves its host once and connects to a checked address
(functions/urls.py, functions/callback_transport.py), signs the body
(functions/signing.py) and tries a few times on transient failures. What it returns says
whether a later delivery (the sweeper's) may succeed where this one failed.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

import stamina

from functions.callback_transport import OpenSocket, open_socket, post
from functions.errors import InvalidArgument
from functions.jobs import Job
from functions.observability.trace import TRACEPARENT, traceparent
from functions.serialize import job_json
from functions.signing import SIGNATURE_HEADER, sign
from functions.urls import CallbackTarget, Resolver, callback_target, resolve_host

# Client errors that say "later", not "never": Request Timeout and Too Many Requests.
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one delivery went. `status` is what the job records: "delivered: HTTP 200",
    "rejected: HTTP 404" (a final answer), "refused: ..." (Fanout may not call that URL),
    or "failed: ..." (network, TLS, timeout, 5xx, 408, 429). `retryable` is True when a
    later delivery may succeed."""

    status: str
    retryable: bool = False

    @property
    def delivered(self) -> bool:
        return self.status.startswith("delivered")

    @property
    def error(self) -> str | None:
        return None if self.delivered else self.status


def classify(status: int) -> Delivery:
    """What an HTTP answer means for the delivery. A redirect is a final answer: following
    it would let the receiver send Fanout anywhere, inside the network included."""
    if 200 <= status < 300:
        return Delivery(f"delivered: HTTP {status}")
    if 300 <= status < 400:
        return Delivery(f"rejected: HTTP {status} redirect not followed")
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        return Delivery(f"failed: HTTP {status}", retryable=True)
    return Delivery(f"rejected: HTTP {status}")


class _RetryableStatus(Exception):
    """A 5xx, 408 or 429 answer: the receiver may accept a later attempt."""


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


class CallbackSender:
    """Sends callbacks with a short timeout and a few retries on transient failures. Never
    sends one unsigned: without a secret, nothing is sent."""

    def __init__(
        self,
        *,
        allow_local_http: bool,
        secret: str | None,
        timeout: float = 10.0,
        attempts: int = 3,
        wait_initial: float = 0.5,
        wait_max: float = 5.0,
        wait_jitter: float = 1.0,
        resolve: Resolver = resolve_host,
        opener: OpenSocket = open_socket,
        tls: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.allow_local_http = allow_local_http
        self.secret = secret
        self.timeout = timeout
        self.attempts = attempts
        self.wait_initial = wait_initial
        self.wait_max = wait_max
        self.wait_jitter = wait_jitter
        self.resolve = resolve
        self.opener = opener
        self.clock = clock
        self._tls = tls

    def send(self, job: Job) -> Delivery:
        """Deliver `job`'s summary once (with the sender's own retries)."""
        assert job.callback_url is not None
        if not self.secret:
            return Delivery(
                "failed: not sent: FANOUT_CALLBACK_SECRET is not set, and callbacks are"
                " never sent unsigned",
                retryable=True,
            )
        try:
            # Checked again at send time, and resolved once: the request goes to an address
            # that passed the check, whatever the name resolves to a moment later.
            target = callback_target(
                job.callback_url, allow_local_http=self.allow_local_http, resolve=self.resolve
            )
        except InvalidArgument as error:
            return Delivery(f"refused: {error.message}")
        except OSError as error:
            return Delivery(f"failed: {_describe(error)}", retryable=True)
        body = json.dumps({"job": job_json(job)}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "fanout"}
        if job.trace_id:  # the receiver's own logs join the job's trace
            headers[TRACEPARENT] = traceparent(job.trace_id)
        try:
            return classify(self._post(target, body, headers, self.secret))
        except _RetryableStatus as error:
            return Delivery(f"failed: {error}", retryable=True)
        except (OSError, http.client.HTTPException) as error:
            return Delivery(f"failed: {_describe(error)}", retryable=True)

    def _post(
        self, target: CallbackTarget, body: bytes, headers: dict[str, str], secret: str
    ) -> int:
        for attempt in stamina.retry_context(
            on=(OSError, http.client.HTTPException, _RetryableStatus),
            attempts=self.attempts,
            wait_initial=self.wait_initial,
            wait_max=self.wait_max,
            wait_jitter=self.wait_jitter,
        ):
            with attempt:
                # Signed at each attempt: the timestamp says when this request was sent.
                signed = {**headers, SIGNATURE_HEADER: sign(body, secret, self.clock())}
                status = post(
                    target, body, signed, timeout=self.timeout, opener=self.opener, tls=self.tls
                )
                if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
                    raise _RetryableStatus(f"HTTP {status}")
                return status
        raise AssertionError("unreachable: stamina re-raises after the last attempt")

    @property
    def tls(self) -> ssl.SSLContext:
        """The TLS settings of https callbacks: the system's CAs, hostname checked."""
        if self._tls is None:
            self._tls = ssl.create_default_context()
        return self._tls
