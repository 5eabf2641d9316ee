"""A document's fingerprint: what tells, without reading it, that it has not changed.

Cloud Storage lists each object with its generation (a new one at every write) and the
MD5 of its bytes (none for composite objects). A local file has its size and
modification time. Either is compared with the fingerprint kept for the document when it
was last ingested; the MD5 of the bytes read is kept too, so a file touched but not
changed (a new mtime, the same bytes) is read and hashed, but neither chunked nor
embedded.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

# A local mtime this close to the moment the file was read may be shared by a write that
# lands later in the same clock tick (coarse file system timestamps): such a stamp is not
# kept, so the next run compares content instead ("racily clean", as git calls it).
RACY_NS = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """`stamp` changes whenever the content may have: a local file's mtime in ns, an
    object's generation ('' when unknown or not to be trusted). `md5` is the base64 MD5 of
    the bytes, as Cloud Storage spells it ('' when unknown)."""

    size: int
    stamp: str = ""
    md5: str = ""

    def matches(self, stored: Fingerprint) -> bool:
        """True when this (current) fingerprint proves the stored one's bytes unchanged."""
        if self.size != stored.size:
            return False
        if self.stamp and self.stamp == stored.stamp:
            return True
        return bool(self.md5) and self.md5 == stored.md5


def md5_of(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def mtime_stamp(mtime_ns: int) -> str:
    return f"mtime:{mtime_ns}"


def kept_mtime_stamp(mtime_ns: int, now_ns: int) -> str:
    """The stamp to keep for a file modified at `mtime_ns`, read at `now_ns`."""
    return "" if now_ns - mtime_ns < RACY_NS else mtime_stamp(mtime_ns)
