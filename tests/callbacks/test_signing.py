"""The Fanout-Signature scheme: sign, verify, and the README's receiver agreeing with it."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from functions.signing import InvalidSignature, sign, verify
from tests.callbacks.readme import readme_receiver

SECRET = "whsec-0123456789abcdef0123456789"
BODY = b'{"job": {"job_id": "20260101-000000-000000-deadbeef", "status": "completed"}}'
NOW = 1_767_225_600


def test_the_signature_is_an_hmac_of_timestamp_dot_body() -> None:
    """t is whole seconds; v1 is hex HMAC-SHA256 of "<t>.<body>" keyed with the secret."""
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(BODY, SECRET, NOW + 0.9) == f"t={NOW},v1={expected}"


def test_verify_accepts_its_own_signature_within_the_tolerance() -> None:
    header = sign(BODY, SECRET, NOW)
    assert verify(header, BODY, SECRET, now=NOW) == NOW
    assert verify(header, BODY, SECRET, now=NOW + 300) == NOW
    assert verify(header, BODY, SECRET, now=NOW - 300) == NOW  # a receiver's clock behind
    assert verify(header, BODY, SECRET, now=NOW + 30, tolerance=60) == NOW


@pytest.mark.parametrize(
    ("header", "body", "now", "says"),
    [
        (sign(BODY, SECRET, NOW), BODY + b" ", NOW, "no v1 signature matches"),
        (sign(BODY, "another-secret-0123456789", NOW), BODY, NOW, "no v1 signature matches"),
        (sign(BODY, SECRET, NOW), BODY, NOW + 301, "outside"),  # a replay, 5 minutes late
        (sign(BODY, SECRET, NOW), BODY, NOW - 301, "outside"),
        ("", BODY, NOW, "expected t="),
        (f"v1={'0' * 64}", BODY, NOW, "expected t="),
        (f"t={NOW}", BODY, NOW, "expected t="),
        (f"t=abc,v1={'0' * 64}", BODY, NOW, "expected t="),
        (f"t={NOW},t={NOW},v1={'0' * 64}", BODY, NOW, "expected t="),
        (f"t={NOW},v1=ünïcode", BODY, NOW, "no v1 signature matches"),
    ],
)
def test_verify_refuses(header: str, body: bytes, now: int, says: str) -> None:
    with pytest.raises(InvalidSignature, match=says):
        verify(header, body, SECRET, now=now)


def test_any_matching_v1_is_enough() -> None:
    """A header with several v1 values (a secret being rotated) verifies if one matches,
    whatever its place; extra spaces and unknown schemes are ignored."""
    good = sign(BODY, SECRET, NOW).split(",")[1]
    header = f"t={NOW}, v1={'0' * 64}, v0=legacy, {good}"
    assert verify(header, BODY, SECRET, now=NOW) == NOW


def test_the_readme_receiver_agrees() -> None:
    """The README's receiver accepts a fresh signature and refuses what verify refuses
    (its clock is the real one, so the headers are signed now; a header's time is whole
    seconds and the receiver reads the clock later, so the stale and future ones are
    2 s outside the 300 s tolerance, never on its edge)."""
    verified = readme_receiver()
    now = time.time()
    header = sign(BODY, SECRET, now)
    assert verified(header, BODY, SECRET)
    assert not verified(header, BODY + b"x", SECRET)
    assert not verified(sign(BODY, SECRET, now - 302), BODY, SECRET)
    assert not verified(sign(BODY, SECRET, now + 302), BODY, SECRET)
    assert not verified("", BODY, SECRET)
    assert not verified(f"t={int(now)}", BODY, SECRET)
    assert not verified(f"t={int(now)},v1=ünïcode", BODY, SECRET)
