"""Manifests (`items_from`): a file of item references, one per line, read a page at a time.

The rule (README, "Items from a manifest"): each line is one item, its surrounding
whitespace (and a Windows line end) stripped; blank lines are skipped; duplicate lines are
kept, each an item of its own (finding them would hold the whole manifest); a line longer
than `MAX_LINE_BYTES` fails the job, naming its line number. A page is read from a cursor,
"byte offset:line number", so each planner step seeks straight to its page.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from typing import BinaryIO

from functions.config import Settings
from functions.errors import InvalidArgument, ItemFailed
from functions.ingestion.sources import open_source
from functions.ingestion.sources.gs_uri import parse_gs_uri
from functions.ingestion.sources.local import LocalSource
from functions.ingestion.sources.protocol import Source

# An item reference is a path or a gs:// URI: 4 KiB is far past either's limit.
MAX_LINE_BYTES = 4096


class ManifestError(InvalidArgument):
    """The manifest cannot be read, or breaks the rule: the job fails with this message."""


@dataclass(frozen=True, slots=True)
class ManifestPage:
    """Up to the asked number of items, the cursor of the first line after them, and
    whether no item follows (the page is the manifest's last)."""

    items: list[str]
    cursor: str
    last: bool

    @property
    def uris(self) -> list[str]:
        return self.items

    @property
    def sizes(self) -> None:
        """Unknown: a manifest names its items, it does not list them."""
        return None


def check_manifest(uri: str, settings: Settings) -> None:
    """`InvalidArgument` (a 400 at submit) when `uri` is outside the allowed roots or
    buckets, or is not a file; whether it can be read is the planner's to find out."""
    try:
        source = _source(uri, settings)
    except InvalidArgument as error:  # named after the field, for the 400
        message = error.message.removeprefix(f"location {uri!r}: ")
        raise InvalidArgument(
            message if message.startswith("items_from") else f"items_from {uri!r}: {message}"
        ) from None
    if isinstance(source, LocalSource) and not source.path.is_file():
        raise InvalidArgument(f"items_from {uri!r} is not a file")


def _source(uri: str, settings: Settings, *, checked: bool = False) -> Source:
    """The source that opens `uri`; `checked`: it passed `check_manifest` at submit, and
    whether it is still there is for opening it to say."""
    if uri.startswith("gs://"):
        name = parse_gs_uri(uri).prefix
        if not name or name.endswith("/"):
            raise InvalidArgument(f"items_from {uri!r} names no object")
        return open_source(uri, settings)  # Cloud Storage's client loads only here
    if "://" in uri:
        raise InvalidArgument(f"items_from {uri!r}: use gs://bucket/object or a local path")
    return LocalSource(uri, settings, must_exist=not checked)


def _open(uri: str, settings: Settings) -> BinaryIO:
    try:
        return _source(uri, settings, checked=True).open(uri)
    except (FileNotFoundError, InvalidArgument, ItemFailed, PermissionError, OSError) as error:
        raise ManifestError(f"manifest {uri} cannot be read: {_why(error)}") from None


def _why(error: Exception) -> str:
    if isinstance(error, FileNotFoundError):
        return "it does not exist"
    message = getattr(error, "message", None)
    if isinstance(message, str):
        return message
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error)


def read_page(uri: str, cursor: str | None, max_items: int, settings: Settings) -> ManifestPage:
    """The page of `uri` that starts at `cursor` (None: the first). `ManifestError` when it
    cannot be read or a line breaks the rule; `TransientError` (a retry) as its source
    raises it."""
    offset, line = (int(part) for part in (cursor or "0:0").split(":"))
    items: list[str] = []
    with closing(_open(uri, settings)) as stream:
        stream.seek(offset)
        while True:
            raw = stream.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return ManifestPage(items, f"{offset}:{line}", last=True)
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                raise ManifestError(
                    f"manifest {uri}: line {line + 1} is longer than {MAX_LINE_BYTES} bytes"
                    " (one item reference a line)"
                )
            try:
                text = raw.decode().strip()
            except UnicodeDecodeError:
                raise ManifestError(f"manifest {uri}: line {line + 1} is not UTF-8") from None
            if text and len(items) == max_items:  # the next page's first item
                return ManifestPage(items, f"{offset}:{line}", last=False)
            offset += len(raw)
            line += 1
            if text:
                items.append(text)
