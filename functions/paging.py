"""Opaque pagination cursors: base64url JSON naming the listing and the last key seen.

Callers treat them as opaque strings; whoever pages a listing (the job stores, the local log
reader) decodes them and refuses any it did not make. Nothing here knows about jobs or logs.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from functions.errors import InvalidCursor


def encode_cursor(kind: str, after: str | int) -> str:
    raw = json.dumps({"k": kind, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, kind: str, key_type: type[str] | type[int]) -> Any:
    """The key a cursor of listing `kind` resumes after; `InvalidCursor` if it is not one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True))
    except (ValueError, UnicodeError, binascii.Error):
        raise InvalidCursor(f"malformed cursor {cursor[:40]!r}") from None
    if not isinstance(data, dict) or data.get("k") != kind:
        raise InvalidCursor(f"cursor {cursor[:40]!r} does not belong to this listing")
    after = data.get("a")
    # bool is an int subclass; a cursor never holds one.
    if not isinstance(after, key_type) or isinstance(after, bool):
        raise InvalidCursor(f"cursor {cursor[:40]!r} has no valid position")
    return after
