"""Which of a batch's documents changed since they were ingested, decided before reading.

Per batch, the fingerprints kept for its items are looked up at once. The current ones
cost no read of content: a local file's `stat`, and for Cloud Storage one listing of the
batch's range of names (a page holds 1,000 objects; a batch planned from a location is a
run of consecutive names), with a metadata request for any item the listing missed.
Documents that do get read have the fingerprint of the very bytes read recorded.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

from functions.errors import ItemFailed
from functions.ingestion.document_index import DocumentIndex, KnownDocument
from functions.ingestion.fingerprint import Fingerprint, kept_mtime_stamp, md5_of, mtime_stamp
from functions.ingestion.options import DocumentOptions
from functions.ingestion.sources import LocalSource, Source
from functions.ingestion.sources.gcs import GcsSource
from functions.ingestion.sources.read import read_checked

# Bump when the loaders or the chunker make other chunks from the same bytes: documents
# ingested before are then read again, not skipped as unchanged.
RECIPE_VERSION = 1
# A listing of a batch's range stops after this many objects per item of the batch (its
# items were named one by one, far apart): the rest are asked for one by one.
LISTING_OBJECTS_PER_ITEM = 4


def recipe(options: DocumentOptions) -> str:
    """How chunks are made from a document's bytes, as far as the request decides it."""
    return (
        f"v{RECIPE_VERSION};tokens={options.chunk_tokens};overlap={options.chunk_overlap};"
        f"text_field={options.text_field}"
    )


@dataclass
class ChangeCheck:
    """The fingerprints of one batch's items: kept ones and current ones."""

    index: DocumentIndex
    items: Sequence[str]
    recipe: str
    _known: dict[str, KnownDocument] = field(default_factory=dict)
    _looked_up: set[str] = field(default_factory=set)
    # Fingerprints from the batch's listings of Cloud Storage, by URI.
    listed: dict[str, Fingerprint] = field(default_factory=dict)
    _listed_buckets: set[str] = field(default_factory=set)

    def unchanged(self, source: Source, uri: str) -> KnownDocument | None:
        """What was kept for `uri` when its fingerprint proves it unchanged since, without
        reading it. An item that cannot be looked at is not unchanged: reading it fails it
        by name."""
        known = self.known(uri)
        if known is None:
            return None
        try:
            current = self._current(source, uri)
        except (ItemFailed, OSError):
            return None
        return known if current is not None and current.matches(known.fingerprint) else None

    def known(self, uri: str) -> KnownDocument | None:
        """What was kept for `uri` when it was ingested the same way as now."""
        if uri not in self._looked_up:  # the whole batch at its first item, in one query
            wanted = {*self.items, uri} - self._looked_up
            self._known.update(self.index.known(wanted))
            self._looked_up |= wanted
        found = self._known.get(uri)
        return found if found is not None and found.recipe == self.recipe else None

    def _current(self, source: Source, uri: str) -> Fingerprint | None:
        if isinstance(source, LocalSource):
            return source.stat(uri).fingerprint
        if isinstance(source, GcsSource):
            if source.bucket not in self._listed_buckets:
                self._listed_buckets.add(source.bucket)
                self._list_range(source)
            listed = self.listed.get(uri)
            return listed if listed is not None else source.stat(uri).fingerprint
        return None

    def _list_range(self, source: GcsSource) -> None:
        """The fingerprints of this batch's objects in `source`'s bucket, from one listing
        of the range of names they span."""
        prefix = f"gs://{source.bucket}/"
        wanted = {item for item in self.items if item.startswith(prefix)}
        if not wanted:
            return
        first, last = (uri.removeprefix(prefix) for uri in (min(wanted), max(wanted)))
        budget = LISTING_OBJECTS_PER_ITEM * len(wanted) + source.page_size
        shared = os.path.commonprefix([first, last])  # noqa: RUF071 - names, not paths
        listing = source.list_from(first, prefix=shared)
        for seen, item in enumerate(listing):
            if item.uri in wanted and item.fingerprint is not None:
                self.listed[item.uri] = item.fingerprint
            if item.uri >= prefix + last or seen >= budget:
                return


def read_document(source: Source, uri: str, *, max_bytes: int) -> tuple[bytes, Fingerprint]:
    """The bytes of `uri` and their fingerprint. `ItemFailed` naming the file when it
    changed while it was being read (Cloud Storage reads pin the generation, and fail so
    themselves), and as `read_item` otherwise."""
    status: list[os.stat_result] = []

    def check(stream: BinaryIO) -> None:
        if not isinstance(source, LocalSource):
            return
        after = os.fstat(stream.fileno())
        opened = source.opened.get(uri)
        if opened is None or not (
            after.st_size == opened.size == stream.tell()
            and mtime_stamp(after.st_mtime_ns) == opened.stamp
        ):
            raise ItemFailed("changed while it was being read; ingest it once written")
        status.append(after)

    data = read_checked(source, uri, max_bytes=max_bytes, check=check)
    md5 = md5_of(data)
    stamp = ""
    if status:
        stamp = kept_mtime_stamp(status[0].st_mtime_ns, time.time_ns())
    elif isinstance(source, GcsSource) and (opened := source.opened.get(uri)) is not None:
        # Reads pin the generation opened; its size and MD5 check that they did (an
        # emulator may not), so the bytes are that generation's, whole.
        if len(data) != opened.size or (opened.md5 and opened.md5 != md5):
            raise ItemFailed("changed while it was being read; ingest it once written")
        stamp = opened.stamp
    return data, Fingerprint(size=len(data), stamp=stamp, md5=md5)
