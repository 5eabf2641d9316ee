"""Ingestion sources: where a job's items come from (local folders, gs:// buckets).

`open_source` validates a request's location at submit and returns the source that lists
it; `source_for_item` returns the source that can open one explicitly named item;
`read_item` reads one item with a size cap, failing only that item when it cannot.
"""

from __future__ import annotations

import re

from functions.config import Settings
from functions.errors import InvalidArgument
from functions.ingestion.sources.gs_uri import parse_gs_uri
from functions.ingestion.sources.local import LocalSource
from functions.ingestion.sources.protocol import Source
from functions.ingestion.sources.read import read_item

__all__ = ["LocalSource", "Source", "open_source", "read_item", "source_for_item"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


def open_source(location: str, settings: Settings) -> Source:
    """The source for a request's `location`: `gs://bucket[/prefix]` or a local path.

    `InvalidArgument` when the location is malformed, uses another scheme, names a bucket
    not in `settings.ingestion.allowed_buckets`, or is a path outside
    `settings.allowed_roots` or that does not exist."""
    if location.startswith("gs://"):
        return _gcs_source(location, settings)
    _refuse_other_schemes(location)
    return LocalSource(location, settings)


def source_for_item(uri: str, settings: Settings) -> Source:
    """The source that can open the single item `uri` (requests that name their items).

    `InvalidArgument` as for `open_source`, and when a gs:// URI names no object. Whether
    the item exists is not checked here: a missing item fails alone when it runs."""
    if uri.startswith("gs://"):
        name = parse_gs_uri(uri).prefix
        if not name or name.endswith("/"):
            raise InvalidArgument(f"{uri!r} is not a valid gs:// URI: it names no object")
        return _gcs_source(uri, settings)
    _refuse_other_schemes(uri)
    return LocalSource(uri, settings, must_exist=False)


def _gcs_source(location: str, settings: Settings) -> Source:
    # Imported here: google-cloud-storage and its gRPC dependencies are half of a function
    # process's import time, and only gs:// locations need them.
    from functions.ingestion.sources.gcs import GcsSource

    return GcsSource(location, settings)


def _refuse_other_schemes(location: str) -> None:
    match = _SCHEME.match(location)
    if match:
        raise InvalidArgument(
            f"{location!r}: unsupported scheme {match.group(1)!r}; "
            "use gs://bucket/prefix or a local path"
        )
