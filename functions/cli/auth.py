"""Google ID tokens for a deployed Fanout. The functions are private: Cloud Run's IAM check
wants `Authorization: Bearer <ID token>` whose audience is the function's URL. The token is
minted from Application Default Credentials (a service account key in
GOOGLE_APPLICATION_CREDENTIALS, or the metadata server), once per audience, and reused
until shortly before it expires. The local stack's URLs get no token."""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from functions.cli.errors import CredentialsUnavailable
from functions.urls import LOCAL_HOSTS

# Google ID tokens live one hour; a fresh one is minted a little before that.
TOKEN_REUSE_SECONDS = 50 * 60


def is_local(url: str) -> bool:
    """A URL of this machine (the local stack), which takes no token."""
    return urllib.parse.urlsplit(url).hostname in LOCAL_HOSTS


def audience_of(url: str) -> str:
    """The function's URL origin (`https://host[:port]`): the audience its IAM check wants."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class IdTokens:
    """Mints ID tokens on first use and caches them per audience; `headers_for` is what
    `FanoutClient` calls for each request."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._transport: Any = None  # google-auth's requests transport, built once
        self._lock = threading.Lock()

    def headers_for(self, url: str) -> dict[str, str]:
        if is_local(url):
            return {}
        return {"Authorization": f"Bearer {self.token(audience_of(url))}"}

    def token(self, audience: str) -> str:
        # google-auth (and requests under it) is imported here: only a deployed API needs
        # it, and every command would pay its import time otherwise.
        import google.auth.exceptions
        import google.auth.transport.requests
        import google.oauth2.id_token

        with self._lock:
            cached = self._tokens.get(audience)
            now = self._clock()
            if cached is not None and now - cached[1] < TOKEN_REUSE_SECONDS:
                return cached[0]
            if self._transport is None:
                _quiet_metadata_probe()
                self._transport = google.auth.transport.requests.Request()
            try:
                token = google.oauth2.id_token.fetch_id_token(  # type: ignore[no-untyped-call]
                    self._transport, audience
                )
            except google.auth.exceptions.GoogleAuthError as error:
                raise CredentialsUnavailable(audience, str(error).rstrip(".")) from None
            self._tokens[audience] = (str(token), now)
            return str(token)


def _quiet_metadata_probe() -> None:
    """google-auth logs a warning for each failed probe of the metadata server (off Google
    Cloud, every probe fails); the one error line the command prints says it all."""
    logging.getLogger("google.auth.compute_engine._metadata").setLevel(logging.ERROR)
