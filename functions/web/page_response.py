"""Turning a template into a page answer: the shared frame (styles, script, token, time
helpers), security headers, and the token cookie.

The styles and the script are inlined, with a fresh nonce each answer, so the pages need no
static route and a strict Content-Security-Policy allows nothing else: even if some user
text escaped the templates' escaping, no script it carried would run.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

import flask
from markupsafe import Markup

from functions import humanize
from functions.web.csrf import current_token, set_token_cookie
from functions.web.templating import render

HTML = "text/html"


@functools.cache
def _asset(name: str) -> Markup:
    """One of our own files under static/ (never user data), read once per instance."""
    text = resources.files("functions.web").joinpath("static", name).read_text("utf-8")
    return Markup(text)  # our own stylesheet and script, not user input


class Format:
    """The time and size helpers templates call, relative to one `now`."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def ago(self, moment: datetime) -> str:
        return humanize.relative_time(moment, self.now)

    def starts(self, moment: datetime) -> str:
        """ "starts in 2 h" (a scheduled job), "starting" once its time has come."""
        return humanize.start_time(moment, self.now)

    def exact(self, moment: datetime) -> str:
        return humanize.absolute_time(moment)

    def span(self, start: datetime | None, end: datetime | None) -> str:
        """From `start` to `end`, or to now while it runs."""
        if start is None:
            return humanize.duration(None)
        return humanize.duration((end or self.now) - start)

    def duration(self, value: timedelta | None) -> str:
        return humanize.duration(value)

    def bytes(self, count: int) -> str:
        return humanize.byte_size(count)


@dataclass(frozen=True)
class Frame:
    """What every page template gets as `page`."""

    token: str
    now: datetime
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(16))

    @property
    def fmt(self) -> Format:
        return Format(self.now)

    @property
    def styles(self) -> Markup:
        return _asset("pages.css")

    @property
    def script(self) -> Markup:
        return _asset("pages.js")


def page(
    request: flask.Request, template: str, now: datetime, status: int = 200, **context: Any
) -> flask.Response:
    """`template` rendered as a page; sets the token cookie on the browser's first page."""
    token, new = current_token(request)
    frame = Frame(token=token, now=now)
    response = flask.Response(render(template, page=frame, **context), status=status)
    response.mimetype = HTML
    _secure(response, frame.nonce)
    if new:
        set_token_cookie(response, request, token)
    return response


def redirect(location: str) -> flask.Response:
    """303 See Other: after a POST, the browser GETs `location` (reloading it is safe)."""
    response = flask.Response(status=303, headers={"Location": location})
    _secure(response, None)
    return response


def _secure(response: flask.Response, nonce: str | None) -> None:
    own = f"'nonce-{nonce}'" if nonce else "'none'"
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {own}; script-src {own}; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    # The pages' own links and form posts carry a Referer (the same-origin check's fallback);
    # nothing goes to other sites (a Logs Explorer link).
    response.headers["Referrer-Policy"] = "same-origin"
    # Pages hold the form token and live state: never from a cache.
    response.headers["Cache-Control"] = "no-store"
