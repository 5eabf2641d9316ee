"""Reading one item whole, with a size cap, turning I/O errors into per-item failures."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import BinaryIO

from functions.errors import ItemFailed
from functions.ingestion.sources.protocol import Source


def read_item(source: Source, uri: str, *, max_bytes: int) -> bytes:
    """The bytes of item `uri` of `source`, read as a stream.

    Its `ItemFailed` messages do not repeat `uri`: every failure is shown beside its item.
    Raises `ItemFailed` when the item is over `max_bytes` (found from its size before any
    byte is read; a file that grows while being read is cut off at `max_bytes + 1` bytes),
    when it no longer exists, when the source refuses it, or on any other I/O error.
    `TransientError` from the source passes through, so the whole batch is retried later.
    """
    return read_checked(source, uri, max_bytes=max_bytes, check=lambda stream: None)


def read_checked(
    source: Source, uri: str, *, max_bytes: int, check: Callable[[BinaryIO], None]
) -> bytes:
    """`read_item`, calling `check(stream)` once the bytes are read and before the stream
    is closed (to see whether the item changed meanwhile); it raises what `read_item`
    raises, and `ItemFailed` from `check` passes through."""
    try:
        with source.open(uri) as stream:
            size = _size(stream)
            if size is not None and size > max_bytes:
                raise ItemFailed(f"{size} bytes, over the {max_bytes} byte limit")
            # With a known size, ask for one byte more, to notice a file that grew since;
            # without one, read up to the cap plus one byte.
            data = stream.read(max_bytes + 1 if size is None else size + 1)
            if size is not None and len(data) > size:
                data += stream.read(max_bytes + 1 - len(data))
            if len(data) > max_bytes:
                raise ItemFailed(f"over the {max_bytes} byte limit")
            check(stream)
            return data
    except FileNotFoundError:
        raise ItemFailed("no longer exists") from None
    except OSError as exc:
        raise ItemFailed(f"could not be read: {exc.strerror or exc}") from exc


def _size(stream: BinaryIO) -> int | None:
    """The stream's length, when it can seek (every built-in source can); it is left at 0."""
    if not stream.seekable():
        return None
    size = stream.seek(0, io.SEEK_END)
    stream.seek(0)
    return size
