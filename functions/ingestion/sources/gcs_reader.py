"""Reading one Cloud Storage object as a stream, and what its failures mean."""

from __future__ import annotations

import http.client
import io
from typing import TYPE_CHECKING, Any

import urllib3.exceptions
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions

from functions.errors import ItemFailed, TransientError

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

_TRANSIENT_CODES = frozenset({408, 429})
# What a call to Cloud Storage raises when the call (not our code) failed: answers, auth and
# transport errors. Anything else is a bug and propagates as it is.
CLOUD_ERRORS = (
    api_exceptions.GoogleAPIError,
    auth_exceptions.GoogleAuthError,
    OSError,  # requests' connection errors and timeouts are OSErrors
    http.client.HTTPException,
    urllib3.exceptions.HTTPError,
)


class ObjectReader(io.RawIOBase):
    """Raw reads of one object generation by byte ranges, each read one request.

    The generation is pinned (`if_generation_match`): an object replaced mid-read fails
    with 412 instead of mixing two versions. Bytes are read as stored (`raw_download`), so
    they match the listed size even for gzip-encoded objects.
    """

    def __init__(self, blob: Any, uri: str, retry: Any) -> None:
        super().__init__()
        self._blob = blob
        self._uri = uri
        self._retry = retry
        self._size = int(blob.size or 0)
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        # Known size: the end needs no request (an empty range would be a 416).
        wanted = min(len(view), self._size - self._position)
        if wanted <= 0:
            return 0
        data = self._download(self._position, self._position + wanted - 1)[:wanted]
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def readall(self) -> bytes:
        if self._position >= self._size:
            return b""
        data = self._download(self._position, self._size - 1)
        self._position += len(data)
        return data

    def _download(self, first: int, last: int) -> bytes:
        try:
            data: bytes = self._blob.download_as_bytes(
                start=first,
                end=last,  # inclusive
                raw_download=True,
                checksum=None,  # the server's checksums cover the whole object, not a range
                if_generation_match=self._blob.generation,
                retry=self._retry,
            )
        except CLOUD_ERRORS as exc:
            raise item_error(exc, self._uri) from exc
        return data


def is_transient(exc: BaseException) -> bool:
    """True for failures a later retry may fix: 408, 429 and 5xx answers, the client's own
    retries running out, transport errors (requests' connection errors are OSErrors), and
    credential refreshes google-auth marks retryable (a metadata server hiccup)."""
    if isinstance(exc, api_exceptions.RetryError | auth_exceptions.TransportError):
        return True
    if isinstance(exc, auth_exceptions.GoogleAuthError):
        return bool(exc.retryable)
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        code = exc.code or 0
        return code in _TRANSIENT_CODES or code >= 500
    return isinstance(exc, OSError | http.client.HTTPException | urllib3.exceptions.HTTPError)


def item_error(exc: Exception, uri: str) -> Exception:
    """The error one object's metadata or read failure means to `read_item`."""
    if is_transient(exc):
        return TransientError(f"reading {uri} failed, retry later: {exc}")
    if isinstance(exc, api_exceptions.NotFound):
        return FileNotFoundError(uri)
    if isinstance(exc, api_exceptions.PreconditionFailed):
        return ItemFailed("changed while it was being read")
    return ItemFailed(f"could not be read: {exc}")
