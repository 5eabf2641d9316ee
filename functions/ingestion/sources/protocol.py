"""The Source protocol: where a job's items come from, and how one item is opened."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO, Protocol

from functions.ingestion.documents import SourceItem


class Source(Protocol):
    """A place that holds items: a local directory tree, or a gs:// bucket prefix.

    Sources are validated when they are built (`InvalidArgument`), so a bad request is
    refused at submit; what can only go wrong later (a file deleted since it was listed)
    surfaces when the item is opened.
    """

    # What the request named: a path or a gs:// URI, as given.
    location: str

    @property
    def root_uri(self) -> str:
        """The prefix every listed item's URI starts with (for pruning what left it)."""
        ...

    def list_items(self) -> Iterator[SourceItem]:
        """Every item, in a stable sorted order, as a stream: pages or directories are
        fetched as the iterator advances, never the whole listing at once.

        `InvalidArgument` when the location turns out to be unusable (a bucket that does
        not exist); `TransientError` when the backend failed in a way a retry may fix."""
        ...

    def list_after(self, uri: str | None) -> Iterator[SourceItem]:
        """`list_items` from just after item `uri`, one it listed (None: from the start):
        a listing resumed where a planner page stopped. Raises as `list_items`."""
        ...

    def open(self, uri: str) -> BinaryIO:
        """One item as a buffered, seekable binary stream (a context manager): `read(n)`
        returns fewer than `n` bytes only at the end.

        `FileNotFoundError` when the item no longer exists; `ItemFailed` when this source
        may not open `uri` (outside its roots or bucket) or it is not a regular file;
        `TransientError` for backend failures a retry may fix; `OSError` for other I/O
        errors. The stream's reads raise the same errors."""
        ...
