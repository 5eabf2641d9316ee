"""Callback signatures, in the scheme Stripe uses for its webhooks.

Every callback POST carries

    Fanout-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">

keyed with the deployment's secret (FANOUT_CALLBACK_SECRET). The receiver recomputes the
HMAC over the exact bytes it received, compares it in constant time, and refuses a timestamp
too far from its own clock, so a captured request cannot be replayed later. A header may
carry several `v1` values (one per secret while a secret is being rotated); one match is
enough.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Fanout-Signature"
# Seconds a signature stays acceptable, either way of the receiver's clock.
DEFAULT_TOLERANCE = 300


class InvalidSignature(ValueError):
    """The header is malformed, the HMAC does not match, or the timestamp is too old."""


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(body: bytes, secret: str, now: float) -> str:
    """The `Fanout-Signature` value for `body`, signed at `now` (unix seconds)."""
    timestamp = int(now)
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


def verify(
    header: str,
    body: bytes,
    secret: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    now: float | None = None,
) -> int:
    """Check a `Fanout-Signature` header against the raw `body`; returns its timestamp.
    Raises `InvalidSignature` unless one `v1` matches and the timestamp is within
    `tolerance` seconds of `now` (default: this machine's clock)."""
    timestamps: list[str] = []
    macs: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamps.append(value)
        elif key == "v1":
            macs.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit() or not macs:
        raise InvalidSignature("expected t=<unix seconds>,v1=<hex hmac>")
    timestamp = int(timestamps[0])
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        raise InvalidSignature(f"timestamp {timestamp} is outside the {tolerance:g} s tolerance")
    expected = _mac(secret, timestamp, body).encode()
    if not any(hmac.compare_digest(expected, mac.encode()) for mac in macs):
        raise InvalidSignature("no v1 signature matches the body")
    return timestamp
