"""What a log line may say about a callback URL: where it went, never the secrets that
travel in user info, queries and fragments."""

from __future__ import annotations

import pytest

from functions.urls import redacted_url


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        ("https://hooks.example.com/fanout?token=abc&x=1", "https://hooks.example.com/fanout"),
        ("https://user:pa55@example.com:8443/cb#frag", "https://example.com:8443/cb"),
        ("http://[::1]:9000/cb?sig=zzz", "http://[::1]:9000/cb"),
        ("https://example.com", "https://example.com"),
    ],
)
def test_a_callback_url_is_logged_without_its_secrets(url: str, logged: str) -> None:
    assert redacted_url(url) == logged
