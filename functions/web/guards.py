"""What every state-changing JSON route (ingest's POST /, the API's cancel, retry and
delete) requires before its handler runs, so that a browser cannot be made to call it from
another site:

- `Content-Type: application/json`, UTF-8, no BOM (else 415). An HTML form can only send
  `application/x-www-form-urlencoded`, `multipart/form-data` or `text/plain`; a script on
  another origin must ask first (a CORS preflight, which nothing here answers) to send JSON.
- No sign of another site (else 403 CrossSiteRequest): `Sec-Fetch-Site` must not be
  `cross-site` or `same-site`, and `Origin`, when sent, must name this host.
  `same-site` is refused too: it covers another port of the same host (localhost:8000
  calling localhost:8083) and a sibling subdomain, neither of which is this service's own
  page. Only `same-origin` and `none` (typed in the address bar) pass.

curl, the `fanout` CLI, Cloud Tasks and Cloud Scheduler send neither header, and so pass.
"""

from __future__ import annotations

import codecs

import flask

from functions.errors import UnsupportedMediaType
from functions.web.csrf import check_not_cross_site

JSON = "application/json"
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def check_json_request(request: flask.Request, max_bytes: int) -> None:
    """`CrossSiteRequest` or `UnsupportedMediaType` unless `request` may change state. A
    body over `max_bytes` is left unread, for the handler to refuse as too large."""
    check_not_cross_site(request)
    if request.mimetype != JSON:
        sent = request.headers.get("Content-Type") or "none"
        raise UnsupportedMediaType(f"send Content-Type: {JSON} (got {sent[:80]})")
    charset = request.mimetype_params.get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        raise UnsupportedMediaType(f"JSON must be UTF-8 (got charset={charset[:40]})")
    if request.content_length is not None and request.content_length > max_bytes:
        return
    raw = request.get_data(cache=True)  # kept for the handler to read
    if len(raw) > max_bytes:
        return
    if raw.startswith(_BOMS):
        raise UnsupportedMediaType("JSON must be UTF-8 without a byte order mark")
    # A NUL byte is valid UTF-8 but never in JSON text: it is UTF-16 or UTF-32 (which
    # json.loads would otherwise detect and read).
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UnsupportedMediaType("JSON must be UTF-8") from None
    if b"\x00" in raw:
        raise UnsupportedMediaType("JSON must be UTF-8")
