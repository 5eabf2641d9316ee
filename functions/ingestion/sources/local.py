"""Local sources: a directory (or one file) confined to the allowed roots."""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from functions.config import Settings
from functions.errors import InvalidArgument, ItemFailed
from functions.ingestion.documents import SourceItem
from functions.ingestion.fingerprint import Fingerprint, mtime_stamp

# The standard library's built-in table only: the same answer on every machine, whatever
# /etc/mime.types holds. Plus the text formats the loaders read that it lacks.
_TYPES = mimetypes.MimeTypes(filenames=())
_TYPES.add_type("text/markdown", ".md")
_TYPES.add_type("text/markdown", ".markdown")
_TYPES.add_type("application/jsonl", ".jsonl")

# Opened without following a final symlink (the path is already resolved, so one there now
# was swapped in since), and without blocking on a FIFO before we can see it is not a file.
_OPEN_FLAGS = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC
)


class LocalSource:
    """Regular files under `location`, which must lie inside `settings.allowed_roots`.

    Paths are resolved to their real path (symlinks and `..`) before being compared with
    the roots, so neither can escape them. Listing skips dot-files and dot-directories, does
    not descend into symlinked directories (no cycles, no file twice), and lists a symlinked
    file only when its target is inside the roots. Items are absolute path strings.

    `opened` records every item whose content was opened, with its size and mtime then.
    """

    def __init__(self, location: str, settings: Settings, *, must_exist: bool = True) -> None:
        """`InvalidArgument` when `location` resolves outside the allowed roots, or does not
        exist and `must_exist` is set (an explicit item may be checked when it runs)."""
        self.location = location
        self._roots = tuple(Path(os.path.realpath(root)) for root in settings.allowed_roots)
        if not location:
            raise InvalidArgument("location is empty")
        try:
            self.path = self._confine(location)
        except ValueError as exc:  # a NUL byte, or outside the roots
            raise InvalidArgument(f"location {location!r}: {exc}") from None
        if must_exist and not self.path.exists():
            raise InvalidArgument(f"location {location!r} does not exist")
        self.opened: dict[str, Fingerprint] = {}

    @property
    def root_uri(self) -> str:
        return str(self.path) + ("/" if self.path.is_dir() else "")

    def list_items(self) -> Iterator[SourceItem]:
        """Every listable file, in path order (each directory's entries sorted by name).
        Only one directory's entries are held at a time per level of nesting.
        `InvalidArgument` when a directory cannot be read (permissions)."""
        return self.list_after(None)

    def list_after(self, uri: str | None) -> Iterator[SourceItem]:
        """The listing from just after item `uri` (one it listed; None: from the start).
        Path order compares paths part by part, so the walk resumes by skipping, at each
        level down to `uri`, the entries named before its part there."""
        if not self.path.is_dir():
            if self.path.is_file() and uri is None:
                yield _item(str(self.path), self.path.stat())
            return
        after = Path(uri).relative_to(self.path).parts if uri else ()
        stack = [_resumed(str(self.path), after)]
        while stack:
            entry, below = next(stack[-1], (None, ()))
            if entry is None:
                stack.pop()
                continue
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink():
                    target = Path(os.path.realpath(entry.path))
                    if not below and self._inside_roots(target) and target.is_file():
                        yield _item(entry.path, target.stat())
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(_resumed(entry.path, below))
                elif entry.is_file(follow_symlinks=False) and not below:
                    yield _item(entry.path, entry.stat(follow_symlinks=False))
            except FileNotFoundError:
                continue  # deleted while we listed: it is not part of the job

    def open(self, uri: str) -> BinaryIO:
        """The file at `uri`. `ItemFailed` when its real path is outside the allowed roots
        (a symlink pointing out) or it is not a regular file; `FileNotFoundError` when it
        is gone."""
        try:
            real = self._confine(uri)
        except ValueError as exc:
            raise ItemFailed(f"{uri}: {exc}") from None
        fd = os.open(real, _OPEN_FLAGS)
        try:
            status = os.fstat(fd)
            if not stat.S_ISREG(status.st_mode):
                raise ItemFailed("not a regular file")
            self.opened[uri] = _fingerprint(status)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise

    def stat(self, uri: str) -> SourceItem:
        """The item `uri` as listing would show it, its content unread. `ItemFailed` as for
        `open`; `FileNotFoundError` when it is gone."""
        try:
            real = self._confine(uri)
        except ValueError as exc:
            raise ItemFailed(f"{uri}: {exc}") from None
        return _item(uri, real.stat())

    def _confine(self, path: str) -> Path:
        """The real path of `path`; `ValueError` when it is outside every allowed root."""
        real = Path(os.path.realpath(path))
        if not self._inside_roots(real):
            raise ValueError(
                f"outside the allowed roots (FANOUT_ALLOWED_ROOTS): {_describe(self._roots)}"
            )
        return real

    def _inside_roots(self, real: Path) -> bool:
        return any(real.is_relative_to(root) for root in self._roots)


def _resumed(
    directory: str, after: tuple[str, ...]
) -> Iterator[tuple[os.DirEntry[str], tuple[str, ...]]]:
    """The entries of `directory` that may hold what comes after the relative path
    `after`: those named after its first part, and the one named so, with the rest of
    `after` to resume from inside it (a file of that name comes before `after`)."""
    for entry in _entries(directory):
        if not after or entry.name > after[0]:
            yield entry, ()
        elif entry.name == after[0] and len(after) > 1:
            yield entry, after[1:]


def _entries(directory: str) -> list[os.DirEntry[str]]:
    """The entries of `directory` sorted by name; none when it vanished meanwhile."""
    try:
        with os.scandir(directory) as scan:
            return sorted(scan, key=lambda entry: entry.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    except PermissionError:
        raise InvalidArgument(f"directory {directory} cannot be read: permission denied") from None


def _item(path: str, status: os.stat_result) -> SourceItem:
    content_type, encoding = _TYPES.guess_type(path, strict=False)
    if encoding is not None:  # "x.txt.gz" is gzip data, not text
        content_type = "application/gzip" if encoding == "gzip" else "application/octet-stream"
    return SourceItem(
        uri=path,
        size=status.st_size,
        content_type=content_type or "",
        fingerprint=_fingerprint(status),
    )


def _fingerprint(status: os.stat_result) -> Fingerprint:
    return Fingerprint(size=status.st_size, stamp=mtime_stamp(status.st_mtime_ns))


def _describe(roots: Sequence[Path]) -> str:
    return ", ".join(str(root) for root in roots) or "(none configured)"
