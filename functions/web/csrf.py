"""Cross-site request protection for the pages' POSTs (submit, cancel, retry).

Two independent checks, both required:

- Same origin: a browser tells where a request comes from. `Sec-Fetch-Site` must not be
  `cross-site` or `same-site`; `Origin` (else `Referer`), when sent, must name this host.
- A token (double submit): the pages set a random token in a cookie and repeat it in their
  forms; a POST must carry both, equal. Another site can make a browser send the cookie
  (and SameSite=Lax already stops that for POSTs) but cannot read it to fill the field.

The token needs no server state or secret, so any instance checks what any other issued.
"""

from __future__ import annotations

import hmac
import re
import secrets
import urllib.parse

import flask

from functions.errors import CrossSiteRequest

COOKIE = "fanout_csrf"
FIELD = "csrf_token"
COOKIE_PATH = "/ui"
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def current_token(request: flask.Request) -> tuple[str, bool]:
    """The browser's token, or a new one; and whether it is new (then set the cookie)."""
    token = request.cookies.get(COOKIE, "")
    if _TOKEN.match(token):
        return token, False
    return secrets.token_urlsafe(32), True


def set_token_cookie(response: flask.Response, request: flask.Request, token: str) -> None:
    """For the page's path only, out of reach of scripts, never sent with another site's
    POST; `Secure` when the browser came over HTTPS (Cloud Run ends TLS in front)."""
    secure = request.is_secure or request.headers.get("X-Forwarded-Proto") == "https"
    response.set_cookie(
        COOKIE, token, path=COOKIE_PATH, httponly=True, samesite="Lax", secure=secure
    )


def check_not_cross_site(request: flask.Request, *, referer: bool = False) -> None:
    """`CrossSiteRequest` if the browser says the request comes from another site: a
    `Sec-Fetch-Site` of `cross-site` or `same-site` (another port or subdomain), or an
    `Origin` (else, with `referer`, a `Referer`) naming another host. A client that is not
    a browser sends none of them, and passes."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site in ("cross-site", "same-site"):
        raise CrossSiteRequest(f"refused a {fetch_site} request: use Fanout's own pages")
    origin = request.headers.get("Origin")
    if origin is not None:
        _check_host(origin, request.host, "Origin")
    elif referer and (sent := request.headers.get("Referer")) is not None:
        _check_host(sent, request.host, "Referer")


def check_same_site_post(request: flask.Request, submitted: str | None) -> None:
    """`CrossSiteRequest` unless the POST comes from this host's own page, with its token."""
    check_not_cross_site(request, referer=True)
    cookie = request.cookies.get(COOKIE, "")
    if not cookie or not submitted or not hmac.compare_digest(cookie.encode(), submitted.encode()):
        raise CrossSiteRequest(
            "the form's token is missing or out of date: reload the page and try again"
        )


def _check_host(url: str, host: str, header: str) -> None:
    # "null" (a sandboxed frame, a file) has no host, so it never matches.
    sent = urllib.parse.urlsplit(url).netloc.lower()
    if sent != host.lower():
        shown = sent or url[:80]
        raise CrossSiteRequest(f"refused a request from another site ({header}: {shown})")
