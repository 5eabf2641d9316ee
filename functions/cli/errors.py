"""The command's own typed errors; `main.py` turns each into one line and an exit code."""

from __future__ import annotations

from functions.errors import FanoutError


class UsageError(FanoutError):
    """Raised when the command line (or a file it names) asks for something that cannot be
    done as given: a missing URL, a malformed --option, an unreadable request file. Nothing
    has been sent when it is raised. Exit code 2, like argparse's own usage errors."""


class CredentialsUnavailable(FanoutError):
    """Raised when no Google ID token can be minted for a deployed API: Application Default
    Credentials are missing or cannot make ID tokens. Nothing has been sent."""

    def __init__(self, audience: str, reason: str) -> None:
        super().__init__(
            f"no Google ID token for {audience}: {reason} (set GOOGLE_APPLICATION_CREDENTIALS "
            "to a service account key, or run where a metadata server gives one)"
        )
        self.audience = audience
