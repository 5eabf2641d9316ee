"""gs:// sources: the objects under a prefix of an allowed Cloud Storage bucket.

The client is built on first use, once per source, never at import: with
`STORAGE_EMULATOR_HOST` set (tests), google-cloud-storage reads it itself and talks to the
emulator with anonymous credentials, as Firestore's client does with its emulator variable.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from typing import Any, BinaryIO

from google.api_core import exceptions as api_exceptions

from functions.config import Settings
from functions.errors import FanoutError, InvalidArgument, ItemFailed, TransientError
from functions.ingestion.documents import SourceItem
from functions.ingestion.fingerprint import Fingerprint
from functions.ingestion.sources.gcs_reader import (
    CLOUD_ERRORS,
    ObjectReader,
    is_transient,
    item_error,
)
from functions.ingestion.sources.gs_uri import check_bucket_allowed, parse_gs_uri

DEFAULT_PAGE_SIZE = 1000
# Listing, reading and metadata calls never use the project; the client only needs one to
# be built without looking it up.
PLACEHOLDER_PROJECT = "fanout-unset"
# Only what an item needs (its fingerprint included): smaller pages over the wire for
# buckets of 100,000 objects.
_LIST_FIELDS = "items(name,size,contentType,generation,md5Hash),nextPageToken"
# Reads below this size take one request; larger ones two (see ObjectReader).
_BUFFER_BYTES = 1024 * 1024
# `retry` not given: the library's own policy.
_LIBRARY_RETRY: Any = object()


class GcsSource:
    """The objects of `gs://bucket/prefix`, listed page by page in name order; objects whose
    names end in `/` (console "folders") are skipped. Items are `gs://bucket/name` URIs.

    `pages_read` counts the pages the latest listing fetched; `opened` records every object
    whose content was opened, with the fingerprint of the generation read. `client` and
    `retry` are for tests (another endpoint; no client-side retries); by default the
    library retries 429, 5xx and connection errors for up to two minutes before we report
    `TransientError`.
    """

    def __init__(
        self,
        location: str,
        settings: Settings,
        *,
        page_size: int = DEFAULT_PAGE_SIZE,
        client: Any = None,
        retry: Any = _LIBRARY_RETRY,
    ) -> None:
        """`InvalidArgument` when `location` is malformed or its bucket not allowed."""
        parsed = parse_gs_uri(location)
        check_bucket_allowed(parsed.bucket, settings)
        self.location = location
        self.bucket = parsed.bucket
        self.prefix = parsed.prefix
        self.page_size = page_size
        self.pages_read = 0
        self.opened: dict[str, Fingerprint | None] = {}
        self._project = settings.gcp_project or PLACEHOLDER_PROJECT
        self._client = client
        self._client_lock = threading.Lock()
        if retry is _LIBRARY_RETRY:
            # Imported here, as the client is: google-cloud-storage costs every function
            # process a fifth of a second at import, and most jobs read no bucket.
            from google.cloud.storage.retry import DEFAULT_RETRY

            retry = DEFAULT_RETRY
        self._retry = retry

    @property
    def root_uri(self) -> str:
        # A plain string prefix, as Cloud Storage lists: gs://b/docs also holds docs2/x.
        return f"gs://{self.bucket}/{self.prefix}"

    def list_items(self) -> Iterator[SourceItem]:
        """`InvalidArgument` when the bucket does not exist; `TransientError` when Cloud
        Storage keeps failing (429, 5xx, connection errors); `FanoutError` otherwise."""
        return self._list(self.prefix, start=None)

    def list_after(self, uri: str | None) -> Iterator[SourceItem]:
        """The listing from just after object `uri` (one it listed; None: from the start):
        Cloud Storage lists in name order from `start_offset`, `uri` itself skipped."""
        if uri is None:
            return self.list_items()
        return (item for item in self._list(self.prefix, start=_name(uri)) if item.uri != uri)

    def list_from(self, name: str, *, prefix: str = "") -> Iterator[SourceItem]:
        """The bucket's objects whose names start with `prefix`, from `name` on, whatever
        this source's own prefix (a source made for one item lists only that item). Raises
        as `list_items`."""
        return self._list(prefix, start=name)

    def _list(self, prefix: str, *, start: str | None) -> Iterator[SourceItem]:
        self.pages_read = 0
        blobs = self._storage().list_blobs(
            self.bucket,
            prefix=prefix or None,
            page_size=self.page_size,
            fields=_LIST_FIELDS,
            start_offset=start,
            retry=self._retry,
        )
        pages = iter(blobs.pages)
        while True:
            try:
                page = next(pages, None)  # the request for the next page happens here
            except CLOUD_ERRORS as exc:
                raise self._listing_error(exc) from exc
            if page is None:
                return
            self.pages_read += 1
            for blob in page:
                if not blob.name.endswith("/"):
                    yield _item(self.bucket, blob)

    def stat(self, uri: str) -> SourceItem:
        """Object `uri` as listing shows it, its content unread (one metadata request).
        Raises as `open` does."""
        return _item(self.bucket, self._blob(uri))

    def open(self, uri: str) -> BinaryIO:
        """The current generation of object `uri`, read by byte ranges. `ItemFailed` when
        `uri` is not an object of this bucket, or the object is replaced while being read;
        `FileNotFoundError` when it does not exist; `TransientError` as for listing."""
        blob = self._blob(uri)
        self.opened[uri] = _item(self.bucket, blob).fingerprint
        raw = ObjectReader(blob, uri, self._retry)
        return io.BufferedReader(raw, buffer_size=_BUFFER_BYTES)

    def _blob(self, uri: str) -> Any:
        """The metadata of object `uri`'s current generation."""
        try:
            parsed = parse_gs_uri(uri)
        except InvalidArgument as exc:
            raise ItemFailed(exc.message) from None
        if parsed.bucket != self.bucket or not parsed.prefix or parsed.prefix.endswith("/"):
            raise ItemFailed(f"{uri} is not an object of gs://{self.bucket}")
        try:
            blob = self._storage().bucket(self.bucket).get_blob(parsed.prefix, retry=self._retry)
        except CLOUD_ERRORS as exc:
            raise item_error(exc, uri) from exc
        if blob is None:
            raise FileNotFoundError(uri)
        return blob

    def _storage(self) -> Any:
        with self._client_lock:
            if self._client is None:
                from google.cloud import storage  # type: ignore[attr-defined]  # untyped

                self._client = storage.Client(project=self._project)
            return self._client

    def _listing_error(self, exc: Exception) -> FanoutError:
        if is_transient(exc):
            return TransientError(f"listing {self.location} failed, retry later: {exc}")
        if isinstance(exc, api_exceptions.NotFound):
            return InvalidArgument(f"bucket {self.bucket!r} does not exist")
        return FanoutError(f"listing {self.location} failed: {exc}")


def _item(bucket: str, blob: Any) -> SourceItem:
    size = int(blob.size or 0)
    return SourceItem(
        uri=f"gs://{bucket}/{blob.name}",
        size=size,
        content_type=blob.content_type or "",
        # Composite objects have no MD5: their generation alone tells.
        fingerprint=Fingerprint(size=size, stamp=_stamp(blob), md5=blob.md5_hash or ""),
    )


def _name(uri: str) -> str:
    return parse_gs_uri(uri).prefix


def _stamp(blob: Any) -> str:
    return f"generation:{blob.generation}" if blob.generation else ""
