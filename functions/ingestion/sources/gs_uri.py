"""gs:// URIs: parsed strictly, and checked against the allowed buckets."""

from __future__ import annotations

import re
from dataclasses import dataclass

from functions.config import Settings
from functions.errors import InvalidArgument

_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")
_MAX_NAME_BYTES = 1024


@dataclass(frozen=True, slots=True)
class GcsLocation:
    bucket: str
    # An object-name prefix, as Cloud Storage means it: "docs" also matches "docs2/x".
    prefix: str


def parse_gs_uri(uri: str) -> GcsLocation:
    """`gs://bucket[/prefix]`, checked against Cloud Storage's naming rules (3-63 characters:
    lowercase letters, digits, `-`, `_`, `.`; starting and ending with a letter or digit; no
    `..`). `InvalidArgument` when malformed."""

    def invalid(reason: str) -> InvalidArgument:
        return InvalidArgument(f"{uri!r} is not a valid gs:// URI: {reason}")

    if not uri.startswith("gs://"):
        raise invalid("it must start with gs://")
    bucket, _, prefix = uri[len("gs://") :].partition("/")
    if not bucket:
        raise invalid("the bucket name is missing")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise invalid(
            f"{bucket!r} is not a bucket name (3-63 lowercase letters, digits, '-', '_' or "
            "'.', starting and ending with a letter or digit)"
        )
    if len(prefix.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        raise invalid(f"the object name is over {_MAX_NAME_BYTES} bytes")
    if "\r" in prefix or "\n" in prefix:
        raise invalid("object names cannot contain line breaks")
    return GcsLocation(bucket, prefix)


def check_bucket_allowed(bucket: str, settings: Settings) -> None:
    """`InvalidArgument` unless `bucket` is in `settings.ingestion.allowed_buckets`."""
    allowed = settings.ingestion.allowed_buckets
    if bucket in allowed:
        return
    if not allowed:
        raise InvalidArgument(
            f"bucket {bucket!r} is not allowed: no gs:// buckets are allowed "
            "(FANOUT_ALLOWED_BUCKETS is empty)"
        )
    raise InvalidArgument(
        f"bucket {bucket!r} is not allowed; allowed buckets: {', '.join(allowed)}"
    )
